"""Commands from the controller to one agent: the document, and when an agent may act on one.

Both sides import this module: the controller writes commands with ``new_command``, the
agent vets every one it receives with ``accept``. A command is acted on only if it names
the agent's own host and is within its validity window on the agent's clock, give or take
``CLOCK_SKEW``; an agent back after a week offline thus ignores whatever was still queued
for it. The broker drops expired commands too (MQTT 5 Message Expiry Interval, set by the
controller), so this check is the second of two. The answer is a status document whose
``answers`` names the command's id (``status.schema.json``): the controller waits for that
one, not merely for any status newer than the command.

Who may publish a command is first the broker's business: its ACL lets only the
controller's identities write command topics and each agent read its own
(``controller.pki.mosquitto``). MQTT does not tell a subscriber who published a message, so on
mutual TLS the agent checks for itself: the controller signs each command with the key of
its commands certificate (CN ``COMMANDS_IDENTITY``), and ``accept``, given the fleet CA,
refuses a command that is unsigned, altered, or signed by anyone else (``cpsfleet.schemas.signing``:
the signer must be issued directly by that CA, valid now, and have that CN). ``issued_by``
is only written to the agent's log. On plain MQTT there is no CA, no commands certificate,
and no signature: that is for loopback and tests, where anyone local could publish
anything anyway, and ``accept`` without a CA takes unsigned commands as it always did.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from cpsfleet.schemas import COMMAND_SCHEMA, COMMAND_VERSION, SchemaError, parse_flat, times
from cpsfleet.schemas.signing import SignatureError, verify
from cpsfleet.schemas.times import format_utc

ACTIONS = ("rescan",)
# The CN of the certificate commands are sent and signed with: `cpsfleet controller rescan`
# connects beside the running controller, and with the controller's CN it would be given
# the controller's client id and take its session over.
COMMANDS_IDENTITY = "cpsfleet-commands"
# Workstation clocks drift a little even with NTP; beyond this, the clock is the problem.
CLOCK_SKEW = timedelta(seconds=60)
# A command is for someone waiting on its answer: an hour is long past any such wait, and
# bounds how long a command with a wrong issue time could be replayed from a queue.
MAX_LIFETIME = timedelta(hours=1)


class CommandRefused(ValueError):
    """A command the agent must not act on; the message says why, for its log."""


@dataclass(frozen=True)
class Command:
    id: str
    host_id: str
    action: str
    issued_at: datetime
    expires_at: datetime
    issued_by: str

    def document(self) -> dict[str, Any]:
        return {
            "schema": COMMAND_SCHEMA,
            "version": COMMAND_VERSION,
            "id": self.id,
            "host_id": self.host_id,
            "action": self.action,
            "issued_at": format_utc(self.issued_at),
            "expires_at": format_utc(self.expires_at),
            "issued_by": self.issued_by,
        }

    def lifetime_s(self, now: datetime) -> int:
        """Whole seconds left until it expires (at least 1): its MQTT message expiry."""
        return max(1, int((self.expires_at - now).total_seconds()))


def new_command(
    host_id: str, action: str, now: datetime, lifetime: timedelta, issued_by: str
) -> Command:
    """A command issued ``now`` (to the second, as the document has it) for ``lifetime``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    if not timedelta(seconds=1) <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"a command lives 1 s to {MAX_LIFETIME}, not {lifetime}")
    issued = now.astimezone(UTC).replace(microsecond=0)
    return Command(uuid.uuid4().hex, host_id, action, issued, issued + lifetime, issued_by)


def accept(
    payload: bytes,
    host_id: str,
    now: datetime,
    retained: bool = False,
    cas: Sequence[x509.Certificate] | None = None,
) -> Command:
    """The command in ``payload`` if this agent (``host_id``) may act on it ``now``;
    CommandRefused otherwise. With the fleet ``cas`` (mutual TLS), only a command signed by
    ``COMMANDS_IDENTITY`` under one of them; without (plain MQTT, loopback and tests), any."""
    if retained:
        raise CommandRefused("a retained command: the controller never retains them")
    try:
        document = parse_flat(payload, COMMAND_SCHEMA)
    except SchemaError as error:
        raise CommandRefused(f"malformed command: {error}") from None
    if cas is not None:
        _check_signature(document, cas, now)
    command = _command(document)
    if command.host_id != host_id:
        raise CommandRefused(f"command {command.id} is for host {command.host_id!r}")
    _check_window(command, now)
    return command


def _check_signature(
    document: dict[str, Any], cas: Sequence[x509.Certificate], now: datetime
) -> None:
    try:
        verify(document, cas, COMMANDS_IDENTITY, now)
    except SignatureError as error:
        raise CommandRefused(
            f"command {document['id']} is not from the controller: {error}"
        ) from None


def _command(document: dict[str, Any]) -> Command:
    try:
        issued, expires = (times.parse(document[key]) for key in ("issued_at", "expires_at"))
    except ValueError as error:
        raise CommandRefused(f"malformed command: {error}") from None
    return Command(
        document["id"],
        document["host_id"],
        document["action"],
        issued,
        expires,
        document["issued_by"],
    )


def _check_window(command: Command, now: datetime) -> None:
    if not timedelta(0) < command.expires_at - command.issued_at <= MAX_LIFETIME:
        raise CommandRefused(
            f"command {command.id} is valid from {format_utc(command.issued_at)} to "
            f"{format_utc(command.expires_at)}: not a window of up to {MAX_LIFETIME}"
        )
    if now > command.expires_at + CLOCK_SKEW:
        late = int((now - command.expires_at).total_seconds())
        raise CommandRefused(f"command {command.id} expired {late} s ago")
    if now < command.issued_at - CLOCK_SKEW:
        ahead = int((command.issued_at - now).total_seconds())
        raise CommandRefused(
            f"command {command.id} is issued {ahead} s in the future of this workstation's "
            "clock: check its time synchronisation"
        )
