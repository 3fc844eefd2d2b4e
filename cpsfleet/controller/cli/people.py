"""``cpsfleet controller user | token | audit``: the dashboard's people from the command line.

``register(app)`` adds the three groups to the controller's app. They parse, call
``cpsfleet.controller.db.people`` (checking names, roles and sites with
``cpsfleet.controller.people``) and print; bad input is one ``error: ...`` line on stderr,
exit code 2, and changes nothing. Every change goes into the audit trail as ``cli:`` and
the system user who ran the command (``common.audited``): ``user.add``, ``user.set``,
``user.password``, ``user.remove``, ``token.add``, ``token.revoke``.

A user made here is a local one: they sign in on the dashboard with their name and
password, or send one of their API tokens. ``--no-password`` makes a user who has no
password, who signs in by single sign-on or with a token only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from cpsfleet.clihelp import App
from cpsfleet.controller.cli.common import (
    AS_JSON,
    CONFIG,
    DATABASE,
    MIN_PASSWORD_LENGTH,
    audited,
    emit,
    fail,
    open_store,
    settings_or_exit,
)
from cpsfleet.controller.db.people import (
    AUDIT_OUTCOMES,
    AUDIT_PAGE,
    People,
    Token,
    User,
    UserExists,
)
from cpsfleet.controller.people import (
    ROLE_NAMES,
    USER_NAME_MAX,
    PeopleError,
    check_name,
    check_role,
    check_sites,
)
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.audit import COLUMNS as AUDIT_COLUMNS
from cpsfleet.controller.web.audit import export_row
from cpsfleet.controller.web.auth import hash_secret, new_user_token
from cpsfleet.controller.web.exports import BINARY_FORMATS, FORMATS, ExportError, Format
from cpsfleet.i18n import N_, _, ngettext

EMAIL_MAX, LABEL_MAX = 254, 200
DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS = 365, 3650
DEFAULT_AUDIT_LIMIT = 100
# The words of a user's and a token's state, and of an audit entry's outcome, in a table.
STATE_WORDS = {
    "enabled": N_("enabled"),
    "disabled": N_("disabled"),
    "valid": N_("valid"),
    "expired": N_("expired"),
    "revoked": N_("revoked"),
}
OUTCOME_WORDS = {"ok": N_("done"), "refused": N_("refused"), "failed": N_("failed")}

PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of stdin."
)
NO_PASSWORD = typer.Option(
    False,
    "--no-password",
    help="No password: the user signs in by single sign-on or with an API token only.",
)
USER_NAME = typer.Argument(..., metavar="NAME", help="The user's sign-in name.")
SITES_HELP = N_(
    "A site the user may see (any case, accents and spacing); repeat it for several. "
    "Without it: every site."
)


def register(app: typer.Typer) -> None:
    """Add ``user``, ``token`` and ``audit`` to the controller's app."""
    user = App(
        order=("add", "list", "set", "password", "remove"),
        help="The dashboard's users: their role, the sites they may see, their password.",
        no_args_is_help=True,
    )
    user.command("add")(user_add)
    user.command("list")(user_list)
    user.command("set")(user_set)
    user.command("password")(user_password)
    user.command("remove")(user_remove)
    token = App(
        order=("add", "list", "revoke"),
        help="API tokens: a user's rights for scripts, sent as Authorization: Bearer.",
        no_args_is_help=True,
    )
    token.command("add")(token_add)
    token.command("list")(token_list)
    token.command("revoke")(token_revoke)
    audit = App(
        order=("list", "export"),
        help="The audit trail: who did what, on the dashboard or the command line.",
        no_args_is_help=True,
    )
    audit.command("list")(audit_list)
    audit.command("export")(audit_export)
    app.add_typer(user, name="user")
    app.add_typer(token, name="token")
    app.add_typer(audit, name="audit")


@contextmanager
def people_of(config: Path | None, database: Path | None, write: bool = False) -> Iterator[People]:
    """The people tables of the controller database; written, it is created and migrated
    as the controller would (users may be added before its first start)."""
    path = database or Path(settings_or_exit(config).database)
    with open_store(path, readonly=not write) as store:
        yield People(store.database)


# --- users --------------------------------------------------------------------------------


def user_add(
    name: str = USER_NAME,
    role: str = typer.Option(..., "--role", help="admin, operator or viewer."),
    sites: list[str] | None = typer.Option(None, "--site", help=SITES_HELP),
    email: str = typer.Option("", "--email", metavar="ADDRESS", help="The user's e-mail."),
    display_name: str = typer.Option(
        "", "--display-name", metavar="TEXT", help="The user's full name, as pages show it."
    ),
    password_stdin: bool = PASSWORD_STDIN,
    no_password: bool = NO_PASSWORD,
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Add a user of the dashboard; their password is asked twice, not shown."""
    name, chosen, where = _checked(name, role, sites)
    email, display_name = _email(email), _display_name(display_name)
    if password_stdin and no_password:
        raise fail(_("--password-stdin and --no-password exclude each other: choose one"))
    with people_of(config, database, write=True) as people:
        if people.user(name) is not None:
            raise fail(_("there is already a user {name!r}").format(name=name))
        hashed = None if no_password else read_password(password_stdin)
        try:
            people.add_user(name, chosen, where, _now(), hashed, "local", display_name, email)
        except UserExists:
            raise fail(_("there is already a user {name!r}").format(name=name)) from None
        detail = {"role": chosen, "sites": _listed(where), "password": hashed is not None}
        audited(people.db, "user.add", name, detail)
    typer.echo(_("user {name} added: {what}").format(name=name, what=_summary(chosen, where)))


def user_list(
    config: Path | None = CONFIG, database: Path | None = DATABASE, as_json: bool = AS_JSON
) -> None:
    """The dashboard's users by name: role, sites, state and last sign-in."""
    with people_of(config, database) as people:
        users = people.users()
    if as_json:
        emit([user.as_json() for user in users], True, "")
        return
    empty = _("no user: add one with `cpsfleet controller user add`")
    emit([_user_row(user) for user in users], False, empty)


def user_set(
    name: str = USER_NAME,
    role: str | None = typer.Option(
        None, "--role", help="The new role: admin, operator or viewer."
    ),
    sites: list[str] | None = typer.Option(
        None, "--site", help="The sites the user may see from now on (repeat it for several)."
    ),
    all_sites: bool = typer.Option(False, "--all-sites", help="The user may see every site."),
    disabled: bool | None = typer.Option(
        None,
        "--disable/--enable",
        help="Disable the user (their sessions are closed, their tokens refused) or enable them.",
        show_default=False,
    ),
    email: str | None = typer.Option(None, "--email", metavar="ADDRESS", help="A new e-mail."),
    display_name: str | None = typer.Option(
        None, "--display-name", metavar="TEXT", help="A new full name."
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Change a user's role, sites, state, e-mail or full name; the rest stays."""
    changes = _changes(role, sites, all_sites, disabled, email, display_name)
    with people_of(config, database, write=True) as people:
        user = _existing(people, name)
        changed = people.update_user(user.name, _now(), **changes)
        assert changed is not None
        detail = changes | ({"sites": _listed(changes["sites"])} if "sites" in changes else {})
        audited(people.db, "user.set", user.name, detail)
    state = _(STATE_WORDS["enabled" if changed.active else "disabled"])
    what = f"{_summary(changed.role, changed.sites)}, {state}"
    typer.echo(_("user {name} changed: {what}").format(name=changed.name, what=what))


def user_password(
    name: str = USER_NAME,
    password_stdin: bool = PASSWORD_STDIN,
    no_password: bool = typer.Option(
        False,
        "--no-password",
        help="Remove the password: single sign-on and API tokens only from now on.",
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Set a user's password (asked twice, not shown); their sessions are closed."""
    if password_stdin and no_password:
        raise fail(_("--password-stdin and --no-password exclude each other: choose one"))
    with people_of(config, database, write=True) as people:
        user = _existing(people, name)
        hashed = None if no_password else read_password(password_stdin)
        people.update_user(user.name, _now(), password_hash=hashed)
        audited(people.db, "user.password", user.name, {"password": hashed is not None})
    done = (
        _("password of {name} removed; their sessions are closed")
        if hashed is None
        else _("password of {name} changed; their sessions are closed")
    )
    typer.echo(done.format(name=user.name))


def user_remove(
    name: str = USER_NAME, config: Path | None = CONFIG, database: Path | None = DATABASE
) -> None:
    """Remove a user: their API tokens go with them (refused from now on), their sessions
    are closed; the audit trail keeps what they did."""
    with people_of(config, database, write=True) as people:
        user = _existing(people, name)
        tokens = [token for token in people.tokens(user.name) if token.revoked_at is None]
        people.remove_user(user.name)
        audited(people.db, "user.remove", user.name, {"tokens": [t.id for t in tokens]})
    removed = ngettext(
        "user {name} removed, with {count} API token; their sessions are closed",
        "user {name} removed, with {count} API tokens; their sessions are closed",
        len(tokens),
    )
    typer.echo(removed.format(name=user.name, count=len(tokens)))


def read_password(from_stdin: bool) -> str:
    """The hash of a password read from stdin's first line, or asked twice without echo."""
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = typer.prompt(_("Password"), hide_input=True)
        if typer.prompt(_("The same password again"), hide_input=True) != secret:
            raise fail(_("the two passwords differ: nothing changed"))
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise fail(
            _("the password must have at least {count} characters").format(
                count=MIN_PASSWORD_LENGTH
            )
        )
    return hash_secret(secret)


def _checked(
    name: str, role: str, sites: list[str] | None
) -> tuple[str, Any, tuple[str, ...] | None]:
    try:
        return check_name(name), check_role(role), check_sites(sites or None)
    except PeopleError as error:
        raise fail(str(error)) from None


def _changes(
    role: str | None,
    sites: list[str] | None,
    all_sites: bool,
    disabled: bool | None,
    email: str | None,
    display_name: str | None,
) -> dict[str, Any]:
    """The columns ``user set`` changes, checked; none at all is an error."""
    if sites and all_sites:
        raise fail(_("--site and --all-sites exclude each other: choose one"))
    changes: dict[str, Any] = {}
    try:
        if role is not None:
            changes["role"] = check_role(role)
        if sites or all_sites:
            changes["sites"] = None if all_sites else check_sites(sites)
    except PeopleError as error:
        raise fail(str(error)) from None
    if disabled is not None:
        changes["disabled"] = disabled
    if email is not None:
        changes["email"] = _email(email)
    if display_name is not None:
        changes["display_name"] = _display_name(display_name)
    if not changes:
        raise fail(
            _(
                "nothing to change: give --role, --site, --all-sites, --disable, --enable, "
                "--email or --display-name"
            )
        )
    return changes


def _existing(people: People, name: str) -> User:
    found = people.user(name.strip())
    if found is None:
        raise fail(
            _("no user {name!r}: `cpsfleet controller user list` lists them").format(name=name)
        )
    return found


def _email(email: str) -> str:
    email = email.strip()
    if email and (
        len(email) > EMAIL_MAX or "@" not in email or not email.isprintable() or " " in email
    ):
        raise fail(_("--email {email!r} is not an e-mail address").format(email=email[:80]))
    return email


def _display_name(text: str) -> str:
    text = text.strip()
    if len(text) > USER_NAME_MAX or not text.isprintable():
        raise fail(
            _("--display-name is at most {most} printable characters").format(most=USER_NAME_MAX)
        )
    return text


def _listed(sites: tuple[str, ...] | None) -> list[str] | None:
    return None if sites is None else list(sites)


def _summary(role: str, sites: tuple[str, ...] | None) -> str:
    where = _("every site") if sites is None else ", ".join(sites)
    return f"{_(ROLE_NAMES[role])}, {where}"


def _user_row(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "display_name": user.display_name,
        "email": user.email,
        "role": _(ROLE_NAMES[user.role]),
        "sites": _("every site") if user.sites is None else ", ".join(user.sites),
        "source": user.source,
        "state": _(STATE_WORDS["enabled" if user.active else "disabled"]),
        "last_sign_in_at": user.last_sign_in_at,
    }


def _now() -> datetime:
    return datetime.now(UTC)


# --- API tokens ---------------------------------------------------------------------------


def token_add(
    user: str = typer.Argument(..., metavar="USER", help="The user whose rights it carries."),
    label: str = typer.Option(
        "", "--label", metavar="TEXT", help="What it is for (a script, a scraper)."
    ),
    days: int = typer.Option(
        DEFAULT_TOKEN_DAYS, "--days", metavar="DAYS", help="How long it is valid: 1 to 3650 days."
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Make an API token for a user and print it, once: it is stored only as its digest."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise fail(
            _("--days must be from 1 to {most}, not {days}").format(most=MAX_TOKEN_DAYS, days=days)
        )
    label = label.strip()
    if len(label) > LABEL_MAX or not label.isprintable():
        raise fail(_("--label is at most {most} printable characters").format(most=LABEL_MAX))
    secret, now = new_user_token(), _now()
    expires = now + timedelta(days=days)
    with people_of(config, database, write=True) as people:
        owner = _existing(people, user)
        if not owner.active:
            raise fail(
                _("user {name} is disabled: enable them first (user set --enable)").format(
                    name=owner.name
                )
            )
        token_id = people.add_token(owner.name, label, secret, now, expires)
        detail = {"token": token_id, "label": label, "expires_at": _iso(expires)}
        audited(people.db, "token.add", owner.name, detail)
    typer.echo(
        _(
            "API token {id} of {user}, valid until {until} UTC; send it as "
            "Authorization: Bearer. It is shown this once:"
        ).format(id=token_id, user=owner.name, until=f"{expires:%Y-%m-%d %H:%M}"),
        err=True,
    )
    typer.echo(secret)


def token_list(
    user: str | None = typer.Argument(
        None, metavar="USER", help="Only this user's tokens.", show_default=False
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """The API tokens, oldest first: whose, what for, until when, last used, their state."""
    with people_of(config, database) as people:
        owner = _existing(people, user).name if user is not None else None
        tokens = people.tokens(owner)
    if as_json:
        emit([token.as_json() for token in tokens], True, "")
        return
    now = _now()
    emit([_token_row(token, now) for token in tokens], False, _("no API token"))


def token_revoke(
    token_id: int = typer.Argument(..., metavar="ID", help="The token's id (see token list)."),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Revoke an API token: the dashboard refuses it from now on."""
    with people_of(config, database, write=True) as people:
        found = next((token for token in people.tokens() if token.id == token_id), None)
        if found is None:
            raise fail(
                _("no API token {id}: `cpsfleet controller token list` lists them").format(
                    id=token_id
                )
            )
        if found.revoked_at is not None:
            raise fail(
                _("API token {id} was revoked already, on {when} UTC").format(
                    id=token_id, when=f"{found.revoked_at:%Y-%m-%d %H:%M}"
                )
            )
        people.revoke_token(token_id, _now())
        audited(people.db, "token.revoke", f"token/{token_id}", {"user": found.user_name})
    typer.echo(_("API token {id} of {user} revoked").format(id=token_id, user=found.user_name))


def _token_row(token: Token, now: datetime) -> dict[str, Any]:
    if token.revoked_at is not None:
        state = "revoked"
    elif token.expires_at is not None and token.expires_at <= now:
        state = "expired"
    else:
        state = "valid"
    return {
        "id": token.id,
        "user": token.user_name,
        "label": token.label,
        "created_at": token.created_at,
        "expires": token.expires_at,
        "last_used_at": token.last_used_at,
        "state": _(STATE_WORDS[state]),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the audit trail ----------------------------------------------------------------------

SINCE = typer.Option(
    None,
    "--since",
    metavar="WHEN",
    help="From this day (2026-12-01) or date and time (2026-12-01T18:00), in the dashboard's "
    "time zone unless it has an offset.",
)
UNTIL = typer.Option(
    None,
    "--until",
    metavar="WHEN",
    help="To this day, included, or up to this date and time.",
)
ACTOR = typer.Option(
    None,
    "--actor",
    metavar="WHO",
    help="Only this user's entries (cli:LOGIN from the command line).",
)
ACTION = typer.Option(
    None,
    "--action",
    help="Only this action, or those it begins: alert keeps alert.acknowledge and alert.silence.",
)
OUTCOME = typer.Option(
    None, "--outcome", help="Only the entries of this outcome: ok, refused or failed."
)


class AuditQuery:
    """The audit filters of ``audit list`` and ``audit export``, checked."""

    def __init__(
        self,
        since: str | None,
        until: str | None,
        actor: str | None,
        action: str | None,
        outcome: str | None,
        zone: tzinfo,
    ) -> None:
        if outcome is not None and outcome not in AUDIT_OUTCOMES:
            raise fail(
                _("--outcome must be one of {choices}, not {given!r}").format(
                    choices=", ".join(AUDIT_OUTCOMES), given=outcome
                )
            )
        self.since = None if since is None else _moment("--since", since, zone, end=False)
        self.until = None if until is None else _moment("--until", until, zone, end=True)
        self.actor, self.action, self.outcome = actor or None, action or None, outcome

    def entries(self, people: People, limit: int = AUDIT_PAGE) -> list[Any]:
        """The newest ``limit`` entries the filters keep, newest first."""
        found = people.audit(self.actor, self.action, self.since, self.until, AUDIT_PAGE)
        return [entry for entry in found if self.outcome in (None, entry.outcome)][:limit]


def _moment(option: str, text: str, zone: tzinfo, end: bool) -> datetime:
    """A day's midnight (the next one for an end, so the day is included), or a date and
    time, in ``zone`` unless it says its offset; as UTC."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        midnight = datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)
        return midnight.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            _(
                "{option} {given!r} is neither a day (2026-12-01) nor a date and time "
                "(2026-12-01T18:00)"
            ).format(option=option, given=text[:80])
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def _query(
    config: Path | None,
    since: str | None,
    until: str | None,
    actor: str | None,
    action: str | None,
    outcome: str | None,
) -> AuditQuery:
    zone = ZoneInfo(settings_or_exit(config).dashboard.timezone)
    return AuditQuery(since, until, actor, action, outcome, zone)


def audit_list(
    since: str | None = SINCE,
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    outcome: str | None = OUTCOME,
    limit: int = typer.Option(
        DEFAULT_AUDIT_LIMIT,
        "--limit",
        metavar="COUNT",
        help="At most this many entries, the newest (1 to 10000).",
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """The audit trail, newest first: when, who, from where, what, on what, how it went."""
    if not 1 <= limit <= AUDIT_PAGE:
        raise fail(_("--limit must be from 1 to {most}").format(most=AUDIT_PAGE))
    query = _query(config, since, until, actor, action, outcome)
    with people_of(config, database) as people:
        entries = query.entries(people, limit)
    if as_json:
        emit([entry.as_json() for entry in entries], True, "")
        return
    rows = [
        {
            "at": entry.at,
            "actor": entry.actor,
            "source": entry.source,
            "action": entry.action,
            "target": entry.target,
            "outcome": _(OUTCOME_WORDS.get(entry.outcome, entry.outcome)),
            "details": json.dumps(entry.detail, ensure_ascii=False, sort_keys=True),
        }
        for entry in entries
    ]
    emit(rows, False, _("no entry in the audit trail"), wrap={"details": 50, "target": 30})


def audit_export(
    output_format: str = typer.Option(
        "csv",
        "--format",
        help="csv, csv-excel (; separators and a byte order mark, for Excel in French), xlsx "
        "(needs --output) or json, as the dashboard's audit downloads.",
    ),
    output: Path | None = typer.Option(
        None, "--output", metavar="FILE", help="Write to this file instead of stdout."
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    outcome: str | None = OUTCOME,
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """The audit trail as a file, newest first, the detail as JSON text (the newest 10000
    entries the filters keep)."""
    form = _format(output_format, output)
    query = _query(config, since, until, actor, action, outcome)
    with people_of(config, database) as people:
        rows = [export_row(entry) for entry in query.entries(people)]
    if output is not None:
        try:
            exports.save(rows, AUDIT_COLUMNS, form, output, UTC, "audit")
        except ExportError as error:
            raise fail(str(error)) from None
        return
    stdout = typer.get_binary_stream("stdout")
    stdout.write(exports.render(rows, AUDIT_COLUMNS, form, UTC, "audit"))
    stdout.flush()


def _format(name: str, output: Path | None) -> Format:
    form = next((known for known in FORMATS if known == name.lower()), None)
    if form is None:
        raise fail(
            _("--format must be one of {choices}, not {given!r}").format(
                choices=", ".join(FORMATS), given=name
            )
        )
    if form in BINARY_FORMATS and output is None:
        raise fail(_("--format {form} writes a binary file: give it --output").format(form=form))
    return form
