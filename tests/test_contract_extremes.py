"""Every document the contract accepts can be stored, read back, evaluated, shown, and
survives a restart: a property over generated documents at the contract's extremes.

Hypothesis builds valid status, event and presence documents whose dates lie anywhere from
0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z (leap days, the first and last instants,
RFC 5280's "no expiry"), with odd host ids and reader names, the largest integers and
repeated card serials. Each goes through the controller's intake on a real SQLite
database, the whole fleet is evaluated, and the dashboard (a real server) shows the host;
at the end a real ``cpsfleet controller run`` starts on that database and evaluates it.

Examples: 150 in CI; more with ``CPSFLEET_FUZZ_EXAMPLES=2000``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.service import Controller, Message
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.schemas import validate
from cpsfleet.schemas.times import FIRST, LAST, format_utc, format_utc_micro
from cpsfleet.schemas.topics import HOST_ID, topic
from tests.conftest import Broker, Service, wait_for
from tests.test_dashboard import fetch, serving

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LARGEST = 2**53 - 1
Document = dict[str, Any]

EDGES = [
    FIRST,
    FIRST + timedelta(seconds=1),
    LAST,
    LAST - timedelta(seconds=1),
    datetime(9999, 12, 31, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    datetime(2000, 2, 29, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    NOW,
    NOW + timedelta(days=14),
]
MOMENTS = st.one_of(
    st.sampled_from(EDGES),
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.just(UTC),
    ),
)
WIRE_TIMES = MOMENTS.map(format_utc)
HOST_IDS = st.from_regex(HOST_ID, fullmatch=True)
# Spreadsheet formulas, markup, separators, the longest names: text people will see.
TEXTS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["=1+1", "+33", "-", "@SUM(A1)", "\tx", "<script>", "../..", "é" * 256]),
)
READER_NAMES = st.lists(
    st.text(min_size=1, max_size=40) | st.sampled_from([".", "..", "/", "a/b", "x" * 256]),
    min_size=4,
    max_size=4,
    unique=True,
)


def example(name: str) -> Document:
    document: Document = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return document


@st.composite
def statuses(draw: st.DrawFn) -> Document:
    document = copy.deepcopy(example("status-four-readers"))
    host = document["host"]
    host["id"] = draw(HOST_IDS)
    host["hostname"], host["site"] = draw(TEXTS), draw(st.none() | TEXTS)
    document["scanned_at"] = draw(WIRE_TIMES)
    document["duration_ms"] = draw(st.sampled_from([0, LARGEST]))
    if draw(st.booleans()):
        document["seq"] = draw(st.integers(1, LARGEST))
        document["run"] = draw(st.sampled_from(["0" * 32, "f" * 32]))
    serial = draw(st.sampled_from(["99213845", "00000000", "x" * 64]))
    for reader, name in zip(document["readers"], draw(READER_NAMES), strict=True):
        reader["name"] = name
        card = reader["card"]
        if card is None:
            continue
        if card["is_cps"] and draw(st.booleans()):
            card["serial"] = serial  # the same card in two readers of one status
        if card.get("pin") is not None or card["is_cps"]:
            tries = draw(st.integers(0, 255))
            card["pin"] = {"tries_left": tries, "tries_max": 255, "error": None}
        for certificate in card["certificates"]:
            certificate["not_before"] = draw(st.none() | WIRE_TIMES)
            certificate["not_after"] = draw(st.none() | WIRE_TIMES)
            certificate["days_left"] = draw(st.none() | st.sampled_from([-LARGEST, 0, LARGEST]))
            certificate["surname"] = draw(st.none() | TEXTS)
    return document


@st.composite
def events(draw: st.DrawFn, host_id: str) -> Document:
    event = example("event-card-inserted") | {"host_id": host_id}
    event["at"] = format_utc_micro(draw(MOMENTS).replace(microsecond=draw(st.integers(0, 999999))))
    event["reader"] = draw(st.text(min_size=1, max_size=40))
    return event


@st.composite
def presences(draw: st.DrawFn, host_id: str) -> Document:
    presence = example("presence-last-will") | {"host_id": host_id, "at": draw(WIRE_TIMES)}
    presence["state"] = draw(st.sampled_from(["online", "offline"]))
    return presence


def message(document: Document) -> Message:
    schema = document["schema"]
    host_id = document["host"]["id"] if schema == "cpsfleet.status" else document["host_id"]
    channel = {"cpsfleet.status": "status", "cpsfleet.event": "events"}.get(schema, "presence")
    payload = json.dumps(document, ensure_ascii=False).encode("utf-8")
    return Message(topic(host_id, channel), payload, NOW)


def stored_outcomes(store: Store) -> int:
    names = ("accepted", "duplicate", "stale")
    return sum(store.counter(f"messages_{name}") for name in names)


def failures(store: Store) -> list[str]:
    rows = store.database.execute("select message from findings where rule = 'evaluation_failed'")
    return [row[0] for row in rows]


def test_every_document_the_contract_accepts_is_stored_evaluated_shown_and_restarted_on(
    tmp_path: Path, database: str, own_broker: Broker, services: Callable[..., Service]
) -> None:
    settings_ = ControllerSettings(database=database)
    controller = Controller(settings_)
    hosts: list[str] = []
    with Store(database) as store, serving(database) as url:
        controller.book = AlertBook(store.database, settings_.alerts)

        @settings(
            max_examples=int(os.environ.get("CPSFLEET_FUZZ_EXAMPLES", "150")),
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=st.data())
        def one_host(data: st.DataObject) -> None:
            document = data.draw(statuses())
            host_id = document["host"]["id"]
            batch = [document, data.draw(events(host_id)), data.draw(presences(host_id))]
            for each in batch:
                assert validate(copy.deepcopy(each)) == each  # the contract accepts it
            before = stored_outcomes(store)
            controller.handle_batch(store, [message(each) for each in batch])
            assert stored_outcomes(store) == before + 3, "every document stored or recognised"
            assert store.counter("messages_failed") == 0
            controller.evaluate(store)
            assert failures(store) == []
            hosts.append(host_id)
            for path in (f"/hosts/{host_id}", f"/api/v1/hosts/{host_id}", "/cards", "/readiness"):
                reply = fetch(url, path)
                assert reply.status == 200, (path, reply.text[:500])

        one_host()
        for path in (
            "/",
            "/hosts",
            "/findings",
            "/alerts",
            "/metrics",
            "/export/cards.csv",
            "/export/readiness.json",
        ):
            assert fetch(url, path).status == 200, path

    # A restart: the store is opened again and the whole fleet evaluated, by a real process.
    config = tmp_path / "controller.toml"
    config.write_text(
        f'broker = "{own_broker.url}"\ndatabase = "{database}"\nevaluate_every = 1\n'
        "[dashboard]\nenabled = false\n"
    )
    log = tmp_path / "controller.log"
    process = services(log, "controller", "run", "--config", str(config))
    wait_for(
        lambda: len(re.findall(r"\(the hosts due\)", log.read_text(errors="replace"))) >= 2,
        timeout=60,
        what="the restarted controller's evaluations",
    )
    assert process.process is not None and process.process.poll() is None, log.read_text()
    assert "Traceback" not in log.read_text()
    assert f"evaluated {len(set(hosts))} hosts (every host)" in log.read_text()
    with Store.open_readonly(database) as store:
        assert failures(store) == []
