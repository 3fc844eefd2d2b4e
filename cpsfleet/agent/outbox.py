"""Store and forward: what the agent publishes waits on disk until the broker has it.

Every status and event gets the host's next sequence number and goes into a
small SQLite queue; one thread delivers the queue in order, deleting an entry
only once the broker has acknowledged it (QoS 1). While the broker is away the
queue is bounded: a new status supersedes the pending ones (only the latest
inventory matters; it also answers the commands they answered), events are kept,
and when the queue is full anyway the oldest events go first, with a warning. A
document that waited while the broker was unreachable is delivered with
``"late": true``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 10_000
MAX_ANSWERS = 64  # command ids one status may answer (the status schema's limit)


@dataclass(frozen=True)
class Entry:
    seq: int
    channel: str  # "status" or "events"
    payload: bytes
    late: bool


SCHEMA = """
create table if not exists outbox (
    seq integer primary key,
    channel text not null,
    document text not null,
    late integer not null
);
create table if not exists counters (name text primary key, value integer not null);
create table if not exists names (name text primary key, value text not null);
"""


class Outbox:
    """The on-disk queue. Safe to use from several threads (one connection, one lock)."""

    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.limit = limit
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("pragma journal_mode = wal")
        self.db.executescript(SCHEMA)
        self.run = self._run()

    def _run(self) -> str:
        """This outbox's id, made with it: seq counts within it, so a controller tells a
        new outbox (seq from 1 again) from a replay of old documents."""
        self.db.execute("insert or ignore into names values ('run', ?)", (uuid.uuid4().hex,))
        row = self.db.execute("select value from names where name = 'run'").fetchone()
        return str(row[0])

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def put(self, channel: str, document: dict[str, Any], late: bool) -> int:
        """Queue a document under the next sequence number, which it now carries."""
        with self.ready:
            self.db.execute("begin immediate")
            seq = self._next_seq()
            if channel == "status":
                document = self._taking_over_answers(document)
                self.db.execute("delete from outbox where channel = 'status'")
            stamped = {**document, "seq": seq, "run": self.run}
            text = json.dumps(stamped, ensure_ascii=False, separators=(",", ":"))
            self.db.execute("insert into outbox values (?, ?, ?, ?)", (seq, channel, text, late))
            self._trim()
            self.db.execute("commit")
            self.ready.notify_all()
        return seq

    def _taking_over_answers(self, document: dict[str, Any]) -> dict[str, Any]:
        """The status that supersedes pending ones also answers the commands they answered:
        otherwise a rescan would wait for an answer that is never sent."""
        rows = self.db.execute("select document from outbox where channel = 'status'")
        earlier = [i for (text,) in rows for i in json.loads(text).get("answers") or []]
        if not earlier:
            return document
        answers = list(dict.fromkeys([*earlier, *(document.get("answers") or [])]))
        return {**document, "answers": answers[-MAX_ANSWERS:]}

    def _next_seq(self) -> int:
        row = self.db.execute("select value from counters where name = 'seq'").fetchone()
        seq = (row[0] if row else 0) + 1
        self.db.execute("insert or replace into counters values ('seq', ?)", (seq,))
        return seq

    def _trim(self) -> None:
        excess = self.db.execute("select count(*) from outbox").fetchone()[0] - self.limit
        if excess > 0:
            log.warning("outbox full (%d): dropping the %d oldest event(s)", self.limit, excess)
            self.db.execute(
                "delete from outbox where seq in "
                "(select seq from outbox where channel = 'events' order by seq limit ?)",
                (excess,),
            )

    def first(
        self, timeout: float | None, cancelled: Callable[[], bool] = lambda: False
    ) -> Entry | None:
        """The oldest entry, waiting up to ``timeout`` seconds (None: with no limit) for one,
        or until ``cancelled()`` holds when the queue is notified (see ``Forwarder.stop``)."""
        with self.ready:
            self.ready.wait_for(lambda: cancelled() or self._oldest() is not None, timeout)
            row = self._oldest()
        if row is None:
            return None
        seq, channel, text, late = row
        document = json.loads(text)
        if late:
            document["late"] = True
        return Entry(seq, channel, json.dumps(document, ensure_ascii=False).encode(), bool(late))

    def _oldest(self) -> tuple[int, str, str, int] | None:
        row = self.db.execute("select * from outbox order by seq limit 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]), int(row[3]))

    def done(self, seq: int) -> None:
        with self.lock:
            self.db.execute("delete from outbox where seq = ?", (seq,))

    def pending(self, channel: str | None = None) -> int:
        """How many documents wait (of one channel, or all)."""
        sql = "select count(*) from outbox where coalesce(?, channel) = channel"
        with self.lock:
            return int(self.db.execute(sql, (channel,)).fetchone()[0])


Deliver = Callable[[Entry], bool]


class Forwarder(threading.Thread):
    """Delivers the outbox in order through ``deliver``, which says whether the broker took it."""

    def __init__(self, outbox: Outbox, deliver: Deliver, retry_s: float = 1.0) -> None:
        super().__init__(name="outbox-forwarder", daemon=True)
        self.outbox, self.deliver, self.retry_s = outbox, deliver, retry_s
        self.stopping = threading.Event()

    def run(self) -> None:
        """Sleep until something is queued: an idle agent must not wake to look."""
        while not self.stopping.is_set():
            entry = self.outbox.first(timeout=None, cancelled=self.stopping.is_set)
            if entry is None:
                continue
            if self.deliver(entry):
                self.outbox.done(entry.seq)
            else:
                self.stopping.wait(self.retry_s)

    def stop(self) -> None:
        """Set under the queue's lock, so a forwarder about to wait cannot miss it."""
        with self.outbox.ready:
            self.stopping.set()
            self.outbox.ready.notify_all()
