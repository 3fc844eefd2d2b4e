"""Several controllers on one PostgreSQL database: who leads, and storing side by side.

Every controller of a share group (``share_group``) receives part of the fleet's documents
through one MQTT shared subscription, stores them and evaluates their hosts. The work that
must happen once is the leader's: the periodic evaluation and the notifications it sends,
the rebuilding of the retained alert topic, the pruning of the history and of the audit
trail. The leader is the controller holding a session-level advisory lock
(``LEADER_LOCK``) on a connection of its own. PostgreSQL frees the lock as soon as that
connection ends: at once when the process dies (its socket closes), within
``KEEPALIVE_S`` when its machine or network does (TCP keepalives asked of the server). The
others try to take it every ``CHECK_EVERY_S``; the leader checks its connection as often,
and stops leading at the first failure, before another can take over.

Two controllers may store documents of one host at once (statuses of one host split
across members, or a document redelivered to another after a restart). Each transaction
that stores or evaluates hosts first takes a transaction-level advisory lock per host
(``lock_hosts``), in one order, so the second waits for the first's commit and then sees
what it stored: a document stored twice is a duplicate, not a unique violation, and an
older one cannot overwrite a newer one. A deadlock or serialization failure that remains
(PostgreSQL picks one transaction and aborts it) is ``transient``: the batch is stored
again, never dropped. On SQLite there is one controller, which always leads.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cpsfleet.controller.db.connect import Database, is_postgres, location, on_postgres

log = logging.getLogger(__name__)

# The advisory lock of leadership (one 64-bit key: "cpsflead"); the schema's migration lock
# and the hosts' locks (two 32-bit keys) are in other key spaces.
LEADER_LOCK = 0x63707366_6C656164
HOST_LOCKS = 0x63707366  # the first key of each host's lock
CHECK_EVERY_S = 1.0
# How soon PostgreSQL notices that the leader's machine or network went away (idle, then
# probes), and how long the leader waits for an answer before it deems its connection lost.
KEEPALIVE_S = (5, 1, 3)  # idle, interval, count
TIMEOUT_MS = 5000
# SQLSTATEs after which storing the batch again will do: deadlock_detected,
# serialization_failure, and a lock not obtained in time.
TRANSIENT = frozenset({"40P01", "40001", "55P03"})


class Leadership:
    """Whether this controller leads; ``check`` keeps it up to date (from one thread)."""

    def __init__(self, database: str, node: str, check_every: float = CHECK_EVERY_S) -> None:
        self.url = str(location(database)) if is_postgres(database) else None
        self.node = node
        self.check_every = check_every
        self.leading = self.url is None  # SQLite: the only controller
        self._conn: Any = None  # psycopg.Connection, imported with PostgreSQL only
        self._next_check = 0.0
        self._unreachable = False  # said already: not said again every second

    def check(self) -> bool:
        """Whether this controller leads now: at most every ``check_every`` seconds, the
        leader checks its lock's connection (and stops leading if it failed), another tries
        to take the lock."""
        if self.url is None or time.monotonic() < self._next_check:
            return self.leading
        self._next_check = time.monotonic() + self.check_every
        import psycopg

        try:
            if self._conn is None:
                self._conn = self._connect(self.url)
            if self.leading:
                self._conn.execute("select 1")
            else:
                row = self._conn.execute("select pg_try_advisory_lock(%s)", [LEADER_LOCK])
                self._unreachable = False
                if row.fetchone()[0]:
                    self.leading = True
                    log.info("%s leads: it runs the fleet's periodic work", self.node)
        except psycopg.Error as error:
            self._lost(error)
        return self.leading

    def _connect(self, url: str) -> Any:
        import psycopg

        idle, interval, count = KEEPALIVE_S
        server = (
            f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
            f"-c tcp_keepalives_count={count} -c tcp_user_timeout={TIMEOUT_MS} "
            f"-c statement_timeout={TIMEOUT_MS}"
        )
        return psycopg.connect(
            url,
            autocommit=True,
            application_name=f"cpsfleet-controller {self.node}"[:63],
            connect_timeout=max(1, TIMEOUT_MS // 1000),
            keepalives=1,
            keepalives_idle=idle,
            keepalives_interval=interval,
            keepalives_count=count,
            tcp_user_timeout=TIMEOUT_MS,
            options=server,
        )

    def _lost(self, error: Exception) -> None:
        if self.leading:
            log.error("%s stops leading: its lock's connection failed: %s", self.node, error)
        elif not self._unreachable:
            log.warning("%s cannot try to lead: %s", self.node, error)
            self._unreachable = True
        self.leading = False
        self.close()

    def close(self) -> None:
        """Leave the lock (a leader's ends with its connection) to the others."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        if self.url is not None:
            self.leading = False


def lock_hosts(db: Database, host_ids: Iterable[str]) -> None:
    """Inside a transaction on PostgreSQL: wait for the other controllers' transactions that
    store or evaluate one of ``host_ids``, and hold them off until this one ends. The locks
    are taken in the order of their keys, as every controller does: two of them cannot each
    hold what the other waits for."""
    if not on_postgres(db):
        return
    keys = sorted({_host_key(host_id) for host_id in host_ids})
    if keys:
        db.execute(
            "select count(pg_advisory_xact_lock(cast(? as int4), k)) from "
            "(select unnest(cast(? as int4[])) as k order by k) as ordered",
            [HOST_LOCKS, "{" + ",".join(map(str, keys)) + "}"],
        )


def _host_key(host_id: str) -> int:
    """A host's lock key: a signed 32-bit digest of its id (two hosts may share one, which
    only makes one wait for the other)."""
    digest = zlib.crc32(host_id.encode("utf-8"))
    return digest - (1 << 32) if digest >= 1 << 31 else digest


def transient(error: BaseException) -> bool:
    """Whether ``error`` (as the store raises it) is PostgreSQL giving up a transaction that
    may simply be run again: a deadlock, a serialization failure."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "sqlstate", None) in TRANSIENT:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def hosts_locked(db: Database, host_ids: Iterable[str]) -> Iterator[None]:
    """On PostgreSQL, one transaction holding ``host_ids``' locks (``lock_hosts``): what is
    read of those hosts inside it stays theirs until it commits. Nothing on SQLite, which
    has one controller."""
    if not on_postgres(db):
        yield
        return
    with db.atomic():
        lock_hosts(db, host_ids)
        yield
