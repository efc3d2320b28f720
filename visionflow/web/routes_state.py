"""``GET /api/state/backup``: a backup file of the running service's state (the token needed).

What ``visionflow state backup`` fetches when the service runs (docs/operations.md, "Backup and
restore"). The graph, its ids and its revision are read in one hold of the store's lock, in a
worker thread (the event loop never waits for that lock), through the same one-at-a-time
``SingleFlight`` as the export: a backup and an export never run side by side, and requests for
the same state share one run.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from visionflow.state.backup import now_utc, service_backup
from visionflow.web.context import context_of
from visionflow.web.guards import require_started, require_token
from visionflow.web.openapi import ApiRoute

MEDIA_TYPE = "application/gzip"


async def state_backup(request: Request) -> Response:
    """A backup of the saved state as it is now: graph, layout and settings overrides.

    A gzip-compressed tar (MANIFEST.json first, then graph.json, layout.json and
    settings-overrides.toml) that `visionflow state restore FILE` restores into a stopped
    service's state.dir; see docs/operations.md, "Backup and restore".
    """
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
    snapshot = ctx.engine.latest
    # read on the event loop, where they change; small (bounded by the layout file, a few keys)
    carried = ctx.changes.carried()
    overrides = ctx.live.as_json()["overrides"]
    key = (
        "state-backup",
        ctx.store.version,
        None if snapshot is None else snapshot.sequence,
        ctx.live.revision,
    )
    data = await ctx.exports.run(
        key, partial(service_backup, ctx.store, snapshot, carried, overrides)
    )
    stamp = now_utc().replace("-", "").replace(":", "")
    return Response(
        data,
        media_type=MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="visionflow-state-{stamp}.tar.gz"',
            "Cache-Control": "no-store",
        },
    )


def routes() -> list[BaseRoute]:
    return [
        ApiRoute(
            "/api/state/backup",
            state_backup,
            methods=["GET"],
            media={MEDIA_TYPE: {"type": "string", "format": "binary"}},
            needs_token=True,
            statuses={
                "401": "token required",
                "503": "still restoring the saved state at start-up (`starting`)",
            },
        )
    ]
