"""``cpsfleet controller user | token | audit`` on a real database, and what the dashboard
makes of what they change: a user added here signs in, a token made here carries its user's
sites, a revoked token, a disabled or removed user is refused; every change is in the audit
trail as ``cli:`` and the system user."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from cpsfleet.cli import build
from tests.conftest import Broker, run_cli
from tests.test_dashboard import (
    GRENOBLE_HOST,
    LYON_HOST,
    build_fleet,
    login,
    request,
    serving,
    session_cookie,
)

APP = build()
LYON = "Lyon Part-Dieu"
SECRET = "a password long enough"
ACTOR = "cli:mallory"


@pytest.fixture(scope="module")
def fleet(module_database: str) -> str:
    """The dashboard tests' fleet, shared by the module's tests."""
    return build_fleet(module_database)


@pytest.fixture(scope="module")
def url(fleet: str) -> Iterator[str]:
    # Failed sign-ins are part of the tests: none may lock the others out.
    with serving(fleet, login_failures_per_source=1000, login_failures_per_account=1000) as address:
        yield address


def cli(database: Path | str, *args: str, stdin: str | None = None, lang: str = "en") -> Result:
    """A ``cpsfleet controller`` command run as the login "mallory" (getpass reads LOGNAME)."""
    return CliRunner().invoke(
        APP,
        ["--lang", lang, "controller", *args, "--database", str(database)],
        input=stdin,
        env={"LOGNAME": "mallory", "COLUMNS": "200"},
        catch_exceptions=False,
    )


def ok(database: Path | str, *args: str, stdin: str | None = None) -> str:
    result = cli(database, *args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


def listed(database: Path | str, *args: str) -> Any:
    return json.loads(ok(database, *args, "--json"))


def add_user(database: Path | str, name: str, *args: str) -> None:
    ok(database, "user", "add", name, *args, "--password-stdin", stdin=f"{SECRET}\n")


def new_token(database: Path | str, user: str, *args: str) -> str:
    token = ok(database, "token", "add", user, *args).strip()
    assert token.startswith("cpsf_") and len(token) > 40
    return token


def bearer(url: str, path: str, token: str) -> int:
    return request(url, path, headers={"Authorization": f"Bearer {token}"}).status


def audited(database: Path | str, target: str) -> list[dict[str, Any]]:
    """The trail's entries about ``target``, oldest first."""
    entries = listed(database, "audit", "list", "--limit", "10000")
    return [entry for entry in reversed(entries) if entry["target"] == target]


def test_a_user_added_by_the_cli_signs_in_on_the_dashboard(fleet: str, url: str) -> None:
    add_user(fleet, "alice", "--role", "operator", "--site", LYON, "--email", "a@ssti.example")
    assert login(url, "a wrong password", user="alice").status == 401
    reply = login(url, SECRET, user="alice")
    assert reply.status == 303, reply.text
    cookie = {"Cookie": session_cookie(reply)}
    hosts = request(url, "/api/v1/hosts", headers=cookie).json()
    assert {host["id"] for host in hosts} == {LYON_HOST}
    (alice,) = [user for user in listed(fleet, "user", "list") if user["name"] == "alice"]
    assert alice["role"] == "operator" and alice["sites"] == [LYON]
    assert alice["email"] == "a@ssti.example" and alice["last_sign_in_at"] is not None


def test_the_password_is_asked_twice_and_never_shown(fleet: str) -> None:
    differ = cli(fleet, "user", "add", "paul", "--role", "viewer", stdin=f"{SECRET}\nother\n")
    assert differ.exit_code == 2 and "the two passwords differ" in differ.stderr
    short = cli(fleet, "user", "add", "paul", "--role", "viewer", stdin="short\nshort\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.stderr
    assert "paul" not in {user["name"] for user in listed(fleet, "user", "list")}
    done = cli(fleet, "user", "add", "paul", "--role", "viewer", stdin=f"{SECRET}\n{SECRET}\n")
    assert done.exit_code == 0, done.output
    assert SECRET not in done.output and "user paul added: viewer, every site" in done.stdout


def test_a_token_carries_its_user_s_sites(fleet: str, url: str) -> None:
    ok(fleet, "user", "add", "lyon-op", "--role", "operator", "--site", LYON, "--no-password")
    token = new_token(fleet, "lyon-op", "--label", "a script", "--days", "30")
    assert bearer(url, f"/api/v1/hosts/{LYON_HOST}", token) == 200
    assert bearer(url, f"/api/v1/hosts/{GRENOBLE_HOST}", token) == 403
    assert login(url, "", user="lyon-op").status == 401  # no password: tokens only
    (made,) = listed(fleet, "token", "list", "lyon-op")
    assert made["label"] == "a script" and made["revoked_at"] is None
    assert made["last_used_at"] is not None


def test_a_revoked_token_is_refused(fleet: str, url: str) -> None:
    ok(fleet, "user", "add", "scraper", "--role", "viewer", "--no-password")
    token = new_token(fleet, "scraper")
    assert bearer(url, "/api/v1/hosts", token) == 200
    (made,) = listed(fleet, "token", "list", "scraper")
    assert "revoked" in ok(fleet, "token", "revoke", str(made["id"]))
    assert bearer(url, "/api/v1/hosts", token) == 401
    again = cli(fleet, "token", "revoke", str(made["id"]))
    assert again.exit_code == 2 and "revoked already" in again.stderr
    assert "revoked" in ok(fleet, "token", "list", "scraper")


def test_a_disabled_user_is_refused_until_enabled(fleet: str, url: str) -> None:
    add_user(fleet, "dora", "--role", "viewer")
    token = new_token(fleet, "dora")
    cookie = {"Cookie": session_cookie(login(url, SECRET, user="dora"))}
    assert request(url, "/api/v1/hosts", headers=cookie).status == 200
    assert "disabled" in ok(fleet, "user", "set", "dora", "--disable")
    assert request(url, "/api/v1/hosts", headers=cookie).status == 401  # session closed
    assert login(url, SECRET, user="dora").status == 401
    assert bearer(url, "/api/v1/hosts", token) == 401
    refused = cli(fleet, "token", "add", "dora")
    assert refused.exit_code == 2 and "dora is disabled" in refused.stderr
    ok(fleet, "user", "set", "dora", "--enable", "--role", "operator", "--site", "grenoble")
    assert bearer(url, f"/api/v1/hosts/{GRENOBLE_HOST}", token) == 200
    assert bearer(url, f"/api/v1/hosts/{LYON_HOST}", token) == 403
    assert login(url, SECRET, user="dora").status == 303


def test_removing_a_user_revokes_their_tokens_and_closes_their_sessions(
    fleet: str, url: str
) -> None:
    add_user(fleet, "erin", "--role", "admin")
    token = new_token(fleet, "erin")
    cookie = {"Cookie": session_cookie(login(url, SECRET, user="erin"))}
    assert request(url, "/api/v1/audit", headers=cookie).status == 200
    removed = ok(fleet, "user", "remove", "erin")
    assert "user erin removed, with 1 API token; their sessions are closed" in removed
    assert request(url, "/api/v1/audit", headers=cookie).status == 401
    assert bearer(url, "/api/v1/hosts", token) == 401
    gone = cli(fleet, "token", "list", "erin")
    assert gone.exit_code == 2 and "no user 'erin'" in gone.stderr
    assert audited(fleet, "erin")[-1]["detail"]["tokens"] != []


def test_a_new_password_closes_the_sessions(fleet: str, url: str) -> None:
    add_user(fleet, "fred", "--role", "viewer")
    cookie = {"Cookie": session_cookie(login(url, SECRET, user="fred"))}
    ok(fleet, "user", "password", "fred", "--password-stdin", stdin="another long password\n")
    assert request(url, "/api/v1/hosts", headers=cookie).status == 401
    assert login(url, SECRET, user="fred").status == 401
    assert login(url, "another long password", user="fred").status == 303
    ok(fleet, "user", "password", "fred", "--no-password")
    assert login(url, "another long password", user="fred").status == 401


BAD_INPUT = [
    (("user", "add", "x", "--role", "chef", "--no-password"), "unknown role 'chef'"),
    (("user", "add", "x", "--role", "viewer", "--site", " ", "--no-password"), "non-empty name"),
    (("user", "add", "x", "--role", "viewer", "--site", "L" * 129, "--no-password"), "at most 128"),
    (("user", "add", "", "--role", "viewer", "--no-password"), "a user name is 1 to 128"),
    (("user", "add", "x", "--role", "viewer", "--email", "nobody", "--no-password"), "e-mail"),
    (("user", "add", "root", "--role", "viewer", "--no-password"), "already a user 'root'"),
    (("user", "set", "nobody", "--disable"), "no user 'nobody'"),
    (("user", "set", "root", "--role", "boss"), "unknown role 'boss'"),
    (("user", "set", "root", "--site", "Annecy", "--all-sites"), "exclude each other"),
    (("user", "set", "root"), "nothing to change"),
    (("user", "password", "nobody", "--no-password"), "no user 'nobody'"),
    (("user", "remove", "nobody"), "no user 'nobody'"),
    (("token", "add", "nobody"), "no user 'nobody'"),
    (("token", "add", "root", "--days", "0"), "--days must be from 1 to 3650"),
    (("token", "list", "nobody"), "no user 'nobody'"),
    (("token", "revoke", "99999"), "no API token 99999"),
    (("token", "revoke", "abc"), "Invalid value for 'ID'"),
    (("audit", "list", "--outcome", "maybe"), "--outcome must be one of ok, refused, failed"),
    (("audit", "list", "--since", "yesterday"), "neither a day"),
    (("audit", "export", "--format", "xlsx"), "give it --output"),
]


@pytest.mark.parametrize(("args", "said"), BAD_INPUT, ids=[" ".join(a[:3]) for a, _ in BAD_INPUT])
def test_bad_input_says_why_and_changes_nothing(
    database: str, args: tuple[str, ...], said: str
) -> None:
    ok(database, "user", "add", "root", "--role", "admin", "--no-password")
    before = [listed(database, *what) for what in (("user", "list"), ("token", "list"))]
    trail = listed(database, "audit", "list")
    result = cli(database, *args)
    assert result.exit_code == 2, result.output
    assert said in result.stderr and "Traceback" not in result.output
    assert [listed(database, *what) for what in (("user", "list"), ("token", "list"))] == before
    assert listed(database, "audit", "list") == trail


def test_errors_and_tables_speak_the_run_s_language(database: str) -> None:
    ok(database, "user", "add", "olga", "--role", "operator", "--no-password")
    french = cli(database, "user", "add", "x", "--role", "chef", "--no-password", lang="fr")
    assert french.exit_code == 2
    assert "erreur : rôle inconnu 'chef'" in french.stderr, french.stderr
    table = cli(database, "user", "list", lang="fr").stdout
    assert "rôle" in table and "opérateur" in table and "tous les sites" in table
    assert "actif" in table
    trail = cli(database, "audit", "list", lang="fr").stdout
    assert "qui" in trail and "fait" in trail and "cli:mallory" in trail
    english = ok(database, "user", "list")
    assert "role" in english and "operator" in english and "every site" in english
    # --json stays English in either language.
    assert '"role": "operator"' in cli(database, "user", "list", "--json", lang="fr").stdout


def test_every_cli_change_is_in_the_audit_trail(fleet: str) -> None:
    add_user(fleet, "gina", "--role", "viewer", "--site", LYON)
    ok(fleet, "user", "set", "gina", "--role", "operator", "--all-sites")
    ok(fleet, "user", "password", "gina", "--password-stdin", stdin=f"{SECRET}!\n")
    new_token(fleet, "gina", "--label", "nightly")
    (token,) = listed(fleet, "token", "list", "gina")
    ok(fleet, "token", "revoke", str(token["id"]))
    ok(fleet, "user", "remove", "gina")
    entries = audited(fleet, "gina") + audited(fleet, f"token/{token['id']}")
    assert [entry["action"] for entry in entries] == [
        *("user.add", "user.set", "user.password", "token.add", "user.remove", "token.revoke"),
    ]
    assert {(entry["actor"], entry["source"], entry["outcome"]) for entry in entries} == {
        (ACTOR, "cli", "ok")
    }
    assert entries[0]["detail"] == {"role": "viewer", "sites": [LYON], "password": True}
    assert entries[1]["detail"] == {"role": "operator", "sites": None}
    assert entries[3]["detail"]["label"] == "nightly"
    assert SECRET not in json.dumps(entries)
    only_users = listed(fleet, "audit", "list", "--action", "user", "--actor", ACTOR)
    assert {entry["action"].split(".")[0] for entry in only_users} == {"user"}
    assert listed(fleet, "audit", "list", "--since", "2999-01-01") == []
    assert len(listed(fleet, "audit", "list", "--limit", "2")) == 2
    table = ok(fleet, "audit", "list", "--action", "token.revoke")
    assert "token.revoke" in table and ACTOR in table


def test_acknowledgements_silences_and_the_roster_are_audited(fleet: str) -> None:
    (alert, *_) = [
        alert for alert in listed(fleet, "alerts", "--state", "firing") if not alert["subject"]
    ]
    rule, host = alert["rule"], alert["host_id"]
    ok(fleet, "ack", "--rule", rule, "--host", host, "--reason", "on it", "--by", "Dr Who")
    silence = ("silence", "add", "--rule", rule, "--host", host, "--subject", "")
    said = ok(fleet, *silence, "--until", "2h", "--reason", "moving")
    silence_id = said.split()[1]
    ok(fleet, "silence", "expire", silence_id)
    sample = Path(__file__).parent.parent / "docs" / "roster-sample.csv"
    ok(fleet, "roster", "import", str(sample))
    key = f"{rule}/{host}/"
    acted = audited(fleet, key)
    assert [entry["action"] for entry in acted] == ["alert.acknowledge", "alert.silence"]
    assert acted[0]["detail"] == {"note": "on it", "by": "Dr Who"}
    assert acted[1]["detail"]["silence"] == int(silence_id)
    (expired,) = audited(fleet, f"silence/{silence_id}")
    assert expired["action"] == "silence.expire" and expired["detail"] == {"key": key}
    roster = audited(fleet, "roster-sample.csv")[-1]
    assert roster["action"] == "roster.import" and roster["detail"]["imported"] > 0
    assert {entry["actor"] for entry in [*acted, expired, roster]} == {ACTOR}


def test_the_audit_trail_exports_as_the_dashboard_s(fleet: str, tmp_path: Path) -> None:
    ok(fleet, "user", "add", "hugo", "--role", "viewer", "--no-password")
    rows = list(csv.DictReader(io.StringIO(ok(fleet, "audit", "export", "--actor", ACTOR))))
    assert list(rows[0]) == ["id", "at", "actor", "source", "action", "target", "outcome", "detail"]
    (added,) = [row for row in rows if row["target"] == "hugo"]
    assert added["action"] == "user.add" and json.loads(added["detail"])["role"] == "viewer"
    exported = json.loads(ok(fleet, "audit", "export", "--format", "json", "--action", "user"))
    assert exported and {row["action"].split(".")[0] for row in exported} == {"user"}
    excel = cli(fleet, "audit", "export", "--format", "csv-excel").stdout_bytes
    assert excel.startswith("\ufeff".encode()) and b";" in excel.splitlines()[0]
    workbook = tmp_path / "audit.xlsx"
    ok(fleet, "audit", "export", "--format", "xlsx", "--output", str(workbook))
    assert workbook.read_bytes().startswith(b"PK")


def test_the_commands_run_as_a_process(database: str) -> None:
    """As an administrator runs them: the changes recorded as the system user."""
    env = {"LOGNAME": "mallory"}
    done = run_cli(
        "controller",
        "user",
        "add",
        "ivy",
        "--role",
        "viewer",
        "--no-password",
        "--database",
        database,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    trail = run_cli("controller", "audit", "list", "--json", "--database", database, env=env)
    (entry,) = json.loads(trail.stdout)
    assert (entry["actor"], entry["action"], entry["target"]) == (ACTOR, "user.add", "ivy")


def test_a_rescan_sent_is_audited(tmp_path: Path, database: str, broker: Broker) -> None:
    """With a real broker and no agent listening: the command goes out, nobody answers."""
    build_fleet(database)
    config = tmp_path / "controller.toml"
    config.write_text(f'broker = "{broker.url}"\ndatabase = "{database}"\n', encoding="utf-8")
    env = {"LOGNAME": "mallory"}
    sent = run_cli(
        *("controller", "rescan", GRENOBLE_HOST, "--timeout", "1", "--config", str(config)),
        env=env,
    )
    assert sent.returncode == 1, sent.stderr  # 1: no answer within the timeout
    (entry,) = audited(database, GRENOBLE_HOST)
    assert (entry["actor"], entry["source"], entry["action"]) == (ACTOR, "cli", "host.rescan")
    assert entry["detail"]["sent"] == [GRENOBLE_HOST]
    assert entry["detail"]["unanswered"] == [GRENOBLE_HOST]
