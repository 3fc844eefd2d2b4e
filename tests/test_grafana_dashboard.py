"""The Grafana dashboard shipped in monitoring/grafana, and the alerting rules beside it, use
only series the controller's ``/metrics`` serves, scraped from a real fleet database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cpsfleet.controller.db.store import Store
from cpsfleet.controller.model import Finding
from cpsfleet.controller.web.metrics import Metrics

MONITORING = Path(__file__).parent.parent / "monitoring"
DASHBOARD = MONITORING / "grafana" / "cpsfleet.json"
RULES_FILE = MONITORING / "prometheus" / "cpsfleet-rules.yml"
EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
METRIC_NAME = re.compile(r"\bcpsfleet_[a-z0-9_]+")


@pytest.fixture
def served(tmp_path: Path) -> set[str]:
    """Every sample name of a scrape of a fleet with cards, hosts and findings."""
    path = tmp_path / "controller.db"
    with Store(path) as store:
        for name in ("status-four-readers", "status-pcscd-down"):
            store.record_status(json.loads((EXAMPLES / f"{name}.json").read_text("utf-8")), NOW)
        store.replace_findings(
            [Finding("agent_offline", "critical", "8d2e44a0c1b94f07", "", "silent")], NOW
        )
    metrics = Metrics(path, lambda: NOW)
    metrics.observe_ingest(0.01)
    body, _ = metrics.render()
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return loaded


def dashboard_queries() -> list[str]:
    board = dashboard()
    targets = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    variables = [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return targets + variables


def test_the_dashboard_has_grafanas_basics() -> None:
    board = dashboard()

    assert board["title"] and board["uid"]
    assert isinstance(board["schemaVersion"], int)
    assert board["panels"]
    for panel in board["panels"]:
        assert panel["title"] and panel["type"] and panel["gridPos"]
        assert panel["targets"] and all(target["expr"] for target in panel["targets"])
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])


def test_the_dashboard_queries_only_served_series(served: set[str]) -> None:
    used = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}

    assert used, "the dashboard queries no cpsfleet series"
    assert used <= served, f"not served: {sorted(used - served)}"


def test_the_alerting_rules_use_only_served_series(served: set[str]) -> None:
    groups = yaml.safe_load(RULES_FILE.read_text("utf-8"))["groups"]
    used = {
        name
        for group in groups
        for rule in group["rules"]
        for name in METRIC_NAME.findall(rule["expr"])
    }

    assert used <= served, f"not served: {sorted(used - served)}"
    assert "cpsfleet_card_pin_tries_left" in used
