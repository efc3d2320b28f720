"""The deployment examples in deploy/ say what the service really takes: valid settings, probe
routes that exist, stop timeouts longer than the drain, the exit code that means bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from visionflow import settings as s
from visionflow.web.app import base_routes

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "visionflow.service"
KUBE = ROOT / "deploy" / "kubernetes" / "visionflow.yaml"


def unit_entries() -> dict[str, list[str]]:
    """``key -> values`` of the unit's [Service] section (keys such as Environment repeat)."""
    entries: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            entries.setdefault(key, []).append(value)
    return entries


def validated(environ: dict[str, str], tmp_path: Path) -> s.Settings:
    empty = tmp_path / "settings.toml"
    empty.write_text("")
    return s.load(empty, environ=environ).settings


def test_the_systemd_unit_runs_serve_as_a_dynamic_user_with_its_state_dir(tmp_path: Path) -> None:
    unit = unit_entries()
    assert unit["ExecStart"][0].split()[1:3] == ["serve", "--config"]
    assert unit["DynamicUser"] == ["yes"] and unit["StateDirectory"] == ["visionflow"]
    env = dict(e.split("=", 1) for e in unit["Environment"])
    settings = validated({k: v for k, v in env.items() if k.startswith("VISIONFLOW__")}, tmp_path)
    assert settings.state.dir == "/var/lib/" + unit["StateDirectory"][0]
    assert env["NUMBA_CACHE_DIR"] == "/var/cache/" + unit["CacheDirectory"][0]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert float(unit["TimeoutStopSec"][0]) > 2 * settings.server.shutdown_grace
    assert unit["RestartPreventExitStatus"] == ["2"]  # the CLI's exit code for bad settings
    assert "MemoryDenyWriteExecute" not in unit  # numba writes machine code at run time


def kube_documents() -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(KUBE.read_text()) if d]


def test_the_kubernetes_example_probes_real_routes_and_drains_within_its_grace(
    tmp_path: Path,
) -> None:
    deployment = next(d for d in kube_documents() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = validated({k: v for k, v in env.items() if k.startswith("VISIONFLOW__")}, tmp_path)
    assert settings.server.host == "0.0.0.0"
    (port,) = container["ports"]
    assert port["containerPort"] == settings.server.port
    paths = {getattr(route, "path", None) for route in base_routes()}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + settings.server.shutdown_grace
    assert deployment["spec"]["replicas"] == 1  # type: ignore[index]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # type: ignore[index]


@pytest.mark.parametrize("path", [UNIT, KUBE])
def test_deploy_files_name_no_secret(path: Path) -> None:
    text = path.read_text()
    assert "token = " not in text and "Bearer " not in text
