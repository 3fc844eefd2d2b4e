"""The controller's configuration file and environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpsfleet.controller.rules.findings import Thresholds
from cpsfleet.controller.settings import ControllerSettings, SettingsError, load_settings
from tests.conftest import run_cli


def test_file_thresholds_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(
        'broker = "mqtt://b:1884"\nallow_insecure = true\n'
        'database = "/tmp/x.db"\nhistory_days = 7\n'
        "[thresholds]\nexpiring_warning_days = 30\n"
    )
    settings = load_settings(path, environ={"CPSFLEET_DATABASE": "/srv/fleet.db"})
    assert settings.database == "/srv/fleet.db" and settings.history_days == 7
    assert settings.thresholds == Thresholds(expiring_warning_days=30)
    assert str(settings.broker_url) == "mqtt://b:1884"


def test_defaults() -> None:
    settings = ControllerSettings()
    assert settings.thresholds.expiring_warning_days == 60
    assert settings.thresholds.min_cryptolib_version == "5.2.0"
    assert (settings.history_days, settings.evaluate_every) == (30, 60)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("broker = ", "cannot read the configuration"),
        ("brokers = 'x'", "unknown key(s) brokers"),
        ("history_days = '7'", "history_days must be a whole number"),
        ("history_days = 0", "history_days and evaluate_every must be positive"),
        ("broker = 'tcp://x'", "must start with mqtt:// or mqtts://"),
        ("broker = 'mqtt://broker.ssti.example'", "would send the fleet's data in clear"),
        ("broker = 'mqtts://b'\ntls_cert = '/none.pem'", "tls_cert and tls_key go together"),
        ("broker = 'mqtts://b'\ntls_ca = '/none.pem'", "tls_ca /none.pem is not a readable file"),
        ("allow_insecure = 'yes'", "allow_insecure must be a true or false"),
        ("command_tls_cert = '/none.pem'", "command_tls_cert and command_tls_key go together"),
        (
            "command_tls_cert = '/none.pem'\ncommand_tls_key = '/none.key'",
            "command_tls_cert /none.pem is not a readable file",
        ),
        ("thresholds = 3", "thresholds must be a table"),
        ("[thresholds]\nexpiring_critical_days = 90", "expiring_critical_days"),
        ("[thresholds]\nexpiring_soon_days = 9", "expiring_soon_days"),
        ("[dashboard]\nallowed_hosts = ['http://x']", "allowed_hosts: 'http://x' is not a host"),
        ("[dashboard]\nallowed_hosts = 'x'", "allowed_hosts must be a list of host names"),
        ("[dashboard]\ncookie_secure = 'maybe'", 'cookie_secure must be true, false or "auto"'),
        ("[dashboard]\nlogin_lockout_s = 0", "login_lockout_s must be at least 1"),
    ],
)
def test_bad_files_are_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(content)
    with pytest.raises(SettingsError) as raised:
        load_settings(path, environ={})
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


def test_query_commands_explain_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    for command in ("hosts", "cards", "findings"):
        result = run_cli("controller", command, "--database", str(missing))
        assert result.returncode == 2 and "error:" in result.stderr
    assert not missing.exists()


def test_findings_refuses_an_unknown_severity(tmp_path: Path) -> None:
    result = run_cli("controller", "findings", "--severity", "urgent", "--database", "x")
    assert (
        result.returncode == 2
        and "--severity must be one of critical, warning, info" in result.stderr
    )
