"""The fleet over mutual TLS: real Mosquitto with the per-host ACL, real agent and controller.

A workstation that holds one host's certificate cannot report as another host:
the broker refuses its publications and nothing about the other host is stored.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.controller.pki import ca as pki
from cpsfleet.controller.pki.ca import COMMANDS_IDENTITY, CONTROLLER_IDENTITY
from cpsfleet.schemas.broker import TlsContext, TlsFiles
from cpsfleet.schemas.commands import new_command
from cpsfleet.schemas.topics import command_topic
from tests.conftest import BASE_PORT, MtlsBroker, run_cli, wait_for
from tests.fleet import DASHBOARD, Fleet


def tls_fleet(home: Path, broker: MtlsBroker, services, host_id: str, cert_of: str) -> Fleet:
    """An agent for ``host_id`` that connects with the certificate of ``cert_of``."""
    home.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(home, broker, services)  # type: ignore[arg-type]
    fleet.host_id = host_id
    ca = broker.pki / "ca.pem"
    cert, key = broker.files("agent", cert_of)
    fleet.agent_conf.write_text(
        f'broker = "mqtts://127.0.0.1:{broker.port}"\nsite = "Lyon"\nhost_id = "{host_id}"\n'
        f'interval = 60\nsplay = 0\nwill_delay = 2\nstate_dir = "{home / "agent"}"\n'
        f'tls_ca = "{ca}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    cert, key = broker.files("controller", CONTROLLER_IDENTITY)
    fleet.controller_conf.write_text(
        f'broker = "mqtts://127.0.0.1:{broker.port}"\ndatabase = "{fleet.database}"\n'
        f'evaluate_every = 1\ntls_ca = "{ca}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f"{DASHBOARD}"
    )
    return fleet


def test_agent_and_controller_over_mutual_tls(tmp_path, mtls_broker, services, insert, examples):
    insert(examples["doctor-cps3"], BASE_PORT)
    fleet = tls_fleet(tmp_path, mtls_broker, services, "ws-a", cert_of="ws-a")
    fleet.controller()
    fleet.agent()
    wait_for(
        lambda: (v := fleet.view()) is not None and len(v.cards) == 1,
        timeout=20,
        what="ws-a's card over mTLS",
    )
    assert fleet.view().presence == "online"


def test_an_agent_with_another_hosts_certificate_stores_nothing(
    tmp_path, mtls_broker, services, insert, examples
):
    insert(examples["doctor-cps3"], BASE_PORT)
    honest = tls_fleet(tmp_path, mtls_broker, services, "ws-a", cert_of="ws-a")
    honest.controller()
    honest.agent()
    wait_for(lambda: honest.view() is not None, timeout=20, what="the honest host")
    spoof_home = tmp_path / "spoof"
    spoofer = tls_fleet(spoof_home, mtls_broker, services, f"ws-{uuid.uuid4().hex[:6]}", "ws-r")
    spoofer.database = honest.database  # same controller database
    spoofer.agent()
    wait_for(
        lambda: "the broker refused status" in (spoof_home / "agent.log").read_text(),
        timeout=20,
        what="the spoofer's attempt",
    )
    wait_for(lambda: honest.view().last_status_at is not None, what="the honest status")
    hosts = {row[0] for row in honest.query("select id from hosts")}
    assert hosts == {"ws-a"}, hosts


def test_plain_mqtt_to_another_machine_is_refused_without_allow_insecure(tmp_path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text('broker = "mqtt://broker.ssti.example"\n')
    result = run_cli("agent", "run", "--config", str(conf))
    assert result.returncode == 2 and "would send the fleet's data in clear" in result.stderr


def test_rescan_over_mutual_tls_leaves_the_running_controller_connected(
    tmp_path, mtls_broker, services
):
    fleet = tls_fleet(tmp_path, mtls_broker, services, "ws-b", cert_of="ws-b")
    controller = fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=20, what="ws-b over mTLS")
    result = run_cli("controller", "rescan", "ws-b", "--config", str(fleet.controller_conf))
    assert result.returncode == 2
    assert "commands need a client certificate of their own" in result.stderr
    if not mtls_broker.files("controller", COMMANDS_IDENTITY)[0].exists():
        pki.issue(mtls_broker.pki, "controller", COMMANDS_IDENTITY)
    cert, key = mtls_broker.files("controller", COMMANDS_IDENTITY)
    keys = f'command_tls_cert = "{cert}"\ncommand_tls_key = "{key}"\n'
    fleet.controller_conf.write_text(keys + fleet.controller_conf.read_text())
    result = run_cli("controller", "rescan", "ws-b", "--config", str(fleet.controller_conf))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ws-b: "), result.stdout
    assert ": rescan, from cpsfleet controller rescan" in agent.logs()
    assert "signature checked" in agent.logs(), "the agent acted on an unchecked command"
    assert controller.logs().count("connected to") == 1, "the controller lost its connection"


def test_over_mutual_tls_the_agent_ignores_an_unsigned_command_the_acl_lets_through(
    tmp_path, mtls_broker, services
):
    """Published with the commands certificate, so the broker delivers it: the agent itself
    must tell that the controller did not sign it."""
    fleet = tls_fleet(tmp_path, mtls_broker, services, "ws-b", cert_of="ws-b")
    agent = fleet.agent()
    wait_for(lambda: "status published" in agent.logs(), timeout=20, what="ws-b over mTLS")
    if not mtls_broker.files("controller", COMMANDS_IDENTITY)[0].exists():
        pki.issue(mtls_broker.pki, "controller", COMMANDS_IDENTITY)
    cert, key = mtls_broker.files("controller", COMMANDS_IDENTITY)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set_context(
        TlsContext(TlsFiles(str(mtls_broker.pki / "ca.pem"), str(cert), str(key))).context
    )
    client.connect("127.0.0.1", mtls_broker.port)
    client.loop_start()
    try:
        command = new_command("ws-b", "rescan", datetime.now(UTC), timedelta(minutes=1), "t")
        document = json.dumps(command.document())
        client.publish(command_topic("ws-b"), document, qos=1).wait_for_publish(5)
        wait_for(lambda: "command ignored" in agent.logs(), what="the unsigned command ignored")
    finally:
        client.loop_stop()
        client.disconnect()
    assert f"command {command.id} is not from the controller: unsigned" in agent.logs()
