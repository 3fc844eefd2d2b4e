"""``cpsfleet controller user | token``: the dashboard's users and their API tokens from the
command line (the audit trail's commands are ``cpsfleet.controller.cli.audit``'s).

``register(app)`` adds the two groups to the controller's app. They parse, call
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

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    people_of,
)
from cpsfleet.controller.db.people import People, Token, User, UserExists
from cpsfleet.controller.people import (
    ROLE_NAMES,
    USER_NAME_MAX,
    PeopleError,
    Role,
    check_name,
    check_role,
    check_sites,
)
from cpsfleet.controller.web.auth import hash_secret, new_user_token
from cpsfleet.i18n import N_, _, ngettext

EMAIL_MAX, LABEL_MAX = 254, 200
DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS = 365, 3650
# The words of a user's and a token's state in a table.
STATE_WORDS = {
    "enabled": N_("enabled"),
    "disabled": N_("disabled"),
    "valid": N_("valid"),
    "expired": N_("expired"),
    "revoked": N_("revoked"),
}


def _state(user: User) -> str:
    """Enabled or disabled, as words (the key is chosen first: older Babel extracts the two
    literals of an expression inside _() as one message)."""
    word = STATE_WORDS["enabled" if user.active else "disabled"]
    return _(word)


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
    """Add ``user`` and ``token`` to the controller's app."""
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
    app.add_typer(user, name="user")
    app.add_typer(token, name="token")


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
    what = f"{_summary(changed.role, changed.sites)}, {_state(changed)}"
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
) -> tuple[str, Role, tuple[str, ...] | None]:
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
        "state": _state(user),
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
