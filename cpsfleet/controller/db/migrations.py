"""The controller database's schema, as an ordered list of migrations.

Migration N brings a database from version N - 1 to N; the version lives in
``PRAGMA user_version`` (SQLite) or the ``cpsfleet_schema`` table (PostgreSQL, where the
same migrations run, their SQL translated by ``cpsfleet.controller.db.postgres``).
Migrations are only ever appended: a released one never changes, so every database, however
old, follows the same path; so a migration is fixed DDL and never calls code that may change
later.
Times are stored as ISO 8601 UTC strings ("2026-11-27T20:56:10Z"), which sort
in time order; JSON columns end in ``_json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

from cpsfleet.controller.db.connect import Database, on_postgres

Migration = Callable[[Database], None]

HOST_FK = ("host_id", "hosts", "id")


def create_fleet_tables(db: Database) -> None:
    """Version 1: hosts and their latest inventory, history, events and findings."""
    db.create_table(
        "hosts",
        {
            "id": str,
            "hostname": str,
            "site": str,
            "os": str,
            "os_version": str,
            "agent_version": str,
            "first_seen": str,
            "last_seen": str,
            "presence": str,
            "presence_at": str,
            "presence_reason": str,
            "last_status_at": str,
            "scanned_at": str,
            "scan_interval_s": int,
            "pcsc_available": bool,
            "pcsc_error": str,
            "cryptolib_installed": bool,
            "cryptolib_version": str,
            "cryptolib_json": str,
            "problems_json": str,
        },
        pk="id",
        not_null=["first_seen", "last_seen"],
    )
    _create_inventory_tables(db)
    _create_log_tables(db)


def _create_inventory_tables(db: Database) -> None:
    # ``position`` keeps the agent's order of readers and certificates.
    db.create_table(
        "readers",
        {"host_id": str, "name": str, "position": int, "state": str, "problems_json": str},
        pk=("host_id", "name"),
        foreign_keys=[HOST_FK],
        not_null=["position", "state", "problems_json"],
    )
    db.create_table(
        "cards",
        {
            "host_id": str,
            "reader": str,
            "atr": str,
            "kind": str,
            "kind_label": str,
            "is_cps": bool,
            "serial": str,
            "problems_json": str,
        },
        pk=("host_id", "reader"),
        foreign_keys=[HOST_FK],
        not_null=["atr", "kind", "kind_label", "is_cps", "problems_json"],
    )
    columns = ["role", "label", "subject", "id_nat", "id_type", "surname", "given_name"]
    columns += ["profession", "issuer_cn", "serial_number", "not_before", "not_after"]
    db.create_table(
        "certificates",
        {
            "id": int,
            "host_id": str,
            "reader": str,
            "card_serial": str,
            "position": int,
            **{column: str for column in columns},
            "sha256": str,
            "error": str,
        },
        pk="id",
        foreign_keys=[HOST_FK],
        not_null=["host_id", "reader", "position", "role"],
    )


def _create_log_tables(db: Database) -> None:
    db.create_table(
        "status_history",
        {"id": int, "host_id": str, "received_at": str, "document": str},
        pk="id",
        foreign_keys=[HOST_FK],
        not_null=["host_id", "received_at", "document"],
    )
    db.create_table(
        "events",
        {
            "id": int,
            "host_id": str,
            "received_at": str,
            "at": str,
            "type": str,
            "reader": str,
            "card_json": str,
        },
        pk="id",
        foreign_keys=[HOST_FK],
        not_null=["host_id", "received_at", "at", "type", "reader"],
    )
    db.create_table(
        "findings",
        {
            "rule": str,
            "host_id": str,
            "subject": str,
            "severity": str,
            "message": str,
            "since": str,
            "first_seen": str,
            "last_seen": str,
        },
        pk=("rule", "host_id", "subject"),
        foreign_keys=[HOST_FK],
        not_null=["severity", "message", "since", "first_seen", "last_seen"],
    )


def add_counters_and_indexes(db: Database) -> None:
    """Version 2: the controller's counters, and the indexes the CLI queries need."""
    db.create_table("counters", {"name": str, "value": int}, pk="name", not_null=["value"])
    db.table("certificates").create_index(["not_after"])
    db.table("certificates").create_index(["host_id", "reader"])
    db.table("findings").create_index(["severity"])
    db.table("findings").create_index(["host_id"])
    db.table("hosts").create_index(["site"])
    db.table("status_history").create_index(["host_id", "received_at"])
    db.table("status_history").create_index(["received_at"])
    db.table("events").create_index(["received_at"])
    db.table("events").create_index(["host_id", "received_at"])


def add_roster(db: Database) -> None:
    """Version 3: the SSTI's health professionals, imported from a CSV roster."""
    db.create_table(
        "professionals",
        {
            "id_nat": str,
            "surname": str,
            "given_name": str,
            "profession": str,
            "rpps": str,
            "adeli": str,
            "site": str,
            "ecps_activated": bool,
            "mobile_on_file": bool,
            "email_on_file": bool,
            "imported_at": str,
        },
        pk="id_nat",
        not_null=["surname", "given_name", "profession", "imported_at"],
    )
    db.table("professionals").create_index(["site"])
    db.table("certificates").create_index(["id_nat"])


def add_alerts(db: Database) -> None:
    """Version 4: alerts with their lifecycle, silences and acknowledgements."""
    key = {"rule": str, "host_id": str, "subject": str}
    db.create_table(
        "alerts",
        {
            **key,
            "severity": str,
            "message": str,
            "site": str,
            "state": str,
            "started_at": str,
            "resolved_at": str,
            "last_notified_at": str,
            "notifications": int,
        },
        pk=("rule", "host_id", "subject"),
        not_null=["severity", "message", "state", "started_at", "notifications"],
    )
    db.table("alerts").create_index(["state"])
    db.create_table(
        "silences",
        {
            "id": int,
            "rule": str,
            "host_id": str,
            "subject": str,
            "until": str,
            "reason": str,
            "created_by": str,
            "created_at": str,
            "expired_at": str,
        },
        pk="id",
        not_null=["until", "reason", "created_by", "created_at"],
    )
    db.create_table(
        "acknowledgements",
        {**key, "by": str, "reason": str, "at": str},
        pk=("rule", "host_id", "subject"),
        not_null=["by", "reason", "at"],
    )


def add_card_sightings(db: Database) -> None:
    """Version 5: cards remembered after they leave the reader (see
    cpsfleet.controller.db.sightings)."""
    db.execute(
        """
        create table card_sightings (
           serial text primary key,
           id_nat text,
           kind text,
           not_before text,
           not_after text,
           host_id text not null,
           site text,
           reader text,
           first_seen text not null,
           last_seen text not null
        )
        """
    )
    db.execute("create index idx_card_sightings_id_nat on card_sightings (id_nat)")


def add_sequence_numbers(db: Database) -> None:
    """Version 6: each agent document's (host, seq) is stored once, and whether it came late."""
    for table in ("events", "status_history"):
        db.execute(f"alter table {table} add column seq integer")
        db.execute(f"alter table {table} add column late integer")
        db.execute(
            f"create unique index {table}_host_seq on {table} (host_id, seq) where seq is not null"
        )


def add_inventory_hash(db: Database) -> None:
    """Version 7: a digest of each host's last inventory, so that a status repeating it is
    stored without rewriting its readers, cards and certificates."""
    db.execute("alter table hosts add column inventory_hash text")


def add_pin_state(db: Database) -> None:
    """Version 8: each card's PIN tries as its agent read them without the PIN (null from
    agents that do not report them), or why they could not be read; a card remembered after
    it left the reader keeps its tries."""
    for column, kind in (("pin_tries_left", "integer"), ("pin_tries_max", "integer")):
        db.execute(f"alter table cards add column {column} {kind}")
        db.execute(f"alter table card_sightings add column {column} {kind}")
    db.execute("alter table cards add column pin_error text")


def index_alerts_by_host(db: Database) -> None:
    """Version 9: alerts by host, for evaluating a part of the fleet (the primary key starts
    with the rule, so every evaluation of a chunk of hosts read the whole table)."""
    db.execute("create index idx_alerts_host_id on alerts (host_id)")


def pad_short_years(db: Database) -> None:
    """Version 10: times written with a year of fewer than four digits ("1-01-01T00:00:00Z",
    as strftime wrote year 1: a certificate's date becomes a finding's since and an alert's
    start) get their zeros, so that they can be read again. A PostgreSQL database never had
    them: it holds what this version of the controller wrote, or copied."""
    if on_postgres(db):
        return
    for table, column in (("findings", "since"), ("alerts", "started_at"), ("silences", "until")):
        db.execute(
            f"update {table} set {column} = "
            f"printf('%04d', cast(substr({column}, 1, instr({column}, '-') - 1) as integer)) "
            f"|| substr({column}, instr({column}, '-')) "
            f"where {column} glob '[0-9]-*' or {column} glob '[0-9][0-9]-*' "
            f"or {column} glob '[0-9][0-9][0-9]-*'"
        )


def order_documents(db: Database) -> None:
    """Version 11: what tells an agent's documents apart and in order. Each document's run
    (the id of its agent's outbox: seq starts again at 1 in a new one) joins its seq as
    what is stored once; the host keeps the seq and run of its current status, so an older
    status goes to the history only, and the ``at`` of its presence, so a presence replayed
    by the broker keeps the time it first arrived."""
    for table in ("events", "status_history"):
        db.execute(f"alter table {table} add column run text")
        db.execute(f"drop index {table}_host_seq")
        db.execute(
            f"create unique index {table}_host_run_seq on {table} "
            "(host_id, coalesce(run, ''), seq) where seq is not null"
        )
    for column, kind in (("status_seq", "integer"), ("status_run", "text")):
        db.execute(f"alter table hosts add column {column} {kind}")
    db.execute("alter table hosts add column presence_sent_at text")


def track_deliveries(db: Database) -> None:
    """Version 12: what each alert channel accepted. A channel (an apprise URL, known by a
    digest of it: the URL may hold a password) has its delivery state: its last success, its
    failures in a row, the last error and when to try again. A delivery says which episode
    of an alert (its started_at) a channel was told of, when, and whether its resolution
    was; an alert resolved under a silence keeps its resolution to itself."""
    db.execute(
        "create table channels (id text primary key, name text not null, "
        "first_seen text not null, last_success_at text, failures integer not null default 0, "
        "last_error text, last_error_at text, next_attempt_at text)"
    )
    db.execute(
        "create table deliveries (channel text not null, rule text not null, "
        "host_id text not null, subject text not null, started_at text not null, "
        "firing_sent_at text, sends integer not null default 0, resolved_sent_at text, "
        "primary key (channel, rule, host_id, subject))"
    )
    db.execute("alter table alerts add column silent_resolution integer not null default 0")


def remember_cards_as_cards(db: Database) -> None:
    """Version 13: a card is watched whether or not it is in a reader. A remembered card
    keeps its holder (names, profession) and its certificates as last read, and whether a
    newer card of the same holder (same idNat) superseded it, and when; an alert says why
    it resolved when the controller can tell (the card was renewed, superseded, retired)."""
    for column in ("surname", "given_name", "profession", "certificates_json"):
        db.execute(f"alter table card_sightings add column {column} text")
    for column in ("superseded_by", "superseded_at"):
        db.execute(f"alter table card_sightings add column {column} text")
    db.execute("create index idx_card_sightings_host_id on card_sightings (host_id)")
    db.execute("alter table alerts add column resolution text")


def order_card_sightings(db: Database) -> None:
    """Version 14: the scan time of the status each remembered card was last seen in, so that
    an older status (a retained one the broker replays at a restart) does not take the card
    back to the workstation it has left."""
    db.execute("alter table card_sightings add column scanned_at text")


def add_people(db: Database) -> None:
    """Version 15: named users with a role and the sites they may see (``sites_json`` null:
    every site), their API tokens and sign-in sessions (kept as SHA-256 digests, never the
    secret), and the audit trail of what people did. The audit trail is append-only: its
    rows cannot be changed, and only rows older than a day can be deleted (by the retention
    the configuration sets)."""
    db.execute(
        """create table users (
            name text primary key,
            display_name text not null default '',
            email text not null default '',
            role text not null check (role in ('admin', 'operator', 'viewer')),
            sites_json text,
            password_hash text,
            source text not null check (source in ('local', 'oidc')),
            created_at text not null,
            updated_at text not null,
            last_sign_in_at text,
            disabled_at text
        )"""
    )
    db.execute(
        """create table api_tokens (
            id integer primary key,
            user_name text not null references users (name) on delete cascade,
            label text not null,
            digest text not null unique,
            created_at text not null,
            expires_at text,
            last_used_at text,
            revoked_at text
        )"""
    )
    db.execute("create index idx_api_tokens_user_name on api_tokens (user_name)")
    # A session may be a configured principal's (the configuration's password or token),
    # whose name is no user's: SQLite leaves the reference unchecked on the dashboard's
    # connection, PostgreSQL would refuse the session. (Sessions of a removed user are
    # deleted with it by ``People``, on both.)
    user = "" if on_postgres(db) else " references users (name) on delete cascade"
    db.execute(
        f"""create table web_sessions (
            digest text primary key,
            user_name text not null{user},
            csrf text not null,
            source text not null,
            created_at text not null,
            expires_at text not null
        )"""
    )
    db.execute("create index idx_web_sessions_user_name on web_sessions (user_name)")
    db.execute(
        """create table audit (
            id integer primary key autoincrement,
            at text not null,
            actor text not null,
            source text not null,
            action text not null,
            target text not null default '',
            outcome text not null check (outcome in ('ok', 'refused', 'failed')),
            detail_json text not null default '{}'
        )"""
    )
    db.execute("create index idx_audit_at on audit (at)")
    db.execute("create index idx_audit_actor on audit (actor)")
    if on_postgres(db):
        _audit_triggers_postgres(db)
        return
    db.execute(
        """create trigger audit_append_only before update on audit
        begin select raise(abort, 'the audit trail is append-only'); end"""
    )
    db.execute(
        """create trigger audit_kept_a_day before delete on audit
        when old.at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')
        begin select raise(abort, 'the audit trail keeps at least a day'); end"""
    )


def _audit_triggers_postgres(db: Database) -> None:
    """The same two rules in PostgreSQL's terms (raised as an integrity error)."""
    db.execute(
        """create function cpsfleet_audit_guard() returns trigger language plpgsql as $$
        begin
          if tg_op = 'UPDATE' then
            raise exception using errcode = 'integrity_constraint_violation',
              message = 'the audit trail is append-only';
          end if;
          if old.at > to_char(now() at time zone 'UTC' - interval '1 day',
                              'YYYY-MM-DD"T"HH24:MI:SS"Z"') then
            raise exception using errcode = 'integrity_constraint_violation',
              message = 'the audit trail keeps at least a day';
          end if;
          return old;
        end $$"""
    )
    db.execute(
        "create trigger audit_append_only before update or delete on audit "
        "for each row execute function cpsfleet_audit_guard()"
    )


# A reader's model as the agent reports it (its USB ids, names and CCID driver version).
READER_MODEL_COLUMNS = (
    "usb_vendor_id",
    "usb_product_id",
    "manufacturer",
    "product",
    "driver_version",
)


def add_reader_models(db: Database) -> None:
    """Version 16: each reader's model, null for a virtual reader, a system that does not
    expose it, or an agent older than the models; filled at each host's next inventory."""
    for column in READER_MODEL_COLUMNS:
        db.execute(f"alter table readers add column {column} text")
    db.execute("create index idx_readers_model on readers (usb_vendor_id, usb_product_id)")


MIGRATIONS: tuple[Migration, ...] = (
    create_fleet_tables,
    add_counters_and_indexes,
    add_roster,
    add_alerts,
    add_card_sightings,
    add_sequence_numbers,
    add_inventory_hash,
    add_pin_state,
    index_alerts_by_host,
    pad_short_years,
    order_documents,
    track_deliveries,
    remember_cards_as_cards,
    order_card_sightings,
    add_people,
    add_reader_models,
)
LATEST = len(MIGRATIONS)


def version(db: Database) -> int:
    """The database's schema version: 0 for a new, empty database."""
    if on_postgres(db):
        return db.schema_version()
    value = db.execute("PRAGMA user_version").fetchone()[0]
    return int(value)


def set_version(db: Database, number: int) -> None:
    if on_postgres(db):
        db.set_schema_version(number)
    else:
        db.execute(f"PRAGMA user_version = {number}")


@contextmanager
def _one_at_a_time(db: Database) -> Iterator[None]:
    """Controllers sharing a PostgreSQL database upgrade it one after the other."""
    with db.migration_lock() if on_postgres(db) else nullcontext():
        yield


def upgrade(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction.

    Returns the versions applied. A database newer than ``migrations`` is left
    alone: refusing it is the caller's decision (see ``cpsfleet.controller.db.store``).
    """
    applied = []
    with _one_at_a_time(db):
        if on_postgres(db):
            db.prepare_functions()
        for number in range(version(db) + 1, len(migrations) + 1):
            with db.atomic():
                migrations[number - 1](db)
                # Inside the transaction: a failed migration leaves the version unchanged.
                set_version(db, number)
            applied.append(number)
    return applied
