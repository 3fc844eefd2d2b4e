"""The agent's configuration file and environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpsfleet.agent.config import AgentConfig, ConfigError, load_config
from tests.conftest import run_cli


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('site = "Lyon"\nhost_id = "ws-07"\n')
    assert load_config(path, environ={}) == AgentConfig(site="Lyon", host_id="ws-07")
    env = {
        "CPSFLEET_SITE": "Grenoble",
        "CPSFLEET_INTERVAL": "60",
        "CPSFLEET_BROKER": "mqtt://b",
        "CPSFLEET_ALLOW_INSECURE": "true",
    }
    assert load_config(path, environ=env) == AgentConfig(
        broker="mqtt://b", site="Grenoble", host_id="ws-07", interval=60, allow_insecure=True
    )


def test_defaults_are_fifteen_minutes_and_a_local_broker() -> None:
    config = AgentConfig()
    assert (config.interval, config.splay, config.will_delay) == (900, 60, 60)
    assert config.reconnect_max == 300
    assert str(config.broker_url) == "mqtt://127.0.0.1:1883"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("site = ", "cannot read the configuration"),
        ('sites = "Lyon"', "unknown key(s) sites"),
        ("site = 3", "site must be non-empty strings"),
        ('interval = "15m"', "interval must be whole numbers"),
        ("interval = 0", "interval must be a positive number of seconds"),
        ("reconnect_max = 0", "reconnect_max must be a positive number of seconds"),
        ('broker = "http://x"', "must start with mqtt:// or mqtts://"),
        ('broker = "mqtt://10.1.2.3"', "plain mqtt:// to 10.1.2.3 would send the fleet's data"),
        ('broker = "mqtts://b"\ntls_key = "/k"', "tls_cert and tls_key go together"),
        ('host_id = "a/b"', "host id 'a/b' must be 1 to 64 letters"),
    ],
)
def test_bad_files_are_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=None) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_scan_reads_site_from_the_config_and_refuses_a_bad_one(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('site = "Annecy"\n')
    bad.write_text("site = [")
    env = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd")}
    result = run_cli("agent", "scan", "--json", "--config", str(good), env=env)
    assert '"site": "Annecy"' in result.stdout
    refused = run_cli("agent", "scan", "--config", str(bad), env=env)
    assert refused.returncode == 2 and refused.stderr.startswith(f"error: {bad}: ")


def test_a_bad_number_in_the_environment_is_explained(tmp_path: Path) -> None:
    empty = tmp_path / "agent.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="CPSFLEET_SPLAY must be a whole number, not 'soon'"):
        load_config(empty, environ={"CPSFLEET_SPLAY": "soon"})
