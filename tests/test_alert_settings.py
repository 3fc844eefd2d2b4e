"""The bounds of the alert retry and repeat settings, and what a failed delivery reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cpsfleet.controller.alerts.book import (
    MAX_REPEAT_S,
    MAX_RETRY_S,
    AlertBook,
    AlertError,
    AlertSettings,
    ChannelRef,
)
from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import Database, connect
from cpsfleet.controller.settings import SettingsError, load_settings

NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
WEEK = 7 * 86400


@pytest.fixture
def db(database: str) -> Iterator[Database]:
    store = connect(database)
    migrations.upgrade(store)
    yield store
    store.close()


def test_the_longest_retry_is_a_week() -> None:
    assert MAX_RETRY_S == WEEK
    settings = AlertSettings(retry_after_s=WEEK, retry_max_s=WEEK)
    assert (settings.retry_after_s, settings.retry_max_s) == (WEEK, WEEK)


@pytest.mark.parametrize("name", ["retry_after_s", "retry_max_s"])
@pytest.mark.parametrize("value", [WEEK + 1, 10**12, 10**30])
def test_a_retry_longer_than_a_week_is_refused(name: str, value: int) -> None:
    with pytest.raises(AlertError, match=rf"alerts {name} must be at most 604800 \(7 days\)"):
        AlertSettings(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["retry_after_s", "retry_max_s"])
def test_the_configuration_file_names_a_retry_too_long(tmp_path: Path, name: str) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(f"[alerts]\n{name} = 999999999999\n")
    with pytest.raises(SettingsError) as raised:
        load_settings(path, environ={})
    assert str(raised.value) == (
        f"{path}: alerts {name} must be at most 604800 (7 days), not 999999999999"
    )


def test_the_longest_retry_does_not_overflow_after_many_failures(db: Database) -> None:
    book = AlertBook(db, AlertSettings(retry_after_s=WEEK, retry_max_s=WEEK))
    book.register_channels([ChannelRef("c1", "channel 1")], NOW)
    late = datetime(9999, 12, 1, tzinfo=UTC)
    delays = [(book.failed("c1", "refused", NOW) - NOW) for _ in range(40)]
    assert set(delays) == {timedelta(seconds=WEEK)}
    assert book.failed("c1", "refused", late) == late + timedelta(seconds=WEEK)
    (channel,) = book.channels()
    assert channel.failures == 41


def test_a_failure_reads_the_one_channel_it_updates(tmp_path: Path) -> None:
    """SQLite only: its trace callback shows the statements (the SQL is the same on both)."""
    db = connect(tmp_path / "a.db")
    migrations.upgrade(db)
    book = AlertBook(db, AlertSettings(retry_after_s=60, retry_max_s=600))
    refs = [ChannelRef(f"c{number}", f"channel {number}") for number in range(1, 4)]
    book.register_channels(refs, NOW)
    book.failed("c2", "refused", NOW)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        retry_at = book.failed("c2", "refused again", NOW)
    finally:
        db.conn.set_trace_callback(None)
    assert retry_at == NOW + timedelta(seconds=120)
    reads = [s for s in statements if s.lstrip().lower().startswith("select")]
    assert reads and all("where id = 'c2'" in read for read in reads), reads
    c1, c2, c3 = book.channels()
    assert (c1.failures, c2.failures, c3.failures) == (0, 2, 0)
    assert c2.last_error == "refused again"
    db.close()


def test_a_failure_of_an_unknown_channel_waits_the_first_delay(db: Database) -> None:
    book = AlertBook(db, AlertSettings(retry_after_s=60, retry_max_s=600))
    assert book.failed("gone", "refused", NOW) == NOW + timedelta(seconds=60)
    assert book.channels() == []


@pytest.mark.parametrize("value", [MAX_REPEAT_S + 1, 10**12])
def test_a_repeat_interval_longer_than_a_year_is_refused(value: int, db: Database) -> None:
    with pytest.raises(AlertError, match=r"alerts repeat_interval_s must be at most 31622400"):
        AlertSettings(repeat_interval_s=value)
    book = AlertBook(db, AlertSettings(repeat_interval_s=MAX_REPEAT_S))
    assert book.pending(NOW, "c1").due == ()  # the longest one still computes its date
