"""The periodic evaluation of the hosts due gives the findings a full evaluation gives.

A synthetic fleet (certificates ending from weeks ago to three years ahead, some soon) is
stored at BASE; its findings are evaluated at some moment, then, at a later one, only the
hosts ``hosts_due`` names are evaluated again. The result must equal a full evaluation at
the later moment, finding for finding (rule, host, subject, severity and message).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpsfleet.controller import service
from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.model import Finding
from cpsfleet.controller.rules.due import hosts_due
from cpsfleet.controller.rules.findings import Thresholds, evaluate_fleet
from cpsfleet.controller.service import Controller
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.sim.fleet.documents import status_document
from cpsfleet.sim.fleet.model import generate_fleet

# A Saturday at noon: no working hours all weekend, so card_left_in_reader holds still.
BASE = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
THRESHOLDS = Thresholds()
Key = tuple[str, str, str, str, str]


def keys(findings: list[Finding]) -> set[Key]:
    return {(f.rule, f.host_id, f.subject, f.severity, f.message) for f in findings}


@pytest.fixture(scope="module")
def store(module_database: str) -> Iterator[Store]:
    with Store(module_database) as opened:
        fleet = generate_fleet(120, seed=5, now=BASE)
        # Statuses received over the hour before BASE: agents fall silent at different moments.
        for index, host in enumerate(fleet):
            received = BASE - timedelta(minutes=index / 2)
            opened.record_status(status_document(host, 1, BASE), received)
        yield opened


def incremental(store: Store, since: datetime, now: datetime) -> set[Key]:
    views = store.host_views()
    before = keys(evaluate_fleet(views, since, THRESHOLDS))
    due = hosts_due(store, since, now, THRESHOLDS)
    if due is None:
        return keys(evaluate_fleet(views, now, THRESHOLDS))
    kept = {key for key in before if key[1] not in due}
    return kept | keys(evaluate_fleet([v for v in views if v.id in due], now, THRESHOLDS))


@settings(max_examples=150, deadline=None, database=None)
@given(
    start=st.integers(min_value=0, max_value=36 * 60),
    step=st.integers(min_value=1, max_value=23 * 60),
)
def test_the_hosts_due_give_the_full_evaluation(store: Store, start: int, step: int) -> None:
    since = BASE + timedelta(minutes=start)
    now = since + timedelta(minutes=step)
    assert incremental(store, since, now) == keys(
        evaluate_fleet(store.host_views(), now, THRESHOLDS)
    )


def test_few_hosts_are_due_a_minute_later(store: Store) -> None:
    due = hosts_due(
        store, BASE + timedelta(hours=3), BASE + timedelta(hours=3, minutes=1), THRESHOLDS
    )
    assert due is not None and len(due) < 10


def test_silent_agents_become_due_when_their_allowance_runs_out(store: Store) -> None:
    # Statuses every 900 s: silent after 2 x 900 s + 300 s without one.
    since, now = BASE + timedelta(minutes=20), BASE + timedelta(minutes=40)
    due = hosts_due(store, since, now, THRESHOLDS)
    assert due is not None
    silent = {
        f.host_id
        for f in evaluate_fleet(store.host_views(), now, THRESHOLDS)
        if f.rule == "agent_offline"
    }
    before = {
        f.host_id
        for f in evaluate_fleet(store.host_views(), since, THRESHOLDS)
        if f.rule == "agent_offline"
    }
    assert silent - before and silent - before <= due


def test_working_hours_starting_or_a_day_passing_means_every_host(database: str) -> None:
    monday_morning = datetime(2026, 11, 30, 5, 59, tzinfo=UTC)  # 06:59 in Paris
    with Store(database) as empty:
        starting = monday_morning + timedelta(minutes=2)
        assert hosts_due(empty, monday_morning, starting, THRESHOLDS) is None
        assert hosts_due(empty, BASE, BASE + timedelta(days=1), THRESHOLDS) is None


def test_a_range_of_ids_reads_the_views_of_those_ids(store: Store) -> None:
    ids = store.host_ids()
    assert store.host_views_between(ids[0], ids[-1]) == store.host_views()
    assert store.host_views_between(ids[10], ids[40]) == store.host_views(ids[10:41])
    assert store.host_views_between(ids[-1] + "~", ids[-1] + "~~") == []


def test_the_whole_fleet_evaluated_in_chunks_gives_every_hosts_findings(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 7 hosts (read by id range) give what one evaluation of all the views gives,
    alerts included, and the cycle collector runs again afterwards."""
    monkeypatch.setattr(service, "EVALUATION_CHUNK", 7)
    controller = Controller(ControllerSettings(database=database))
    monkeypatch.setattr(controller.notifier, "publish", lambda changed: None)
    with Store(database) as fleet_store:
        for host in generate_fleet(60, seed=11, now=BASE):
            fleet_store.record_status(status_document(host, 1, BASE), BASE)
        controller.book = AlertBook(fleet_store.database, controller.settings.alerts)
        controller.evaluate(fleet_store)
        expected = keys(evaluate_fleet(fleet_store.host_views(), datetime.now(UTC), THRESHOLDS))
        stored = keys(fleet_store.findings())
        alerts = {(a.rule, a.host_id, a.subject) for a in controller.book.alerts("firing")}
    assert stored == expected and len({key[1] for key in stored}) > 40
    assert alerts == {key[:3] for key in expected}
    assert gc.isenabled()
