"""Bad input at the controller's intake is rejected with a reason and counted, never a crash.

Messages go through what the MQTT callback feeds: ``decode`` and
``Controller.handle`` on a real store (SQLite, PostgreSQL). The generated topics and payloads
cover malformed JSON, wrong types field by field, unknown schemas and versions,
invalid UTF-8, huge strings, payloads over ``MAX_PAYLOAD_BYTES``, nesting
around Python's recursion limit, and topics with wildcards or odd characters.

Each crash found here, now fixed, is pinned by a regression test at the end.

Examples per property: 500 in CI (this file takes about 20 s). For a deeper
search: ``CPSFLEET_FUZZ_EXAMPLES=20000 pytest --timeout=0 tests/test_fuzz_ingest.py``.
No example database: a failure prints its ``@reproduce_failure`` blob.
``tests/fuzz_ingest.py`` is the time-boxed fuzz run.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.batch import Rejected, decode, host_of
from cpsfleet.controller.intake.receiver import Message
from cpsfleet.controller.service import Controller
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.schemas import MAX_PAYLOAD_BYTES, validate
from cpsfleet.schemas.topics import CHANNELS, HOST_ID, PREFIX, parse_topic, topic

FUZZ = settings(
    max_examples=int(os.environ.get("CPSFLEET_FUZZ_EXAMPLES", "500")),
    deadline=timedelta(seconds=2),
    database=None,
    print_blob=True,
)

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
CHANNEL_OF = {schema: channel for channel, schema in CHANNELS.items()}
SEQUENCED = ("cpsfleet.status", "cpsfleet.event")
Document = dict[str, Any]


def example(name: str) -> Document:
    document: Document = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return document


NAMES = ("status-four-readers", "status-pcscd-down", "event-card-inserted", "presence-last-will")
DOCUMENTS = [example(name) for name in NAMES]


def topic_of(document: Document) -> str:
    schema = document["schema"]
    return topic(host_of(document, schema), CHANNEL_OF[schema])


def message(topic_name: str, payload: bytes) -> Message:
    return Message(topic_name, payload, NOW)


def dumps(document: Any) -> bytes:
    """UTF-8, except lone surrogates in the text, kept as the invalid bytes a bad agent sends."""
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


def places(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside ``value``, depth first."""
    if not isinstance(value, dict | list):
        return
    for key, child in value.items() if isinstance(value, dict) else enumerate(value):
        yield (*prefix, key)
        yield from places(child, (*prefix, key))


def replaced(document: Document, path: tuple[Any, ...], value: Any) -> Document:
    changed = copy.deepcopy(document)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return changed


def value_at(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- strategies -------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=25,
)
HOST_IDS = st.from_regex(HOST_ID, fullmatch=True)
ODD_LEVELS = st.one_of(
    st.sampled_from(["+", "#", "", "hosts", "..", " ", "\x00", "é", "\ud800", "a/b", "x" * 65]),
    st.text(max_size=70),
)
VALID_TOPICS = st.builds(topic, HOST_IDS, st.sampled_from(sorted(CHANNELS)))
TOPICS = st.one_of(
    VALID_TOPICS,
    st.builds(lambda level, channel: f"{PREFIX}/{level}/{channel}", ODD_LEVELS, ODD_LEVELS),
    st.lists(ODD_LEVELS, max_size=8).map("/".join),
    VALID_TOPICS.map(lambda name: name + "/"),
    VALID_TOPICS.map(lambda name: name.replace("/", "//", 1)),
    VALID_TOPICS.map(lambda name: name.replace("/", "/+/", 1)),
    VALID_TOPICS.map(str.upper),
    st.integers(1, 70_000).map(lambda size: f"{PREFIX}/{'h' * size}/status"),
)
BAD_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80"])
NEAR_THE_LIMIT = st.integers(sys.getrecursionlimit() - 60, sys.getrecursionlimit() + 60)
DEPTHS = NEAR_THE_LIMIT | st.integers(1, MAX_PAYLOAD_BYTES // 2)
LONG_LITERALS = st.integers(sys.get_int_max_str_digits() - 300, sys.get_int_max_str_digits() + 300)


@st.composite
def documents(draw: st.DrawFn) -> Document:
    """An example document with its host id changed, a sequence number on statuses and events."""
    document = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    host = draw(HOST_IDS)
    if document["schema"] == "cpsfleet.status":
        document["host"]["id"] = host
    else:
        document["host_id"] = host
    if document["schema"] in SEQUENCED and draw(st.booleans()):
        document |= {"seq": draw(st.integers(1, 2**40)), "late": draw(st.booleans())}
    return document


def at_any_place(document: Document, values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """``document`` with one of its fields replaced by one of ``values``."""
    paths = st.sampled_from(list(places(document)))
    return st.builds(lambda path, value: dumps(replaced(document, path, value)), paths, values)


def nested_inside(document: Document, path: tuple[Any, ...], depth: int) -> bytes:
    """``document`` with the value at ``path`` replaced by arrays nested ``depth`` deep."""
    marker = "\x01nested\x01"
    text = dumps(replaced(document, path, marker))
    return text.replace(dumps(marker), nested(depth).encode())


def long_literal(document: Document, path: tuple[Any, ...], digits: int) -> bytes:
    """``document`` with the value at ``path`` replaced by an integer literal ``digits`` long."""
    marker = "\x01integer\x01"
    return dumps(replaced(document, path, marker)).replace(dumps(marker), b"9" * digits)


def with_bad_utf8(payload: bytes, at: int, bad: bytes) -> bytes:
    return payload[: at % (len(payload) + 1)] + bad + payload[at % (len(payload) + 1) :]


def payloads(document: Document) -> st.SearchStrategy[bytes]:
    """What a broken or hostile agent could publish, most of it derived from ``document``."""
    whole, paths = dumps(document), st.sampled_from(list(places(document)))
    strings = [path for path in places(document) if isinstance(value_at(document, path), str)]
    huge = st.builds(
        lambda char, size: char * size,
        st.characters(),
        st.sampled_from([1_000, MAX_PAYLOAD_BYTES // 2, MAX_PAYLOAD_BYTES + 1]),
    )
    return st.one_of(
        st.binary(max_size=400),
        JSON.map(dumps),
        st.integers(0, len(whole)).map(lambda end: whole[:end]),
        at_any_place(document, JSON),
        extreme_values(document),
        st.builds(lambda v: dumps(replaced(document, ("version",), v)), JSON),
        st.builds(lambda s: dumps(replaced(document, ("schema",), s)), JSON),
        st.builds(with_bad_utf8, st.just(whole), st.integers(0), BAD_UTF8),
        st.builds(
            lambda path, text: dumps(replaced(document, path, text)), st.sampled_from(strings), huge
        ),
        st.just(whole + b" " * (MAX_PAYLOAD_BYTES - len(whole) + 1)),
        st.builds(nested_inside, st.just(document), paths, DEPTHS),
        st.builds(long_literal, st.just(document), paths, LONG_LITERALS),
        DEPTHS.map(lambda depth: nested(depth).encode()),
    )


def similar(value: Any) -> st.SearchStrategy[Any]:
    """Null, or a value of the same JSON type as ``value``, extremes included."""
    same = {
        bool: st.booleans(),
        int: st.integers() | st.sampled_from([2**63, -(2**63) - 1, 2**64]),
        float: st.floats(),
        str: st.text() | st.sampled_from(["", "\x00", "x" * 10_000]),
    }
    return st.none() | same.get(type(value), JSON)


def extreme_values(document: Document) -> st.SearchStrategy[bytes]:
    """``document`` with one field set to a value the schema may well accept."""
    return st.sampled_from(list(places(document))).flatmap(
        lambda path: similar(value_at(document, path)).map(
            lambda value: dumps(replaced(document, path, value))
        )
    )


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A payload on the topic of the document it was made from 3 times in 4, any otherwise."""
    document = draw(documents())
    payload = draw(payloads(document))
    return message(topic_of(document) if draw(st.integers(0, 3)) else draw(TOPICS), payload)


@st.composite
def near_valid_messages(draw: st.DrawFn) -> Message:
    """A document with one field at an extreme of its type, on its own topic: often accepted."""
    document = draw(documents())
    return message(topic_of(document), draw(extreme_values(document)))


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def intake(module_database: str) -> Iterator[tuple[Controller, Store]]:
    """A controller that is never run (no broker) and its store, shared by the examples."""
    controller = Controller(ControllerSettings(database=module_database))
    with Store(module_database) as store:
        controller.book = AlertBook(store.database, controller.settings.alerts)
        yield controller, store


def stored(store: Store) -> dict[str, int]:
    tables = ("hosts", "status_history", "events", "readers", "cards")
    return {name: store.database.table(name).count for name in tables}


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict | list):
        for child in value.values() if isinstance(value, dict) else value:
            yield from leaves(child)
    else:
        yield value


def rejected(candidate: Message) -> bool:
    try:
        decode(candidate)
    except Rejected:
        return True
    return False


# --- properties -------------------------------------------------------------------------------


@FUZZ
@given(messages())
def test_decode_gives_a_valid_triple_or_rejects_with_a_reason(candidate: Message) -> None:
    try:
        host_id, schema, document = decode(candidate)
    except Rejected as error:
        assert str(error).strip()
        return
    assert parse_topic(candidate.topic) == (host_id, schema)
    assert validate(document, schema) is document and host_of(document, schema) == host_id


@FUZZ
@given(messages() | near_valid_messages())
def test_handle_never_fails(intake: tuple[Controller, Store], candidate: Message) -> None:
    """``handle`` catches whatever escapes as ``messages_failed``: it must stay at zero."""
    controller, store = intake
    failed = store.counter("messages_failed")
    controller.handle(store, candidate)
    assert store.counter("messages_failed") == failed


@FUZZ
@given(st.lists(messages(), min_size=1, max_size=8))
def test_handle_counts_each_rejected_message_and_stores_nothing_of_it(
    intake: tuple[Controller, Store], batch: list[Message]
) -> None:
    controller, store = intake
    bad = [candidate for candidate in batch if rejected(candidate)]
    before, rejections = stored(store), store.counter("messages_rejected")
    for candidate in bad:
        controller.handle(store, candidate)
    counted = sum(1 for candidate in bad if candidate.payload)  # empty: a cleared retained topic
    assert store.counter("messages_rejected") == rejections + counted
    assert stored(store) == before


# --- targeted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: f"{d['schema']}")
def test_a_valid_example_is_accepted_and_stored(database: str, document: Document) -> None:
    controller = Controller(ControllerSettings(database=database))
    with Store(database) as store:
        controller.book = AlertBook(store.database, controller.settings.alerts)
        controller.handle(store, message(topic_of(document), dumps(document)))
        assert store.counter("messages_accepted") == 1
        assert store.counter("messages_rejected") == 0
        assert store.database.table("hosts").count == 1


def test_a_payload_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() -> None:
    document = DOCUMENTS[0]
    payload = dumps(document)
    at_limit = payload + b" " * (MAX_PAYLOAD_BYTES - len(payload))
    assert decode(message(topic_of(document), at_limit))[2] == document
    with pytest.raises(Rejected, match=f"payload of {MAX_PAYLOAD_BYTES + 1} bytes is over"):
        decode(message(topic_of(document), at_limit + b" "))


@pytest.mark.parametrize(
    "depth", [sys.getrecursionlimit() - 10, sys.getrecursionlimit() + 10, 100_000]
)
def test_nesting_around_and_past_the_recursion_limit_is_rejected(depth: int) -> None:
    payload = dumps(DOCUMENTS[0])[:-1] + f', "x": {nested(depth)}}}'.encode()
    with pytest.raises(Rejected):
        decode(message(topic_of(DOCUMENTS[0]), payload))


@pytest.mark.parametrize(
    "name",
    ["cpsfleet/v1/hosts/+/status", "cpsfleet/v1/hosts/#", "cpsfleet/v1/hosts//status", "\x00"],
)
def test_a_topic_with_wildcards_or_empty_levels_is_rejected(name: str) -> None:
    with pytest.raises(Rejected, match="not a fleet topic"):
        decode(message(name, dumps(DOCUMENTS[0])))


def handled_once(database: str, document: Document) -> bool:
    """Whether handling ``document`` on a fresh store counted it once, accepted or rejected."""
    controller = Controller(ControllerSettings(database=database))
    with Store(database) as store:
        controller.book = AlertBook(store.database, controller.settings.alerts)
        controller.handle(store, message(topic_of(document), dumps(document)))
        counted = store.counter("messages_accepted") + store.counter("messages_rejected")
        return counted == 1 and store.counter("messages_failed") == 0


@pytest.mark.parametrize(
    "document",
    [
        replaced(DOCUMENTS[0], ("version",), [1]),
        replaced(DOCUMENTS[0], ("version",), {"v": 1}),
        replaced(DOCUMENTS[0], ("scan_interval_s",), 2**63),
        DOCUMENTS[2] | {"seq": 2**63},
    ],
    ids=["version [1]", "version {}", "scan interval 2**63", "seq 2**63"],
)
def test_a_version_that_is_no_number_or_an_integer_sqlite_cannot_hold_is_rejected(
    database: str, document: Document
) -> None:
    """Crashes found by this file until b84ad5b (unhashable version; OverflowError in SQLite)."""
    assert handled_once(database, document)
    with pytest.raises(Rejected):
        decode(message(topic_of(document), dumps(document)))


def test_an_integer_of_5000_digits_is_rejected() -> None:
    """A crash found by this file until b84ad5b: json.loads raised a plain ValueError."""
    payload = b'{"schema": "cpsfleet.status", "version": ' + b"9" * 5000 + b"}"
    with pytest.raises(Rejected, match="not JSON this controller accepts"):
        decode(message(topic_of(DOCUMENTS[0]), payload))


def test_a_certificate_without_dates_beside_one_with_dates_is_counted(database: str) -> None:
    document = replaced(DOCUMENTS[0], ("readers", 0, "card", "certificates", 0, "not_before"), None)
    assert handled_once(database, document)


def test_a_scan_interval_past_any_date_is_counted(database: str) -> None:
    assert handled_once(database, replaced(DOCUMENTS[0], ("scan_interval_s",), 10**14))


def test_a_card_serial_longer_than_a_topic_can_be_is_counted(database: str) -> None:
    serial = ("readers", 0, "card", "serial")
    assert handled_once(database, replaced(DOCUMENTS[0], serial, "9" * 70_000))


@pytest.mark.parametrize("field", ["schema", "version"])
def test_a_schema_or_version_nested_a_thousand_deep_is_rejected_in_a_few_words(
    field: str,
) -> None:
    """A crash found by ``tests/fuzz_ingest.py`` (seed 20261203): the refusal's repr of the
    value walked the whole nesting and exceeded the recursion limit."""
    depth = sys.getrecursionlimit() - 10
    nested_value = "[" * depth + "]" * depth
    declared = {"schema": '"cpsfleet.status"', "version": "1"} | {field: nested_value}
    payload = f'{{"schema": {declared["schema"]}, "version": {declared["version"]}}}'.encode()
    with pytest.raises(Rejected) as refused:
        decode(message(topic_of(DOCUMENTS[0]), payload))
    assert field in str(refused.value) and len(str(refused.value)) < 200
