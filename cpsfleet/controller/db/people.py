"""The tables of people (schema version 15): users, their API tokens, sign-in sessions, and
the audit trail.

Secrets are never stored: a password as its scrypt hash (``cpsfleet.controller.web.auth``),
a token and a session as the SHA-256 of the random value handed out (``digest``), which is
enough for a value of 256 random bits and costs nothing to check on every request. Every
write is one transaction; a user's tokens and sessions go with the user.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cpsfleet.controller.db.connect import Database
from cpsfleet.controller.people import Principal, Role
from cpsfleet.schemas.times import format_utc, parse

Row = dict[str, Any]
AUDIT_OUTCOMES = ("ok", "refused", "failed")
# The most rows an audit listing returns at once.
AUDIT_PAGE = 10_000


def digest(secret: str) -> str:
    """What is stored of a token or a session: the SHA-256 of its value, in hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    sites: tuple[str, ...] | None
    source: str
    display_name: str = ""
    email: str = ""
    password_hash: str | None = None
    created_at: datetime | None = None
    last_sign_in_at: datetime | None = None
    disabled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def principal(self, via: str) -> Principal:
        return Principal(self.name, self.role, self.sites, via)

    def as_json(self) -> Row:
        """The user as the API and ``--json`` give it (no password hash)."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "email": self.email,
            "role": self.role,
            "sites": list(self.sites) if self.sites is not None else None,
            "source": self.source,
            "created_at": _text(self.created_at),
            "last_sign_in_at": _text(self.last_sign_in_at),
            "disabled_at": _text(self.disabled_at),
        }


@dataclass(frozen=True)
class Token:
    id: int
    user_name: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> Row:
        return {
            "id": self.id,
            "user": self.user_name,
            "label": self.label,
            "created_at": _text(self.created_at),
            "expires_at": _text(self.expires_at),
            "last_used_at": _text(self.last_used_at),
            "revoked_at": _text(self.revoked_at),
        }


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    source: str
    action: str
    target: str
    outcome: str
    detail: Row

    def as_json(self) -> Row:
        return {
            "id": self.id,
            "at": format_utc(self.at),
            "actor": self.actor,
            "source": self.source,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
        }


class UserExists(ValueError):
    pass


class People:
    """The people tables of an open database (read-write for the writes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- users ---------------------------------------------------------------------------

    def users(self) -> list[User]:
        return [_user(row) for row in self.db.query("select * from users order by name")]

    def user(self, name: str) -> User | None:
        rows = list(self.db.query("select * from users where name = ?", [name]))
        return _user(rows[0]) if rows else None

    def add_user(
        self,
        name: str,
        role: Role,
        sites: Sequence[str] | None,
        now: datetime,
        password_hash: str | None = None,
        source: str = "local",
        display_name: str = "",
        email: str = "",
    ) -> User:
        stamp = format_utc(now)
        with self.db.atomic():
            if self.user(name) is not None:
                raise UserExists(name)
            self.db.execute(
                "insert into users (name, display_name, email, role, sites_json, password_hash,"
                " source, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [name, display_name, email, role, _sites_json(sites), password_hash, source]
                + [stamp, stamp],
            )
        found = self.user(name)
        assert found is not None
        return found

    def update_user(self, name: str, now: datetime, **changes: Any) -> User | None:
        """Change ``role``, ``sites``, ``password_hash``, ``display_name``, ``email`` or
        ``disabled`` (True disables, False enables); None when there is no such user.
        Disabling closes the user's sessions."""
        columns: Row = {}
        for key, value in changes.items():
            if key == "sites":
                columns["sites_json"] = _sites_json(value)
            elif key == "disabled":
                columns["disabled_at"] = format_utc(now) if value else None
            else:
                columns[key] = value
        with self.db.atomic():
            if self.user(name) is None:
                return None
            if columns:
                columns["updated_at"] = format_utc(now)
                assignments = ", ".join(f"{column} = ?" for column in columns)
                self.db.execute(
                    f"update users set {assignments} where name = ?", [*columns.values(), name]
                )
            if changes.get("disabled") or "password_hash" in changes:
                self.db.execute("delete from web_sessions where user_name = ?", [name])
        return self.user(name)

    def remove_user(self, name: str) -> bool:
        with self.db.atomic():
            # Foreign keys may be off on this connection: the user's rows go explicitly.
            self.db.execute("delete from web_sessions where user_name = ?", [name])
            self.db.execute("delete from api_tokens where user_name = ?", [name])
            cursor = self.db.execute("delete from users where name = ?", [name])
        return cursor.rowcount > 0

    def signed_in(self, name: str, now: datetime) -> None:
        with self.db.atomic():
            self.db.execute(
                "update users set last_sign_in_at = ? where name = ?", [format_utc(now), name]
            )

    # --- API tokens ----------------------------------------------------------------------

    def add_token(
        self, user: str, label: str, secret: str, now: datetime, expires: datetime | None
    ) -> int:
        with self.db.atomic():
            cursor = self.db.execute(
                "insert into api_tokens (user_name, label, digest, created_at, expires_at)"
                " values (?, ?, ?, ?, ?) returning id",
                [user, label, digest(secret), format_utc(now), _text(expires)],
            )
            return int(cursor.fetchone()[0])

    def tokens(self, user: str | None = None) -> list[Token]:
        where, params = ("where user_name = ?", [user]) if user else ("", [])
        rows = self.db.query(f"select * from api_tokens {where} order by id", params)
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: int, now: datetime, user: str | None = None) -> bool:
        """Revoke a token (of ``user`` only, when given); False when there is none to revoke."""
        sql = "update api_tokens set revoked_at = ? where id = ? and revoked_at is null"
        params: list[Any] = [format_utc(now), token_id]
        if user is not None:
            sql, params = f"{sql} and user_name = ?", [*params, user]
        with self.db.atomic():
            cursor = self.db.execute(sql, params)
        return cursor.rowcount > 0

    def token_user(self, secret: str, now: datetime) -> tuple[User, int] | None:
        """The active user a live token belongs to, with the token's id."""
        rows = list(
            self.db.query(
                "select t.id as token_id, t.expires_at as token_expires, u.* from api_tokens t"
                " join users u on u.name = t.user_name where t.digest = ? and t.revoked_at"
                " is null",
                [digest(secret)],
            )
        )
        if not rows:
            return None
        row = rows[0]
        expires = row.pop("token_expires")
        token_id = row.pop("token_id")
        user = _user(row)
        if not user.active or (expires is not None and parse(expires) <= now):
            return None
        return user, int(token_id)

    def token_used(self, token_id: int, now: datetime) -> None:
        with self.db.atomic():
            self.db.execute(
                "update api_tokens set last_used_at = ? where id = ?", [format_utc(now), token_id]
            )

    # --- sessions ------------------------------------------------------------------------

    def open_session(
        self, secret: str, user: str, csrf: str, source: str, now: datetime, expires: datetime
    ) -> None:
        with self.db.atomic():
            self.db.execute("delete from web_sessions where expires_at <= ?", [format_utc(now)])
            self.db.execute(
                "insert into web_sessions (digest, user_name, csrf, source, created_at,"
                " expires_at) values (?, ?, ?, ?, ?, ?)",
                [digest(secret), user, csrf, source, format_utc(now), format_utc(expires)],
            )

    def session(
        self, secret: str, now: datetime, configured: dict[str, Principal] | None = None
    ) -> Session | None:
        """The live session of ``secret``: its user's, or (when the database has no user of
        its name) the ``configured`` principal of that name."""
        rows = list(
            self.db.query(
                "select user_name, csrf, expires_at from web_sessions where digest = ?",
                [digest(secret)],
            )
        )
        if not rows or parse(rows[0]["expires_at"]) <= now:
            return None
        name, csrf, expires = rows[0]["user_name"], rows[0]["csrf"], parse(rows[0]["expires_at"])
        user = self.user(name)
        if user is not None:
            return Session(user.principal("session"), csrf, expires) if user.active else None
        principal = (configured or {}).get(name)
        return None if principal is None else Session(principal, csrf, expires)

    def close_session(self, secret: str) -> None:
        with self.db.atomic():
            self.db.execute("delete from web_sessions where digest = ?", [digest(secret)])

    # --- the audit trail -----------------------------------------------------------------

    def record(
        self,
        at: datetime,
        actor: str,
        source: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: Row | None = None,
    ) -> int:
        if outcome not in AUDIT_OUTCOMES:
            raise ValueError(f"unknown audit outcome {outcome!r}")
        with self.db.atomic():
            cursor = self.db.execute(
                "insert into audit (at, actor, source, action, target, outcome, detail_json)"
                " values (?, ?, ?, ?, ?, ?, ?) returning id",
                [format_utc(at), actor, source, action, target, outcome]
                + [json.dumps(detail or {}, ensure_ascii=False, sort_keys=True)],
            )
            return int(cursor.fetchone()[0])

    def audit(
        self,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = AUDIT_PAGE,
    ) -> list[AuditEntry]:
        """The newest entries first, those of ``actor``, whose action is or begins with
        ``action`` (``alert`` keeps ``alert.acknowledge``…), from ``since`` to before
        ``until``."""
        clauses, params = [], []
        if actor:
            clauses.append("actor = ?")
            params.append(actor)
        if action:
            clauses.append("(action = ? or action like ? escape '\\')")
            escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [action, f"{escaped}.%"]
        if since is not None:
            clauses.append("at >= ?")
            params.append(format_utc(since))
        if until is not None:
            clauses.append("at < ?")
            params.append(format_utc(until))
        where = f"where {' and '.join(clauses)}" if clauses else ""
        rows = self.db.query(
            f"select * from audit {where} order by id desc limit ?", [*params, max(0, limit)]
        )
        return [_entry(row) for row in rows]

    def purge_audit(self, before: datetime) -> int:
        """Delete the entries older than ``before`` (the retention; the table refuses to
        lose a row younger than a day); how many went."""
        with self.db.atomic():
            cursor = self.db.execute("delete from audit where at < ?", [format_utc(before)])
        return cursor.rowcount


def _sites_json(sites: Sequence[str] | None) -> str | None:
    return None if sites is None else json.dumps(list(sites), ensure_ascii=False)


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else format_utc(moment)


def _time(text: str | None) -> datetime | None:
    return None if text is None else parse(text)


def _user(row: Row) -> User:
    sites = row["sites_json"]
    return User(
        name=row["name"],
        role=row["role"],
        sites=None if sites is None else tuple(json.loads(sites)),
        source=row["source"],
        display_name=row["display_name"],
        email=row["email"],
        password_hash=row["password_hash"],
        created_at=_time(row["created_at"]),
        last_sign_in_at=_time(row["last_sign_in_at"]),
        disabled_at=_time(row["disabled_at"]),
    )


def _token(row: Row) -> Token:
    return Token(
        id=row["id"],
        user_name=row["user_name"],
        label=row["label"],
        created_at=parse(row["created_at"]),
        expires_at=_time(row["expires_at"]),
        last_used_at=_time(row["last_used_at"]),
        revoked_at=_time(row["revoked_at"]),
    )


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=parse(row["at"]),
        actor=row["actor"],
        source=row["source"],
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        detail=json.loads(row["detail_json"]),
    )
