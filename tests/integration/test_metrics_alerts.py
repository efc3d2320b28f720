"""deploy/: the alert rules pass promtool (syntax and their unit tests), and every metric, label
and label value the alerts and the Grafana dashboard query is one a running service serves."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.servicekit import running

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "visionflow.json"
OPERATIONS = ROOT / "docs" / "operations.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus; .ci/run installs it)",
)

#: A metric selector: a name of ours (or Prometheus' own ``up``) and its matchers, if any.
SELECTOR = re.compile(r"(?<![\w:])(visionflow_\w+|process_\w+|python_\w+|up)\b\s*(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
#: Labels Prometheus adds to every scraped series (and ``le`` of histogram buckets).
TARGET_LABELS = {"job", "instance"}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_the_alert_rules_and_the_example_config_pass_promtool() -> None:
    checked = _promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    config = _promtool("check", "config", PROMETHEUS_CONFIG.name, cwd=RULES.parent)
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_each_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = _promtool("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {rule["alert"] for rule in alert_rules()}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == names, f"alerts without a unit test that fires them: {names - fired}"


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses a recording rule's expression: one rule per dashboard target
    variables = {"$job": ".*", "$instance": ".*"}
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = _promtool("check", "rules", path.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_one_grafana_can_import() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "visionflow" and doc["title"] == "VisionFlow"
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in doc["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])


def test_every_alert_has_a_runbook_in_the_operations_docs() -> None:
    text = OPERATIONS.read_text()
    heading = re.search(r"^## (?:\d+\. )?Alerts and runbooks\n", text, re.M)
    assert heading, "no section 'Alerts and runbooks'"
    runbooks = text[heading.end() :]
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook"].endswith(f"Alerts and runbooks: {name}")
        match = re.search(rf"^### {name}\n(.*?)(?=^##)", runbooks + "\n##", re.M | re.S)
        assert match, f"no runbook section '### {name}'"
        for part in ("**Symptom**", "**Checks**", "**Fix**"):
            assert part in match.group(1), f"{name}: no {part}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_every_metric_label_and_value_queried_is_served(anyio_backend: str) -> None:
    endpoint = {"name": "down", "port": _free_port()}
    async with running({"mcp": {"endpoints": [endpoint], "backoff_initial": 5.0}}) as (_, client):
        text = (await client.get("/metrics")).text
    served: dict[str, list[dict[str, str]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served[sample.name].append(dict(sample.labels))
    exprs = [("alert " + r["alert"], str(r["expr"])) for r in alert_rules()]
    exprs += [("dashboard", e) for e in dashboard_exprs()]
    checked = set()
    for where, expr in exprs:
        labels_here: set[str] = set(TARGET_LABELS)
        for name, matchers in SELECTOR.findall(expr):
            if name == "up":  # Prometheus' own, per target
                continue
            assert name in served, f"{where}: {name} is not served at /metrics"
            samples = served[name]
            labels_here |= {k for s in samples for k in s}
            for label, op, value in MATCHER.findall(matchers):
                if label in TARGET_LABELS:
                    continue
                assert any(label in s for s in samples), f"{where}: {name} has no label {label}"
                if op in ("=", "=~"):
                    values = {s[label] for s in samples if label in s}
                    for wanted in value.split("|") if op == "=~" else [value]:
                        assert wanted in values, f"{where}: no {name}{{{label}={wanted!r}}}"
            checked.add(name)
        for group in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                assert label in labels_here, f"{where}: grouping by unknown label {label}"
    assert len(checked) >= 25  # the regex found the metrics (a broken one would find none)
    # and the dashboard shows every series of ours the service serves
    shown = " ".join(dashboard_exprs())
    ours = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in served if "visionflow_" in n}
    missing = sorted(n for n in ours if n not in shown)
    assert not missing, f"served but not on the dashboard ({DASHBOARD.name}): {missing}"
