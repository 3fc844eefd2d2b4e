"""``silence``, ``alerts`` and ``ack`` on a real database, through a Typer app they register in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.cli.alerts import parse_until, register
from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.model import Finding

NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
EXPIRED = Finding(
    "card_expired", "critical", "ws-lyon-07", "8001234567", "CPS card 8001234567 expired: renew it"
)
OFFLINE = Finding("agent_offline", "critical", "ws-gre-02", "", "the agent went offline")
REASON = ("--reason", "the card is being renewed")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True)
    register(app)
    return app


@pytest.fixture
def database(database: str) -> str:
    """The controller database with two firing alerts and one resolved."""
    db = connect(database)
    migrations.upgrade(db)
    book = AlertBook(db)
    book.update([EXPIRED, OFFLINE, Finding("no_reader", "warning", "ws-gre-02", "", "x")], NOW)
    book.update([EXPIRED, OFFLINE], NOW + timedelta(hours=1))
    db.close()
    return database


def cli(app: typer.Typer, *args: str) -> Result:
    """Run a command as the login "mallory" (getpass reads LOGNAME first)."""
    return CliRunner().invoke(app, list(args), env={"LOGNAME": "mallory"}, catch_exceptions=False)


def ok(app: typer.Typer, database: Path | str, *args: str) -> str:
    result = cli(app, *args, "--database", str(database))
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(app: typer.Typer, database: Path | str, *args: str) -> str:
    result = cli(app, *args, "--database", str(database))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_every_command_has_help(app: typer.Typer) -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    silence = group.commands["silence"]
    assert isinstance(silence, TyperGroup)
    commands = [group.commands["alerts"], group.commands["ack"], *silence.commands.values()]
    assert sorted(command.name or "" for command in commands) == [
        "ack",
        "add",
        "alerts",
        "expire",
        "list",
    ]
    for command in [silence, *commands]:
        assert command.help and command.help.strip(), f"{command.name} has no help"


# Silences


def test_a_silence_added_is_listed_with_who_and_why(app: typer.Typer, database: str) -> None:
    out = ok(app, database, "silence", "add", "--host", "ws-lyon-07", "--until", "3d", *REASON)
    assert out.startswith("silence 1 added, until ")
    listed = json.loads(ok(app, database, "silence", "list", "--json"))
    assert [(s["id"], s["rule"], s["host_id"], s["created_by"]) for s in listed] == [
        (1, None, "ws-lyon-07", "mallory")
    ]
    assert listed[0]["reason"] == "the card is being renewed"


def test_silence_by_defaults_to_the_login_name_and_can_be_given(
    app: typer.Typer, database: str
) -> None:
    add = ("silence", "add", "--rule", "no_reader", "--until", "2h", *REASON)
    ok(app, database, *add)
    ok(app, database, *add, "--by", "alice")
    listed = json.loads(ok(app, database, "silence", "list", "--json"))
    assert [s["created_by"] for s in listed] == ["mallory", "alice"]


def test_silence_list_shows_any_as_a_star_in_its_table(app: typer.Typer, database: str) -> None:
    ok(app, database, "silence", "add", "--rule", "no_reader", "--until", "2h", *REASON)
    table = ok(app, database, "silence", "list")
    header, _, row = table.splitlines()
    assert header.split()[:4] == ["id", "rule", "host", "subject"]  # words, not keys
    assert row.split()[:4] == ["1", "no_reader", "*", "*"]
    assert "expired_at" not in header


def test_an_expired_silence_leaves_the_list_but_not_list_all(
    app: typer.Typer, database: str
) -> None:
    ok(app, database, "silence", "add", "--rule", "card_expired", "--until", "1w", *REASON)
    assert ok(app, database, "silence", "expire", "1") == "silence 1 expired\n"
    assert ok(app, database, "silence", "list") == "no active silence\n"
    (listed,) = json.loads(ok(app, database, "silence", "list", "--all", "--json"))
    assert listed["expired_at"] is not None
    assert "silence 1 already ended" in refused(app, database, "silence", "expire", "1")
    assert "no silence 9" in refused(app, database, "silence", "expire", "9")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--until", "2h", *REASON), "needs a rule, a host or a subject"),
        (("--rule", "card_expird", "--until", "2h", *REASON), "unknown rule 'card_expird'"),
        (("--rule", "no_reader", "--until", "soon", *REASON), "--until 'soon' is neither"),
        (("--rule", "no_reader", "--until", "2020-01-01", *REASON), "already passed"),
        (("--rule", "no_reader", "--until", "2h", "--reason", " "), "reason is empty"),
        (("--host", "ws-lyon-70", "--until", "2h", *REASON), "unknown host 'ws-lyon-70': the"),
        (("--subject", "8001234576", "--until", "2h", *REASON), "about '8001234576'"),
        (
            ("--rule", "card_expired", "--host", "ws-gre-02", "--subject", "8001234567")
            + ("--until", "2h", *REASON),
            "no alert nor finding of rule card_expired on ws-gre-02 is about '8001234567'",
        ),
    ],
)
def test_a_silence_that_makes_no_sense_is_refused_in_one_line(
    app: typer.Typer, database: str, args: tuple[str, ...], error: str
) -> None:
    message = refused(app, database, "silence", "add", *args)
    assert message.startswith("error: ") and error in message and message.count("\n") == 1


def test_until_takes_durations_and_iso_dates_in_local_time_unless_told() -> None:
    assert parse_until("30m", NOW) == NOW + timedelta(minutes=30)
    assert parse_until("2h", NOW) == NOW + timedelta(hours=2)
    assert parse_until("3d", NOW) == NOW + timedelta(days=3)
    assert parse_until("1w", NOW) == NOW + timedelta(weeks=1)
    assert parse_until("2026-12-01", NOW) == datetime(2026, 12, 1).astimezone()
    assert parse_until("2026-12-01T08:00", NOW) == datetime(2026, 12, 1, 8).astimezone()
    paris = parse_until("2026-12-01T18:00+01:00", NOW)
    assert (paris, paris.tzinfo) == (datetime(2026, 12, 1, 17, tzinfo=UTC), UTC)
    with pytest.raises(ValueError, match="neither an ISO date"):
        parse_until("tomorrow", NOW)


# Alerts and acknowledgements


def test_alerts_lists_firing_then_resolved(app: typer.Typer, database: str) -> None:
    listed = json.loads(ok(app, database, "alerts", "--json"))
    assert [(a["state"], a["rule"], a["host_id"]) for a in listed] == [
        ("firing", "agent_offline", "ws-gre-02"),
        ("firing", "card_expired", "ws-lyon-07"),
        ("resolved", "no_reader", "ws-gre-02"),
    ]
    assert listed[2]["resolved_at"] == "2026-11-27T22:00:00Z"
    resolved = json.loads(ok(app, database, "alerts", "--state", "resolved", "--json"))
    assert [a["rule"] for a in resolved] == ["no_reader"]
    table = ok(app, database, "alerts", "--state", "firing")
    assert "CPS card 8001234567 expired" in table and "no_reader" not in table


def test_alerts_refuses_an_unknown_state(app: typer.Typer, database: str) -> None:
    error = refused(app, database, "alerts", "--state", "open")
    assert error == "error: --state must be one of firing, resolved, not 'open'\n"


def test_an_acknowledgement_is_stored_with_who_and_why(app: typer.Typer, database: str) -> None:
    out = ok(
        app, database, "ack", "--rule", "card_expired", "--host", "ws-lyon-07",
        "--subject", "8001234567", "--reason", "new card ordered", "--by", "alice",
    )  # fmt: skip
    assert out == "alert card_expired on ws-lyon-07 (8001234567) acknowledged\n"
    listed = json.loads(ok(app, database, "alerts", "--state", "firing", "--json"))
    ack = listed[1]["acknowledgement"]
    assert (ack["by"], ack["reason"]) == ("alice", "new card ordered")
    assert "alice" in ok(app, database, "alerts", "--state", "firing")


def test_a_host_alert_is_acknowledged_without_a_subject(app: typer.Typer, database: str) -> None:
    ok(app, database, "ack", "--rule", "agent_offline", "--host", "ws-gre-02", "--reason", "moved")
    (offline, _) = json.loads(ok(app, database, "alerts", "--state", "firing", "--json"))
    assert offline["acknowledgement"]["by"] == "mallory"


def test_acknowledging_no_firing_alert_is_refused(app: typer.Typer, database: str) -> None:
    error = refused(
        app, database, "ack", "--rule", "no_reader", "--host", "ws-gre-02", "--reason", "x"
    )
    assert error.startswith("error: no firing alert no_reader on ws-gre-02")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--rule", "card_expird", "--host", "ws-lyon-07"), "error: unknown rule 'card_expird'"),
        (("--rule", "card_expired", "--host", "ws-lyon-70"), "error: unknown host 'ws-lyon-70'"),
        (
            ("--rule", "card_expired", "--host", "ws-lyon-07", "--subject", "8001234576"),
            "error: no alert nor finding of rule card_expired on ws-lyon-07 is about '8001234576'",
        ),
    ],
)
def test_acknowledging_what_the_controller_never_saw_is_refused(
    app: typer.Typer, database: str, args: tuple[str, ...], error: str
) -> None:
    message = refused(app, database, "ack", *args, "--reason", "x")
    assert message.startswith(error) and message.count("\n") == 1
    assert json.loads(ok(app, database, "alerts", "--json"))[0]["acknowledgement"] is None


def test_a_silence_of_a_known_card_is_added(app: typer.Typer, database: str) -> None:
    ok(app, database, "silence", "add", "--subject", "8001234567", "--until", "2h", *REASON)
    silences = json.loads(ok(app, database, "silence", "list", "--json"))
    assert [silence["subject"] for silence in silences] == ["8001234567"]


# The database


def test_the_database_comes_from_the_configuration(
    app: typer.Typer, database: str, tmp_path: Path
) -> None:
    config = tmp_path / "controller.toml"
    config.write_text(f'database = "{database}"\n')
    result = cli(app, "alerts", "--state", "resolved", "--config", str(config))
    assert result.exit_code == 0 and "no_reader" in result.stdout


def test_a_missing_database_or_configuration_is_one_line(app: typer.Typer, tmp_path: Path) -> None:
    missing = refused(app, tmp_path / "nowhere.db", "alerts")
    assert missing.startswith("error: no controller database at ")
    result = cli(app, "alerts", "--config", str(tmp_path / "nowhere.toml"))
    assert result.exit_code == 2 and "no such configuration file" in result.stderr
