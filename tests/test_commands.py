"""Commands to agents: the document, its topic, and when an agent may act on one."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from cpsfleet.agent.config import AgentConfig
from cpsfleet.agent.daemon import AgentDaemon, command_ca
from cpsfleet.controller.commands.send import command_signer
from cpsfleet.controller.pki import ca as pki
from cpsfleet.schemas import SchemaError, validate
from cpsfleet.schemas.broker import TlsFiles
from cpsfleet.schemas.commands import (
    CLOCK_SKEW,
    COMMANDS_IDENTITY,
    CommandRefused,
    accept,
    new_command,
)
from cpsfleet.schemas.signing import Signer, load_cas
from cpsfleet.schemas.topics import SUBSCRIPTIONS, TopicError, command_topic, parse_topic

NOW = datetime(2026, 11, 27, 21, 2, 10, 400_000, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def payload(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def rescan_for(host_id: str = "ws-a", now: datetime = NOW, lifetime: timedelta = MINUTE) -> bytes:
    return payload(new_command(host_id, "rescan", now, lifetime, "tests").document())


def test_a_new_command_follows_the_contract_to_the_second() -> None:
    command = new_command("ws-a", "rescan", NOW, MINUTE, "root@ctl")
    document = validate(command.document())
    assert document["issued_at"] == "2026-11-27T21:02:10Z"
    assert document["expires_at"] == "2026-11-27T21:03:10Z"
    assert (
        len(document["id"]) == 32
        and document["id"]
        != new_command("ws-a", "rescan", NOW, MINUTE, "root@ctl").document()["id"]
    )
    assert command.lifetime_s(NOW) == 59


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        (lambda d: d.update(action="format_disk"), "action"),
        (lambda d: d.update(id="not-hex"), "id"),
        (lambda d: d.update(expires_at="tomorrow"), "expires_at"),
        (lambda d: d.pop("host_id"), "'host_id' is a required property"),
        (lambda d: d.update(signed_by="x"), "Additional properties are not allowed"),
        (lambda d: d.update(signature="QUJD"), "'signer' is a dependency of 'signature'"),
        (lambda d: d.update(signer="QUJD"), "'signature' is a dependency of 'signer'"),
        (lambda d: d.update(signer="not base64!", signature="QUJD"), "signer"),
    ],
)
def test_a_faulty_command_is_refused_by_the_schema(change, fault) -> None:
    document = new_command("ws-a", "rescan", NOW, MINUTE, "tests").document()
    change(document)
    with pytest.raises(SchemaError, match=fault):
        validate(document)


def test_the_agent_accepts_its_own_command_within_its_validity() -> None:
    command = accept(rescan_for("ws-a"), "ws-a", NOW + timedelta(seconds=30))
    assert (command.host_id, command.action) == ("ws-a", "rescan")


def test_a_command_for_another_host_is_refused() -> None:
    with pytest.raises(CommandRefused, match="is for host 'ws-b'"):
        accept(rescan_for("ws-b"), "ws-a", NOW)


def test_an_expired_command_is_refused_after_the_skew_allowance() -> None:
    expires = NOW.replace(microsecond=0) + MINUTE
    accept(rescan_for(), "ws-a", expires + CLOCK_SKEW)  # a clock a little ahead: still acted on
    with pytest.raises(CommandRefused, match="expired 61 s ago"):
        accept(rescan_for(), "ws-a", expires + CLOCK_SKEW + timedelta(seconds=1))
    a_week_later = NOW + timedelta(days=7)
    with pytest.raises(CommandRefused, match="expired"):
        accept(rescan_for(), "ws-a", a_week_later)


def test_a_command_from_the_future_points_at_the_clock() -> None:
    with pytest.raises(CommandRefused, match="in the future of this workstation's clock"):
        accept(rescan_for(), "ws-a", NOW - CLOCK_SKEW - timedelta(seconds=2))


def test_a_command_valid_for_too_long_or_backwards_is_refused() -> None:
    document = new_command("ws-a", "rescan", NOW, MINUTE, "tests").document()
    for expires_at in ("2026-11-28T21:02:10Z", "2026-11-27T21:02:09Z"):
        with pytest.raises(CommandRefused, match="not a window of up to 1:00:00"):
            accept(payload({**document, "expires_at": expires_at}), "ws-a", NOW)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"rescan now", "malformed command: not JSON"),
        (b'{"schema": "cpsfleet.status", "version": 1}', "malformed command: schema"),
        (
            payload({**json.loads(rescan_for()), "issued_at": "2026-13-40T25:00:00Z"}),
            "malformed command: issued_at: '2026-13-40T25:00:00Z' does not match",
        ),
        (
            payload({**json.loads(rescan_for()), "issued_at": "2026-02-29T10:00:00Z"}),
            "malformed command: issued_at: '2026-02-29T10:00:00Z' is not a 'date-time'",
        ),
    ],
)
def test_a_malformed_command_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(CommandRefused, match=why):
        accept(raw, "ws-a", NOW)


def test_a_retained_command_is_refused_however_fresh() -> None:
    with pytest.raises(CommandRefused, match="retained"):
        accept(rescan_for(), "ws-a", NOW, retained=True)


@dataclass(frozen=True)
class Identities:
    """The fleet CA, and signers: the controller's commands identity, an agent of the same
    CA, and a commands identity of another CA."""

    ca_file: Path
    other_ca_file: Path
    commands: Signer
    agent: Signer
    stranger: Signer

    @property
    def cas(self) -> tuple[x509.Certificate, ...]:
        return load_cas(self.ca_file)


def signer_of(files: pki.IssuedFiles) -> Signer:
    return Signer.from_files(files.certificate, files.key)


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    fleet, other = tmp_path_factory.mktemp("fleet"), tmp_path_factory.mktemp("other")
    for directory in (fleet, other):
        pki.create_ca(directory)
    return Identities(
        fleet / pki.CA_CERTIFICATE,
        other / pki.CA_CERTIFICATE,
        signer_of(pki.issue(fleet, "controller", COMMANDS_IDENTITY)),
        signer_of(pki.issue(fleet, "agent", "ws-a")),
        signer_of(pki.issue(other, "controller", COMMANDS_IDENTITY)),
    )


def signed(signer: Signer, now: datetime, **changes: str) -> bytes:
    document = signer.sign(new_command("ws-a", "rescan", now, MINUTE, "tests").document())
    return payload({**document, **changes})


def test_a_signed_command_is_accepted_with_the_fleet_ca_whatever_its_layout(identities) -> None:
    now = datetime.now(UTC)
    raw = signed(identities.commands, now)
    document = validate(json.loads(raw))
    assert {"signer", "signature"} <= set(document)
    assert accept(raw, "ws-a", now, cas=identities.cas).id == document["id"]
    reordered = json.dumps(dict(reversed(document.items())), indent=2).encode()
    assert accept(reordered, "ws-a", now, cas=identities.cas).id == document["id"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("expires_at", "2099-01-01T00:00:00Z"), ("issued_by", "someone else"), ("id", "0" * 32)],
)
def test_a_signed_command_altered_afterwards_is_refused(identities, field, value) -> None:
    now = datetime.now(UTC)
    altered = signed(identities.commands, now, **{field: value})
    with pytest.raises(CommandRefused, match="not from the controller: the signature does not"):
        accept(altered, "ws-a", now, cas=identities.cas)


def test_a_signer_certified_by_another_ca_is_refused(identities) -> None:
    now = datetime.now(UTC)
    with pytest.raises(CommandRefused, match="is not certified by the fleet CA"):
        accept(signed(identities.stranger, now), "ws-a", now, cas=identities.cas)


def test_a_command_signed_by_an_agent_of_the_fleet_is_refused(identities) -> None:
    now = datetime.now(UTC)
    with pytest.raises(CommandRefused, match="signed by 'ws-a', not by 'cpsfleet-commands'"):
        accept(signed(identities.agent, now), "ws-a", now, cas=identities.cas)


def test_a_command_signed_by_an_expired_certificate_is_refused(identities) -> None:
    after_expiry = identities.commands.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(CommandRefused, match="valid from .* not now: renew it"):
        accept(signed(identities.commands, after_expiry), "ws-a", after_expiry, cas=identities.cas)


def test_an_unsigned_command_is_refused_with_a_ca_and_accepted_without(identities) -> None:
    now = datetime.now(UTC)
    with pytest.raises(CommandRefused, match="unsigned: only a document signed by cpsfleet-"):
        accept(rescan_for("ws-a", now), "ws-a", now, cas=identities.cas)
    assert accept(rescan_for("ws-a", now), "ws-a", now).host_id == "ws-a"


def test_the_controller_signs_with_its_commands_certificate_only(identities) -> None:
    issued = identities.ca_file.parent / "controllers" / f"{COMMANDS_IDENTITY}.pem"
    key = issued.with_suffix(".key")
    signer = command_signer(TlsFiles(str(identities.ca_file), str(issued), str(key)))
    assert signer is not None and signer.certificate == identities.commands.certificate
    assert command_signer(TlsFiles(str(identities.ca_file))) is None
    assert command_signer(None) is None


def test_the_agent_checks_signatures_on_mutual_tls_only(identities) -> None:
    ca, agent = identities.ca_file, identities.ca_file.parent / "agents" / "ws-a"
    mutual = AgentConfig(
        broker="mqtts://127.0.0.1:8883",
        tls_ca=str(ca),
        tls_cert=str(agent.with_suffix(".pem")),
        tls_key=str(agent.with_suffix(".key")),
    )
    assert command_ca(mutual) == identities.cas
    assert command_ca(AgentConfig(broker="mqtts://127.0.0.1:8883", tls_ca=str(ca))) is None
    assert command_ca(AgentConfig()) is None


def test_commands_have_a_topic_per_host_that_the_controller_does_not_read() -> None:
    assert command_topic("ws-a") == "cpsfleet/v1/hosts/ws-a/command"
    assert not any(subscription.endswith("/command") for subscription in SUBSCRIPTIONS)
    with pytest.raises(TopicError):
        parse_topic(command_topic("ws-a"))
    with pytest.raises(TopicError):
        command_topic("ws-a/#")


class RecordingPublisher:
    """Keeps the statuses; the first waits for ``gate``, as an inventory still running."""

    def __init__(self, gated: bool = False) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.published = threading.Semaphore(0)
        self.gate, self.waiting = threading.Event(), threading.Event()
        if not gated:
            self.gate.set()

    def publish_status(self, document: dict[str, Any]) -> None:
        self.waiting.set()
        assert self.gate.wait(timeout=10)
        self.statuses.append(validate(document))
        self.published.release()


@pytest.fixture
def daemon() -> Iterator[AgentDaemon]:
    daemon = AgentDaemon(AgentConfig(host_id="ws-a"), RecordingPublisher())  # type: ignore[arg-type]
    daemon.scheduler.start()
    yield daemon
    daemon.scheduler.shutdown(wait=True)


def command_now() -> tuple[str, bytes]:
    raw = rescan_for("ws-a", now=datetime.now(UTC))
    return json.loads(raw)["id"], raw


def test_the_daemon_rescans_once_per_valid_command_and_ignores_the_rest(caplog) -> None:
    caplog.set_level(logging.INFO, logger="cpsfleet.agent.daemon")
    publisher = RecordingPublisher()
    daemon = AgentDaemon(AgentConfig(host_id="ws-a"), publisher)  # type: ignore[arg-type]
    daemon.scheduler.start()
    try:
        valid = rescan_for("ws-a", now=datetime.now(UTC))
        daemon.on_command(valid, retained=False)
        assert publisher.published.acquire(timeout=10)
        daemon.on_command(valid, retained=False)  # QoS 1 delivered it again
        daemon.on_command(rescan_for("ws-b", now=datetime.now(UTC)), retained=False)
        a_year_ago = datetime.now(UTC) - timedelta(days=365)
        daemon.on_command(rescan_for("ws-a", now=a_year_ago), retained=False)
        daemon.on_command(b"{}", retained=False)
        assert not publisher.published.acquire(timeout=1)
    finally:
        daemon.scheduler.shutdown(wait=True)
    assert len(publisher.statuses) == 1
    assert publisher.statuses[0]["host"]["id"] == "ws-a"
    assert publisher.statuses[0]["answers"] == [json.loads(valid)["id"]]
    ignored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("command ")]
    assert any("already done" in line for line in ignored)
    assert sum(line.startswith("command ignored") for line in ignored) == 3


def test_a_burst_of_commands_is_answered_by_one_status_naming_them_all(daemon) -> None:
    publisher = daemon.publisher
    burst = [command_now() for _ in range(3)]
    with daemon.scan_lock:  # an inventory runs while the burst arrives
        for _, raw in burst:
            daemon.on_command(raw, retained=False)
    assert publisher.published.acquire(timeout=10)
    assert not publisher.published.acquire(timeout=1)
    [status] = publisher.statuses
    assert status["answers"] == [command_id for command_id, _ in burst]


def test_an_inventory_started_before_a_command_does_not_answer_it(daemon) -> None:
    publisher = daemon.publisher = RecordingPublisher(gated=True)
    running = threading.Thread(target=daemon.scan_and_publish)
    running.start()
    assert publisher.waiting.wait(timeout=10), "the inventory is done, not yet published"
    command_id, raw = command_now()
    daemon.on_command(raw, retained=False)
    publisher.gate.set()
    running.join(timeout=10)
    assert publisher.published.acquire(timeout=10) and publisher.published.acquire(timeout=10)
    earlier, answer = publisher.statuses
    assert "answers" not in earlier
    assert answer["answers"] == [command_id]


def test_a_scheduled_inventory_started_after_a_command_answers_it() -> None:
    """The command's own run then finds nothing left to answer: no second inventory."""
    publisher = RecordingPublisher()
    daemon = AgentDaemon(AgentConfig(host_id="ws-a"), publisher)  # type: ignore[arg-type]
    command_id, raw = command_now()
    daemon.on_command(raw, retained=False)  # its run waits: the scheduler is not started
    daemon.scan_and_publish()
    daemon.answer_commands()
    [status] = publisher.statuses
    assert status["answers"] == [command_id]


def test_a_ca_file_of_two_cas_takes_commands_signed_under_either(identities, tmp_path) -> None:
    """During a CA rotation the agents' CA file holds the old CA and the new one."""
    now = datetime.now(UTC)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(identities.ca_file.read_bytes() + identities.other_ca_file.read_bytes())
    both = load_cas(bundle)
    assert len(both) == 2
    for signer in (identities.commands, identities.stranger):
        assert accept(signed(signer, now), "ws-a", now, cas=both).host_id == "ws-a"
    with pytest.raises(CommandRefused, match="is not certified by the fleet CA"):
        accept(signed(identities.stranger, now), "ws-a", now, cas=identities.cas)
