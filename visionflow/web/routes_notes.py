"""``GET /api/notes/{id}``: a note's Markdown text and metadata, read from inside the vault only.

The node names the file (``metadata.path``, set when the vault was read); the file is read by
``notes.vault.read_note_text``, which refuses any path that leaves the vault (``..``, absolute,
encoded tricks, symlinks out, hidden or config folders). The path is checked there, not here,
because a node's metadata may also come from an import: an imported ``note:`` node whose path
points elsewhere gets the same refusal.
"""

from __future__ import annotations

from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from visionflow.graph.store import NodeKind
from visionflow.notes.build import ID_PREFIX
from visionflow.notes.parse import NoteError
from visionflow.notes.vault import read_note_text
from visionflow.web.context import context_of
from visionflow.web.errors import error_response
from visionflow.web.guards import require_started, require_token
from visionflow.web.openapi import STRING, ApiRoute, obj


async def note_text(request: Request) -> Response:
    """A note of the vault (``knowledge.path``) by node id (as ``/api/graph/data`` gives it,
    flags or not): its Markdown ``text``, ``label``, ``path``, ``aliases`` and ``tags``. 404 for
    a node that is not a page of the vault (a placeholder has no page yet), or whose file is gone
    or may not be read (outside the vault, too large, not UTF-8)."""
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
    knowledge = ctx.live.current.knowledge
    root = ctx.changes.notes_root
    if root is None:
        return error_response(404, "no_vault", "no notes vault is shown (knowledge.path)")
    node_id: int = request.path_params["id"]
    node = ctx.store.node(node_id)
    if node is None:
        return error_response(404, "unknown_node", f"no node with id {node_id}", "id")
    path = node.metadata.get("path")
    key = node.key
    if key.kind is not NodeKind.KNOWLEDGE or not key.external_id.startswith(ID_PREFIX):
        return error_response(404, "not_a_note", f"node {node_id} is not a note", "id")
    if not isinstance(path, str) or not path:
        return error_response(
            404, "not_a_note", f"node {node_id} has no page (a link to a missing page)", "id"
        )
    try:
        text = await anyio.to_thread.run_sync(
            read_note_text, root, quote(path, safe="/"), knowledge.max_note_bytes
        )
    except NoteError as exc:
        return error_response(404, "note_unreadable", str(exc), "id")
    meta = node.metadata
    return JSONResponse(
        {
            "id": node.id,
            "flagged_id": node.flagged_id,
            "key": key.external_id,
            "label": node.label,
            "path": path,
            "aliases": meta.get("aliases", []),
            "tags": meta.get("tags", []),
            "text": text,
        }
    )


def routes() -> list[BaseRoute]:
    return [
        ApiRoute(
            "/api/notes/{id:int}",
            note_text,
            needs_token=True,  # the graph's data: readable only with the token, when one is set
            methods=["GET"],
            response=obj(
                ["id", "flagged_id", "key", "label", "path", "aliases", "tags", "text"],
                id={"type": "integer"},
                flagged_id={"type": "integer"},
                key=STRING,
                label=STRING,
                path=STRING,
                aliases={"type": "array"},
                tags={"type": "array"},
                text=STRING,
            ),
            statuses={
                "404": "not a page of the vault, or no vault, or the file may not be read",
                "503": "the saved graph is still being restored (`starting`, with Retry-After)",
            },
        )
    ]
