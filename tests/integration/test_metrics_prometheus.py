"""A real Prometheus (when installed) scrapes a real service with deploy/prometheus/alerts.yml:
every rule evaluates without error, a healthy service fires nothing, an import that could not
be saved fires VisionflowGraphNotSaved, and every dashboard query runs."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import eventually, running

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "visionflow.json"
PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (Debian: apt-get install prometheus; .ci/run installs it)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _rules(prom: httpx.AsyncClient) -> list[dict[str, Any]] | None:
    """The alert rules once each was evaluated after a successful scrape, else None."""
    try:
        targets = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
        groups = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None  # not listening yet
    if not targets or targets[0]["health"] != "up" or not groups:
        return None
    scraped = targets[0]["lastScrape"]
    rules: list[dict[str, Any]] = groups[0]["rules"]
    # evaluated after the first good scrape: the rules saw the service's series
    if all(r.get("lastEvaluation", "") > scraped for r in rules):
        return rules
    return None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Prometheus is the subject here
@pytest.mark.anyio
async def test_prometheus_evaluates_the_rules_against_a_running_service(
    anyio_backend: str, tmp_path: Path
) -> None:
    assert PROMETHEUS is not None
    blocker = tmp_path / "file"
    blocker.write_text("")  # state.dir under a file: nothing can be saved
    raw: dict[str, Any] = {"state": {"dir": str(blocker / "state"), "save_interval": 60}}
    async with running(raw) as (svc, client):
        shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [alerts.yml]\n"
            "scrape_configs:\n"
            "  - job_name: visionflow\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{svc.http.port}']}}]\n"
        )
        port = _free_port()
        proc = await anyio.open_process(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as prom:
                rules = await eventually(lambda: _rules(prom), timeout=60)
                names = {r["name"] for r in rules}
                alerts_yml = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
                assert names == set(re.findall(r"- alert: (\w+)", alerts_yml))
                for rule in rules:
                    assert rule["health"] == "ok", rule

                async def quiet() -> list[dict[str, Any]] | None:
                    # A healthy service fires nothing. Evaluated before the first scrape,
                    # absent(up) is briefly pending: wait for the rules' view of a scrape.
                    now = await _rules(prom)
                    if now is None or any(r["state"] != "inactive" for r in now):
                        return None
                    return now

                await eventually(quiet, timeout=30)

                # an import applied but not saved: fires at once (no `for:`)
                r = await client.post("/api/graph/import", json={"nodes": [{"id": "a"}]})
                assert r.status_code == 200 and r.json()["saved"] is False

                async def fired() -> bool:
                    alerts = (await prom.get("/api/v1/alerts")).json()["data"]["alerts"]
                    return any(
                        a["labels"]["alertname"] == "VisionflowGraphNotSaved"
                        and a["state"] == "firing"
                        for a in alerts
                    )

                await eventually(fired, timeout=60)

                dashboard = json.loads(DASHBOARD.read_text())
                for panel in dashboard["panels"]:
                    for target in panel.get("targets", []):
                        query = target["expr"].replace("$job", "visionflow")
                        query = query.replace("$instance", ".*")
                        answer = (await prom.get("/api/v1/query", params={"query": query})).json()
                        assert answer["status"] == "success", (panel["title"], query, answer)
        finally:
            proc.terminate()
            with anyio.fail_after(20):
                await proc.wait()
