"""Storing what the receiving process passed on: each message checked against its topic and
the contract, then stored as its host's status, event or presence.

``store_batch`` stores a batch in one transaction and counts the outcomes
(``messages_accepted``, ``_duplicate``, ``_stale``, ``_rejected``, ``_failed``); the
controller's writer (``cpsfleet.controller.service``) then evaluates the hosts it names and
acknowledges the batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from cpsfleet.controller.cluster import lock_hosts
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.receiver import Message
from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, STATUS_SCHEMA, SchemaError, parse
from cpsfleet.schemas.topics import TopicError, parse_topic

log = logging.getLogger(__name__)

RECORDERS = {
    STATUS_SCHEMA: Store.record_status,
    EVENT_SCHEMA: Store.record_event,
    PRESENCE_SCHEMA: Store.record_presence,
}


class Rejected(ValueError):
    """A message the controller will not store; the message says why."""


def host_of(document: dict[str, Any], schema: str) -> str:
    return str(document["host"]["id"] if schema == STATUS_SCHEMA else document["host_id"])


def decode(message: Message) -> tuple[str, str, dict[str, Any]]:
    """(host id, schema, document) of a valid message whose topic and payload agree."""
    try:
        host_id, schema = parse_topic(message.topic)
        document = parse(message.payload, schema)
    except (TopicError, SchemaError) as error:
        raise Rejected(str(error)) from None
    claimed = host_of(document, schema)
    if claimed != host_id:
        raise Rejected(f"the document claims host {claimed!r} on the topic of {host_id!r}")
    return host_id, schema, document


@dataclass(frozen=True)
class Stored:
    """What a batch's transaction stored."""

    hosts: list[str]  # the hosts to evaluate, in arrival order
    accepted: list[Message]
    moved: list[tuple[str, str]]  # (card serial, the host it left): its alerts moved too


class Handled(NamedTuple):
    outcome: str
    hosts: tuple[str, ...] = ()  # to evaluate again
    moved: tuple[tuple[str, str], ...] = ()


def store_batch(store: Store, messages: list[Message], isolated: bool) -> Stored:
    """Store ``messages`` in one transaction and count their outcomes; ``isolated``: each
    message in a savepoint, a failing one logged and counted."""
    outcomes: Counter[str] = Counter()
    hosts: dict[str, None] = {}
    accepted: list[Message] = []
    moved: list[tuple[str, str]] = []
    with store.database.atomic():
        # Another controller storing documents of these hosts goes first, or waits.
        lock_hosts(store.database, _hosts_named(messages))
        for message in messages:
            if isolated:
                try:
                    with store.savepoint():
                        handled = store_message(store, message)
                except Exception:
                    log.exception("failed to handle a message on %.200s", printable(message.topic))
                    handled = Handled("failed")
            else:
                handled = store_message(store, message)
            outcomes[handled.outcome] += 1
            if handled.outcome == "accepted":
                accepted.append(message)
            hosts.update(dict.fromkeys(handled.hosts))
            moved.extend(handled.moved)
        for outcome, count in sorted(outcomes.items()):  # in one order on every controller
            if outcome != "empty":
                store.increment(f"messages_{outcome}", count)
    return Stored(list(hosts), accepted, moved)


def _hosts_named(messages: list[Message]) -> set[str]:
    """The hosts whose topics ``messages`` came on (a topic outside the layout names none)."""
    hosts = set()
    for message in messages:
        try:
            hosts.add(parse_topic(message.topic)[0])
        except TopicError:
            continue
    return hosts


def store_message(store: Store, message: Message) -> Handled:
    """Its outcome, the hosts to evaluate again, the cards whose alerts moved."""
    if not message.payload:
        return Handled("empty")  # a cleared retained message, not a document
    try:
        host_id, schema, document = decode(message)
    except Rejected as error:
        log.warning(
            "rejected a message on %.200s: %.300s", printable(message.topic), printable(str(error))
        )
        return Handled("rejected")
    recorded = RECORDERS[schema](
        store, document, message.received_at, message.payload.decode("utf-8")
    )
    if recorded.changed or (
        recorded.outcome == "accepted"
        and schema == STATUS_SCHEMA
        and store.has_finding(host_id, "agent_offline")
    ):
        return Handled(recorded.outcome, (host_id, *recorded.others), recorded.moved)
    # A status that repeats the host's inventory changes no finding, unless it ends a
    # silence: what time alone changes (an expiry nearing, working hours) is for the
    # periodic evaluation.
    return Handled(recorded.outcome, recorded.others, recorded.moved)


def printable(text: str) -> str:
    """``text`` fit for a log line: a topic may hold lone surrogates (bytes that were not
    UTF-8), which a log file or the journal could not encode; they are written escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
