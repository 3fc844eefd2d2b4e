"""The simulators publish the wire contract's own document types (``cpsfleet.schemas.documents``),
the agent's: a simulated document read back into those types gives the same bytes again."""

from __future__ import annotations

import json
import types
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, Union, get_args, get_origin, get_type_hints

from cpsfleet.agent.mqtt import presence_document as agent_presence
from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, STATUS_SCHEMA, validate
from cpsfleet.schemas.documents import Event, Presence, Status
from cpsfleet.sim.fleet.documents import (
    event_document,
    host_status,
    presence_document,
    status_document,
)
from cpsfleet.sim.fleet.model import generate_fleet

NOW = datetime(2026, 11, 27, 9, 30, 12, 345678, tzinfo=UTC)
# What the agent's outbox stamps on a document, and the document's own name and version.
STAMPED = ("seq",)
NAMED = ("schema", "version")


def read_back(kind: type[Any], data: dict[str, Any]) -> Any:
    """``data`` as an instance of the document type ``kind``: a key the type does not have is
    a TypeError, a missing one takes the type's default (which the bytes then tell apart)."""
    hints = get_type_hints(kind)
    return kind(**{name: _value(hints[name], value) for name, value in data.items()})


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    union = get_origin(hint) in (Union, types.UnionType)
    for option in get_args(hint) if union else (hint,):
        if is_dataclass(option):
            return read_back(option, value)  # type: ignore[arg-type]
        if get_origin(option) is tuple:
            return tuple(_value(get_args(option)[0], item) for item in value)
    return value


def round_trip(kind: type[Any], document: dict[str, Any]) -> Any:
    """Read ``document`` back into ``kind`` and check that its ``document()`` is the same
    JSON, byte for byte, keys in the same order, ``seq`` (if any) last as the outbox puts it."""
    inner = {k: v for k, v in document.items() if k not in NAMED + STAMPED}
    typed = read_back(kind, inner)
    assert [f.name for f in fields(typed)] == list(inner), "the type's fields, in its order"
    unstamped = {k: v for k, v in document.items() if k not in STAMPED}
    assert json.dumps(typed.document(), ensure_ascii=False) == json.dumps(
        unstamped, ensure_ascii=False
    )
    assert set(list(document)[len(unstamped) :]) <= set(STAMPED), "stamps come last"
    return typed


def test_a_simulated_status_is_the_shared_status_type_byte_for_byte() -> None:
    for host in generate_fleet(200, seed=7, now=NOW):
        taken = frozenset(reader.name for reader in host.readers[:1])
        document = validate(status_document(host, 5, NOW, 900, taken), STATUS_SCHEMA)
        status = round_trip(Status, document)
        assert status == host_status(host, NOW, 900, taken)
        assert isinstance(status, Status) and document["seq"] == 5


def test_simulated_events_and_presences_are_the_shared_types_byte_for_byte() -> None:
    hosts = generate_fleet(50, seed=7, now=NOW)
    for host in hosts:
        for reader in (r for r in host.readers if r.card is not None):
            for inserted in (True, False):
                event = event_document(host, reader, inserted, 9, NOW)
                round_trip(Event, validate(event, EVENT_SCHEMA))
        for state in ("online", "offline"):
            round_trip(Presence, validate(presence_document(host, state, NOW), PRESENCE_SCHEMA))


def test_the_storms_last_will_and_the_agents_have_the_same_shape() -> None:
    host = generate_fleet(1, now=NOW)[0]
    will = presence_document(host, "offline", NOW, "connection_lost")
    agents = agent_presence(host.id, "offline", "connection_lost", "1.0")
    assert list(will) == list(agents) and will["reason"] == "connection_lost"
    assert will["at"] is None and agents["at"] is None, "a will cannot know when it goes out"
    assert round_trip(Presence, validate(will, PRESENCE_SCHEMA)) == Presence(
        host.id, "offline", None, "connection_lost", will["agent_version"]
    )
