"""The Prometheus alerting rules shipped in monitoring/prometheus: valid for promtool, their
own unit tests passing, and the same rules and thresholds as the controller's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpsfleet.controller.rules.findings import RULES, Thresholds

PROMETHEUS = Path(__file__).parent.parent / "monitoring" / "prometheus"
RULES_FILE = PROMETHEUS / "cpsfleet-rules.yml"
RULES_TESTS = PROMETHEUS / "cpsfleet-rules.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is absent (Debian's prometheus package; scripts/setup.sh)"
)


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text("utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def expressions(alert: str) -> str:
    return " ".join(rule["expr"] for rule in alerts() if rule["alert"] == alert)


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES_FILE))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_the_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", str(RULES_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_each_alert_names_a_rule_of_the_controller() -> None:
    controller_rules = {name for name, _ in RULES}
    named = {rule["labels"]["rule"] for rule in alerts() if "rule" in rule.get("labels", {})}

    assert named <= controller_rules
    assert {"card_expired", "card_expiring", "pin_blocked", "agent_offline"} <= named


def test_the_thresholds_are_the_controllers_defaults() -> None:
    defaults = Thresholds()

    assert f"<= {defaults.expiring_critical_days} * 86400" in expressions("CpsfleetCardExpiring")
    assert f"<= {defaults.expiring_warning_days} * 86400" in expressions("CpsfleetCardExpiring")
    assert f">= {defaults.card_update_max_years} * 31557600" in expressions(
        "CpsfleetCardNotUpdated"
    )
    assert defaults.min_cryptolib_version == "5.2.0"  # what CpsfleetCryptolibOutdated matches
