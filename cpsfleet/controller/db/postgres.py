"""PostgreSQL as the controller's store, behind the interface the SQLite code already uses.

The store's SQL is written once, in SQLite's dialect. ``PgDatabase`` offers what the
controller uses of sqlite-utils' ``Database`` (``conn.execute``, ``executemany``, ``query``,
``atomic``, ``create_table``, ``table(...).create_index``) over a psycopg 3 connection, and
turns each statement into PostgreSQL's once (``translate``, cached):

- parameters: ``?`` and ``:name`` become ``%s`` and ``%(name)s``; ``[name]`` quoting ``"name"``;
- ``insert or ignore`` becomes ``insert ... on conflict do nothing``;
- types in DDL: ``integer`` is 64 bits (``bigint``), ``integer primary key`` an identity,
  ``real`` a double, and text compares byte by byte (``collate "C"``) as SQLite's does;
- the few SQLite functions the queries use (``json_each``, ``json_extract``, ``strftime``,
  the two-argument ``max`` and ``min``) are functions of the same meaning, created in the
  database with its schema (``FUNCTIONS``) under ``sqlite_`` names.

Values read back are SQLite's too: a Python ``bool`` is stored as 0 or 1, a ``numeric``
(what ``sum`` gives) comes back as an int when it is whole. A NUL character, which
PostgreSQL's text cannot hold, is stored as U+FFFD. psycopg's exceptions are raised
as sqlite3's (``IntegrityError`` for a constraint, ``OperationalError`` for a lost server,
``DatabaseError`` for the rest), which the callers already handle.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Buffer, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.numeric import Int8Dumper
from psycopg.types.string import StrDumperUnknown

SCHEMES = ("postgresql://", "postgres://")

# The version of the schema (what SQLite keeps in PRAGMA user_version).
VERSION_TABLE = "cpsfleet_schema"


def url_of(target: object) -> str:
    """The URL in ``target``, also when it went through ``pathlib.Path`` (which folds the
    ``//`` after the scheme into one slash)."""
    text = str(target)
    for scheme in SCHEMES:
        folded = scheme[:-1]
        if text.startswith(folded) and not text.startswith(scheme):
            return scheme + text[len(folded) :]
    return text


def shown(url: str) -> str:
    """The URL without its password, to name the database in messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


# --- Translation --------------------------------------------------------------------------

# What the statement's code (outside literals and quoted names) is cut into.
_TOKEN = re.compile(
    r"""
    (?P<literal>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<bracket>\[[A-Za-z_][A-Za-z0-9_]*\])
    | (?P<comment>--[^\n]*)
    | (?P<named>(?<![:\w]):[A-Za-z_][A-Za-z0-9_]*)
    | (?P<positional>\?)
    | (?P<percent>%)
    """,
    re.VERBOSE,
)
_RENAMED = {
    "json_each": "sqlite_json_each",
    "json_extract": "sqlite_json_extract",
    "strftime": "sqlite_strftime",
    "date(": "sqlite_date(",
}
_WORDS = re.compile(r"\b(json_each|json_extract|strftime|date\()", re.IGNORECASE)
_IDENTITY = re.compile(r"\binteger\s+primary\s+key(\s+autoincrement)?\b", re.IGNORECASE)
_INTEGER = re.compile(r"\binteger\b", re.IGNORECASE)
_REAL = re.compile(r"\breal\b", re.IGNORECASE)
_TEXT = re.compile(r"\btext\b", re.IGNORECASE)
_DDL = re.compile(r"^\s*(create\s+table|alter\s+table)\b", re.IGNORECASE)
_IGNORE = re.compile(r"^\s*insert\s+or\s+ignore\s+into\b", re.IGNORECASE)
_MIN_MAX = re.compile(r"\b(min|max)\s*\(", re.IGNORECASE)


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``sql`` in SQLite's dialect as PostgreSQL's (see the module's docstring)."""
    ddl = bool(_DDL.match(sql))
    ignore = bool(_IGNORE.match(sql))
    if ignore:
        sql = _IGNORE.sub("insert into", sql, count=1)
    parts: list[str] = []
    last = 0
    for match in _TOKEN.finditer(sql):
        parts.append(_code(sql[last : match.start()], ddl))
        kind, text = match.lastgroup, match.group()
        if kind == "literal":
            text = text.replace("%", "%%")  # parameters are always passed, if only ()
        elif kind == "bracket":
            text = f'"{text[1:-1]}"'
        elif kind == "named":
            text = f"%({text[1:]})s"
        elif kind == "positional":
            text = "%s"
        elif kind == "percent":
            text = "%%"
        parts.append(text)
        last = match.end()
    parts.append(_code(sql[last:], ddl))
    translated = _scalar_min_max("".join(parts))
    if ignore:
        translated = translated.rstrip().rstrip(";") + " on conflict do nothing"
    return translated


def _code(text: str, ddl: bool) -> str:
    text = _WORDS.sub(lambda m: _RENAMED[m.group(1).lower()], text)
    text = _IDENTITY.sub("bigint generated by default as identity primary key", text)
    text = _INTEGER.sub("bigint", text)
    text = _REAL.sub("double precision", text)
    if ddl:
        text = _TEXT.sub('text collate "C"', text)
    return text


def _scalar_min_max(sql: str) -> str:
    """SQLite's ``max(a, b)`` and ``min(a, b)`` (null if either is) as ``sqlite_max`` and
    ``sqlite_min``; the one-argument aggregates stay."""
    out, start = [], 0
    for match in _MIN_MAX.finditer(sql):
        if _arguments(sql, match.end()) > 1:
            out.append(sql[start : match.start()])
            out.append(f"sqlite_{match.group(1).lower()}(")
            start = match.end()
    out.append(sql[start:])
    return "".join(out)


def _arguments(sql: str, opened: int) -> int:
    """How many arguments the call whose ``(`` ends at ``opened`` has (by its top-level
    commas; the translated text has no literal holding a parenthesis here)."""
    depth, count, quoted = 0, 1, False
    for char in sql[opened:]:
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return count
            depth -= 1
        elif char == "," and depth == 0:
            count += 1
    return count


# The functions the translated statements call. Times are SQLite's: ISO 8601 text, read as
# UTC; what cannot be read as a time gives null, as in SQLite.
FUNCTIONS = r"""
create or replace function sqlite_json_each(doc text, path text default '$')
returns table (value text) language sql immutable as $$
  select case jsonb_typeof(e) when 'string' then e #>> '{}' when 'null' then null
    else e::text end
  from jsonb_array_elements(
    case when path = '$' then doc::jsonb
      else jsonb_path_query_first(doc::jsonb, path::jsonpath) end) as e
$$;

create or replace function sqlite_json_extract(doc text, path text)
returns text language sql immutable as $$
  select case jsonb_typeof(v) when 'string' then v #>> '{}' when 'null' then null
    when 'boolean' then (v::text = 'true')::int::text else v::text end
  from (select jsonb_path_query_first(doc::jsonb, path::jsonpath) as v) as found
$$;

create or replace function sqlite_time(at text, modifiers text[])
returns timestamp language plpgsql stable as $$
declare
  moment timestamp;
  modifier text;
begin
  if at is null then
    return null;
  elsif at = 'now' then
    moment := now() at time zone 'UTC';
  elsif at ~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?$' then
    moment := at::timestamptz at time zone 'UTC';
  else
    return null;
  end if;
  foreach modifier in array modifiers loop
    if modifier is null
       or modifier !~ '^[+-]?\d+(\.\d+)? (second|minute|hour|day|month|year)s?$' then
      return null;
    end if;
    moment := moment + modifier::interval;
  end loop;
  return moment;
end
$$;

create or replace function sqlite_strftime(format text, at text, variadic modifiers text[])
returns text language sql stable as $$
  select case
    when sqlite_time(at, modifiers) is null then null
    when format = '%s' then extract(epoch from sqlite_time(at, modifiers))::bigint::text
    else to_char(sqlite_time(at, modifiers),
      replace(replace(replace(replace(replace(replace(replace(replace(format,
        'T', '"T"'), 'Z', '"Z"'), '%Y', 'YYYY'), '%m', 'MM'), '%d', 'DD'),
        '%H', 'HH24'), '%M', 'MI'), '%S', 'SS'))
  end
$$;

create or replace function sqlite_strftime(format text, at text)
returns text language sql stable as $$
  select sqlite_strftime(format, at, variadic array[]::text[])
$$;

create or replace function sqlite_date(at text, variadic modifiers text[])
returns text language sql stable as $$
  select to_char(sqlite_time(at, modifiers), 'YYYY-MM-DD')
$$;

create or replace function sqlite_date(at text)
returns text language sql stable as $$
  select to_char(sqlite_time(at, array[]::text[]), 'YYYY-MM-DD')
$$;

create or replace function sqlite_max(a anyelement, b anyelement)
returns anyelement language sql immutable as $$
  select case when a is null or b is null then null when a >= b then a else b end
$$;

create or replace function sqlite_min(a anyelement, b anyelement)
returns anyelement language sql immutable as $$
  select case when a is null or b is null then null when a <= b then a else b end
$$;

-- For literals of unknown type (the client binds parameters as literals): text.
create or replace function sqlite_max(a text, b text)
returns text language sql immutable as $$
  select case when a is null or b is null then null when a >= b then a else b end
$$;

create or replace function sqlite_min(a text, b text)
returns text language sql immutable as $$
  select case when a is null or b is null then null when a <= b then a else b end
$$;

create or replace function sqlite_max(a text, b text, c text)
returns text language sql immutable as $$
  select sqlite_max(sqlite_max(a, b), c)
$$;

create or replace function sqlite_min(a text, b text, c text)
returns text language sql immutable as $$
  select sqlite_min(sqlite_min(a, b), c)
$$;

create or replace function sqlite_max(a anyelement, b anyelement, c anyelement)
returns anyelement language sql immutable as $$
  select sqlite_max(sqlite_max(a, b), c)
$$;

create or replace function sqlite_min(a anyelement, b anyelement, c anyelement)
returns anyelement language sql immutable as $$
  select sqlite_min(sqlite_min(a, b), c)
$$;
"""


# --- Values -------------------------------------------------------------------------------


class _BoolAsInteger(Int8Dumper):
    """True and False stored as 1 and 0, in integer columns, as SQLite stores them."""

    def dump(self, obj: Any) -> Buffer:
        return b"1" if obj else b"0"


class _TextWithoutNul(StrDumperUnknown):
    """PostgreSQL's text cannot hold U+0000, which a hostile document may carry in any
    string: it is stored as U+FFFD. (The history keeps the document as received, where it
    is the JSON escape ``\\u0000``.)"""

    def dump(self, obj: str) -> Buffer:
        dumped = super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)
        return b"" if dumped is None else dumped


class _WholeNumeric(Loader):
    """A ``numeric`` (``sum`` of integers) as an int when it is whole, as SQLite gives it."""

    def load(self, data: Buffer) -> Any:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class Record(tuple):  # type: ignore[type-arg]
    """A row read by index or by column name, as ``sqlite3.Row``."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _record_factory(cursor: psycopg.Cursor[Any]) -> Any:
    names = tuple(column.name for column in cursor.description or ())

    def make(values: Sequence[Any]) -> Record:
        record = Record(values)
        record._names = names
        return record

    return make


# --- Errors -------------------------------------------------------------------------------


def _sqlite_error(error: psycopg.Error) -> sqlite3.Error:
    text = str(error).strip()
    if isinstance(error, pg_errors.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(error, psycopg.OperationalError):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


@contextmanager
def _as_sqlite_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as error:
        raise _sqlite_error(error) from error


# --- Connection ---------------------------------------------------------------------------

# A psycopg cursor, typed as loosely as sqlite3's (whose rows are Any): rows are tuples, or
# records with ``row_factory``.
Result = Any


class PgCursor:
    """A cursor that takes SQLite statements; ``row_factory = sqlite3.Row`` gives records."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self.row_factory: Any = None

    def execute(self, sql: str, parameters: Any = ()) -> Result:
        factory = _record_factory if self.row_factory is not None else None
        cursor = self._conn.cursor(row_factory=factory) if factory else self._conn.cursor()
        with _as_sqlite_errors():
            return cursor.execute(translate(sql), _parameters(parameters))


class PgConnection:
    """What ``Database.conn`` is for SQLite: statements, transactions, cursors."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Any = ()) -> Result:
        with _as_sqlite_errors():
            return self.raw.execute(translate(sql), _parameters(parameters))

    def executemany(self, sql: str, rows: Iterable[Any]) -> Result:
        cursor = self.raw.cursor()
        with _as_sqlite_errors():
            cursor.executemany(translate(sql), [_parameters(row) for row in rows])
        return cursor

    def cursor(self) -> PgCursor:
        return PgCursor(self.raw)

    def close(self) -> None:
        self.raw.close()


def _parameters(parameters: Any) -> Any:
    if parameters is None:
        return ()
    if isinstance(parameters, Mapping):
        return parameters
    return tuple(parameters)


class PgTable:
    """The few table operations the controller asks of sqlite-utils."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        self.db, self.name = db, name

    def exists(self) -> bool:
        found = self.db.execute(
            "select 1 from information_schema.tables where table_name = ?", [self.name]
        ).fetchone()
        return found is not None

    @property
    def count(self) -> int:
        return self.count_where()

    def count_where(self, where: str | None = None, params: Any = ()) -> int:
        clause = f" where {where}" if where else ""
        row = self.db.execute(f"select count(*) from [{self.name}]{clause}", params).fetchone()
        return int(row[0])

    def delete_where(self, where: str | None = None, params: Any = ()) -> None:
        clause = f" where {where}" if where else ""
        self.db.execute(f"delete from [{self.name}]{clause}", params)

    def insert_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        listed = list(rows)
        if not listed:
            return
        columns = tuple(listed[0])
        names = ", ".join(f"[{name}]" for name in columns)
        values = ", ".join("?" for _ in columns)
        self.db.conn.executemany(
            f"insert into [{self.name}] ({names}) values ({values})",
            [tuple(row.get(name) for name in columns) for row in listed],
        )

    def create_index(
        self,
        columns: Sequence[str],
        index_name: str | None = None,
        unique: bool = False,
        if_not_exists: bool = False,
    ) -> None:
        name = index_name or f"idx_{self.name}_{'_'.join(columns)}"
        kind = "unique index" if unique else "index"
        guard = "if not exists " if if_not_exists else ""
        listed = ", ".join(f"[{column}]" for column in columns)
        self.db.execute(f"create {kind} {guard}[{name}] on [{self.name}] ({listed})")


# Python types of sqlite-utils' create_table, as PostgreSQL column types.
_TYPES = {str: "text", int: "integer", bool: "integer", float: "real", bytes: "bytea"}


class PgDatabase:
    """A PostgreSQL database, used as the SQLite one is (see the module's docstring)."""

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url = url
        # Times without an offset are UTC, as SQLite reads them.
        options = "-c timezone=UTC" + (" -c default_transaction_read_only=on" if readonly else "")
        with _as_sqlite_errors():
            # Parameters bound on the client, as literals: their types come from where they
            # are used, as in SQLite (a null parameter in ``? is null or x = ?`` has none).
            raw = psycopg.connect(
                url, autocommit=True, options=options, cursor_factory=psycopg.ClientCursor
            )
        raw.adapters.register_dumper(bool, _BoolAsInteger)
        raw.adapters.register_dumper(str, _TextWithoutNul)
        raw.adapters.register_loader("numeric", _WholeNumeric)
        self.conn = PgConnection(raw)

    def execute(self, sql: str, parameters: Any = ()) -> Result:
        return self.conn.execute(sql, parameters)

    def query(self, sql: str, params: Any = ()) -> Iterator[dict[str, Any]]:
        cursor = self.conn.raw.cursor(row_factory=dict_row)
        with _as_sqlite_errors():
            cursor.execute(translate(sql), _parameters(params))
        yield from cursor

    @contextmanager
    def atomic(self) -> Iterator[PgDatabase]:
        """One transaction (a savepoint inside another)."""
        try:
            with self.conn.raw.transaction():
                yield self
        except psycopg.Error as error:
            raise _sqlite_error(error) from error

    def table(self, name: str) -> PgTable:
        return PgTable(self, name)

    def __getitem__(self, name: str) -> PgTable:
        return self.table(name)

    def create_table(
        self,
        name: str,
        columns: Mapping[str, type],
        pk: str | tuple[str, ...] | None = None,
        foreign_keys: Sequence[tuple[str, str, str]] = (),
        not_null: Iterable[str] = (),
    ) -> PgTable:
        """The table as sqlite-utils' ``create_table`` makes it in SQLite (an ``int``
        primary key of its own is an identity, as SQLite's rowid alias)."""
        required = set(not_null)
        lines = []
        for column, kind in columns.items():
            if pk == column and kind is int:
                lines.append(f"[{column}] integer primary key")
                continue
            line = f"[{column}] {_TYPES[kind]}"
            lines.append(line + (" not null" if column in required else ""))
        if isinstance(pk, str) and columns.get(pk) is not int:
            lines.append(f"primary key ([{pk}])")
        elif isinstance(pk, tuple):
            lines.append(f"primary key ({', '.join(f'[{c}]' for c in pk)})")
        for column, other, other_column in foreign_keys:
            lines.append(f"foreign key ([{column}]) references [{other}] ([{other_column}])")
        self.execute(f"create table [{name}] ({', '.join(lines)})")
        return self.table(name)

    def schema_version(self) -> int:
        row = self.execute(
            "select 1 from information_schema.tables where table_name = ?", [VERSION_TABLE]
        ).fetchone()
        if row is None:
            return 0
        found = self.execute(f"select version from {VERSION_TABLE}").fetchone()
        return 0 if found is None else int(found[0])

    def set_schema_version(self, number: int) -> None:
        """Inside a migration's transaction, as SQLite's user_version."""
        self.execute(
            f"create table if not exists {VERSION_TABLE} (one integer primary key "
            "check (one = 1), version integer not null)"
        )
        self.execute(
            f"insert into {VERSION_TABLE} (one, version) values (1, ?) "
            "on conflict (one) do update set version = excluded.version",
            [number],
        )

    def prepare_functions(self) -> None:
        """Create (or refresh) the SQLite functions the statements use."""
        with _as_sqlite_errors():
            self.conn.raw.execute(FUNCTIONS)

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Held while a controller upgrades the schema: several may start at once."""
        with _as_sqlite_errors():
            self.conn.raw.execute("select pg_advisory_lock(hashtext('cpsfleet schema'))")
        try:
            yield
        finally:
            with _as_sqlite_errors():
                self.conn.raw.execute("select pg_advisory_unlock(hashtext('cpsfleet schema'))")

    def close(self) -> None:
        self.conn.close()
