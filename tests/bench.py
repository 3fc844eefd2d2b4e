"""The scale benchmark: ``python -m tests.bench`` (``bash scripts/bench.sh`` sets up first).

Everything runs on this machine, each part against real components it starts itself
(a Mosquitto of its own, the controller as a process, SQLite files in a temporary
folder), and prints what it measured:

1. ingest: the controller draining a backlog of status documents queued by the broker,
   in documents per second, beside a raw baseline on the same broker: a bare paho
   subscriber inserting the same documents into SQLite, without validation nor rules;
2. latency: documents published at a steady rate, each one's publish-to-stored time
   (stored: its history row visible to another SQLite connection, polled every ms);
3. rules: a whole-fleet evaluation over N stored hosts (first run, creating the
   findings and alerts, then a steady run), a /metrics scrape of them (time, series, size),
   and the controller's peak memory (VmHWM) running on that database;
4. storm: N agents, each on its own connection, coming back at once (``cpsfleet sim
   fleet --storm``): the time until the controller has every host online again, and
   the messages lost;
5. agent: ``python -m tests.bench_agent`` (a full scan of four CPS cards, RSS, CPU).

``--only ingest,latency`` runs some parts; ``--json FILE`` also writes the figures.
Not collected by pytest: figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cpsfleet.controller.db.connect import location
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.fleet.documents import status_document
from cpsfleet.sim.fleet.model import SimHost, generate_fleet
from tests.conftest import accepts, descendants, free_port, terminate, wait_for

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "cpsfleet"]
PARTS = ("ingest", "latency", "rules", "storm", "agent")
RECEIVE_MAXIMUM = 2000  # as the controller's (cpsfleet.controller.service)
SESSION_EXPIRY_S = 3600


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_fd_limit() -> None:
    """As many file descriptors as the hard limit allows: a storm opens one per agent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the workspace: a broker and processes, all stopped at the end --------------------------


@dataclass
class Workspace:
    home: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    postgres: Any = None  # tests.postgres.Postgres, once a PostgreSQL database is asked for

    def start(self, args: list[str], log_name: str, **options: Any) -> subprocess.Popen[bytes]:
        with open(self.home / log_name, "ab") as output:
            process = subprocess.Popen(args, stdout=output, stderr=output, **options)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        terminate(process, timeout=60)

    def close(self) -> None:
        for process in reversed(self.processes):
            self.stop(process)
        if self.postgres is not None:
            self.postgres.drop(*self.postgres.created)

    def mosquitto(self) -> str:
        port = free_port()
        conf = self.home / f"mosquitto-{port}.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence false\n"
            f"max_queued_messages 10000000\nmax_inflight_messages {RECEIVE_MAXIMUM}\n"
            "max_connections -1\nlog_type error\n"
            f"log_dest file {self.home / 'mosquitto.log'}\n"
        )
        self.start(
            ["mosquitto", "-c", str(conf)], f"mosquitto-{port}.out", preexec_fn=raise_fd_limit
        )
        wait_for(lambda: accepts(port), 10, "mosquitto")
        return f"mqtt://127.0.0.1:{port}"

    def database(self, name: str, store: str) -> Path | str:
        """A new database: a file here, or a PostgreSQL database on the tests' server
        (``CPSFLEET_TEST_POSTGRES``, which scripts/bench.sh sets up), dropped at the end."""
        if store == "sqlite":
            return self.home / f"{name}.db"
        from tests.postgres import Postgres

        if self.postgres is None:
            self.postgres = Postgres.from_environment()
        url: str = self.postgres.create_database()
        return url

    def controller(
        self,
        broker: str,
        database: Path | str,
        name: str,
        evaluate_every: int = 3600,
        share_group: str | None = None,
    ) -> Controller:
        conf = self.home / f"{name}.toml"
        shared = f'share_group = "{share_group}"\nnode_name = "{name}"\n' if share_group else ""
        conf.write_text(
            f'broker = "{broker}"\ndatabase = "{database}"\nevaluate_every = {evaluate_every}\n'
            f"{shared}[dashboard]\nenabled = false\n"
        )
        log_path = self.home / f"{name}.log"
        process = self.start([*CLI, "controller", "run", "--config", str(conf)], log_path.name)
        return Controller(process, log_path, database)


@dataclass
class Controller:
    process: subprocess.Popen[bytes]
    log: Path
    database: Path | str

    def logged(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0

    def counter(self, name: str = "messages_accepted") -> int:
        return scalar(self.database, "select value from counters where name = ?", name)

    def peak_rss_mb(self) -> float:
        """The controller's peak memory: its own process's, plus its receiving process's and
        multiprocessing's resource tracker's (the sum of peaks: an upper bound)."""
        pids = [self.process.pid, *descendants(self.process.pid)]
        return sum(status_kb(pid, "VmHWM") for pid in pids) / 1024


def scalar(database: Path | str, sql: str, *params: Any) -> int:
    """One number from the database (a file or a postgresql:// URL); 0 before it exists."""
    from cpsfleet.controller.db.connect import StoreError, connect, exists

    if not exists(database):
        return 0
    try:
        db = connect(database, readonly=True)
    except StoreError:
        return 0
    try:
        row = db.execute(sql, params).fetchone()
    except sqlite3.DatabaseError:  # not created or migrated yet
        return 0
    finally:
        db.close()
    return int(row[0]) if row and row[0] is not None else 0


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise KeyError(field_name)


# --- documents and a publisher ----------------------------------------------------------------


CHANGED_SHARE = 50  # one status in 50 after the first reports a card taken out


def documents(
    hosts: list[SimHost], rounds: int, first_seq: int, changes: bool = False
) -> list[tuple[str, bytes]]:
    """``rounds`` status documents per host, as (topic, payload), round after round; with
    ``changes``, one host in ``CHANGED_SHARE`` per round has a card taken out."""
    now = datetime.now(UTC)
    found = []
    for n in range(rounds):
        for index, host in enumerate(hosts):
            removed: frozenset[str] = frozenset()
            if changes and (index + n) % CHANGED_SHARE == 0:
                removed = frozenset(reader.name for reader in host.readers[:1])
            document = status_document(host, first_seq + n, now, removed=removed)
            found.append((topic(host.id, "status"), json.dumps(document).encode()))
    return found


class Publisher:
    """One paho connection publishing QoS 1 documents and counting the broker's PUBACKs."""

    def __init__(self, broker: str, client_id: str) -> None:
        host, port = broker.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.acknowledged = 0
        self.lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_publish(self, *args: Any) -> None:
        with self.lock:
            self.acknowledged += 1

    def publish(self, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
        for name, payload in messages:
            self.client.publish(name, payload, qos=1, retain=retain)

    def wait(self, count: int, timeout: float = 600) -> None:
        wait_for(lambda: self.acknowledged >= count, timeout, f"{count} PUBACKs")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- 1. ingest ---------------------------------------------------------------------------------


def drain_rate(
    count: Callable[[], int], total: int, timeout: float, start: int = 0
) -> dict[str, float]:
    """Poll ``count`` from ``start`` until ``total``: the rate from the first to the last.

    A backlog stored whole between two polls (a small one) is rated from the start of the
    wait instead: a lower bound, which includes the subscriber's start."""
    waiting = time.perf_counter()
    wait_for(lambda: count() > start, timeout, "the first stored document", 0.01)
    first, began = count(), time.perf_counter()
    if first >= total:
        seconds = began - waiting
        return {
            "documents": total - start,
            "seconds": seconds,
            "per_second": (total - start) / seconds,
        }
    last_change, seen = began, first
    deadline = time.monotonic() + timeout
    while seen < total and time.monotonic() < deadline:
        time.sleep(0.02)
        now_seen = count()
        if now_seen != seen:
            seen, last_change = now_seen, time.perf_counter()
    if seen < total:
        raise TimeoutError(f"only {seen - start} of {total - start} documents stored")
    seconds = last_change - began
    return {"documents": total - first, "seconds": seconds, "per_second": (total - first) / seconds}


def ingest(
    ws: Workspace, broker: str, hosts: int, rounds: int, store: str = "sqlite", controllers: int = 1
) -> dict[str, Any]:
    """Two backlogs, each drained by the controller, then by the raw subscriber: the first
    status of every host (new hosts: everything stored and evaluated), then ``rounds`` more
    (the steady state: most repeat the inventory, one in 50 has a card taken out)."""
    fleet = generate_fleet(hosts, seed=8)
    first = documents(fleet, 1, first_seq=1)
    steady = documents(fleet, rounds, first_seq=2, changes=True)
    size = sum(len(payload) for _, payload in steady) / len(steady)
    log(f"ingest: {hosts} hosts, then {len(steady)} status documents of {size:.0f} bytes")
    figures: dict[str, Any] = {
        "hosts": hosts,
        "documents": len(steady),
        "document_bytes": round(size),
        "store": store,
        "controllers": controllers,
    }

    database = ws.database("ingest", store)
    group = "bench" if controllers > 1 else None
    names = [f"ingest-{number}" for number in range(1, controllers + 1)]
    running = [ws.controller(broker, database, name, share_group=group) for name in names]
    for started in running:
        wait_for(lambda c=started: c.logged("connected to") > 0, 30, "the controller's session")
    accepted = 0
    for phase, messages in (("first", first), ("steady", steady)):
        for controller in running:
            ws.stop(controller.process)
        backlog(broker, messages, "bench-publisher-ingest")
        running = [ws.controller(broker, database, name, share_group=group) for name in names]
        accepted += len(messages)
        total = accepted
        counter = running[0].counter  # in the database all share
        measured = drain_rate(counter, total, 900, start=total - len(messages))
        figures[f"controller_{phase}_per_second"] = round(measured["per_second"])
        log(f"ingest: controller, {phase}: {measured['per_second']:.0f} documents/s")
    figures["controller_peak_rss_mb"] = round(max(c.peak_rss_mb() for c in running), 1)
    for controller in running:
        ws.stop(controller.process)

    raw_db = ws.database("raw", store)
    raw_args = [sys.executable, "-m", "tests.bench", "raw-subscriber", broker, str(raw_db)]
    raw = ws.start(raw_args, "raw.log")
    wait_for(lambda: "subscribed" in (ws.home / "raw.log").read_text(), 30, "the raw subscriber")
    stored = 0
    for phase, messages in (("first", first), ("steady", steady)):
        ws.stop(raw)
        backlog(broker, messages, "bench-publisher-raw")
        raw = ws.start(raw_args, "raw.log")
        stored += len(messages)
        count = lambda: scalar(raw_db, "select count(*) from documents")  # noqa: E731
        measured = drain_rate(count, stored, 900, start=stored - len(messages))
        figures[f"raw_{phase}_per_second"] = round(measured["per_second"])
        log(f"ingest: raw baseline, {phase}: {measured['per_second']:.0f} documents/s")
    ws.stop(raw)
    for phase in ("first", "steady"):
        ratio = figures[f"controller_{phase}_per_second"] / figures[f"raw_{phase}_per_second"]
        figures[f"ratio_{phase}"] = round(ratio, 3)
    return figures


def backlog(broker: str, messages: list[tuple[str, bytes]], client_id: str) -> None:
    publisher = Publisher(broker, client_id)
    publisher.publish(messages)
    publisher.wait(len(messages))
    publisher.close()


def raw_subscriber(broker: str, database: Path | str) -> None:
    """The baseline: paho, QoS 1, each document inserted as it comes, a commit per 1000
    (into SQLite, or PostgreSQL through psycopg with the controller's client-side binding)."""
    db: Any
    table = "create table if not exists documents (topic text, payload text, received real)"
    if str(database).startswith("postgresql://"):
        import psycopg

        db = psycopg.connect(str(database), cursor_factory=psycopg.ClientCursor)
        insert = "insert into documents values (%s, %s, %s)"
        db.execute(
            "create table if not exists documents (topic text, payload text, received float)"
        )
    else:
        db = sqlite3.connect(database, check_same_thread=False)
        db.execute("pragma journal_mode = wal")
        db.execute("pragma synchronous = normal")
        insert = "insert into documents values (?, ?, ?)"
        db.execute(table)
    db.commit()
    pending = 0
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal pending
        with lock:
            db.execute(
                insert,
                (message.topic, message.payload.decode("utf-8"), time.time()),
            )
            pending += 1
            if pending >= 1000:
                db.commit()
                pending = 0

    def on_connect(client: mqtt.Client, *args: Any) -> None:
        client.subscribe("cpsfleet/v1/hosts/+/status", qos=1)
        print("subscribed", flush=True)

    host, port = broker.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, "bench-raw", protocol=mqtt.MQTTv5)
    client.on_message, client.on_connect = on_message, on_connect
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(host, int(port), clean_start=False, properties=properties)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    while not stop.wait(0.05):
        with lock:
            if pending:
                db.commit()
                pending = 0
    client.disconnect()
    client.loop_stop()
    db.commit()
    db.close()


# --- 2. latency -----------------------------------------------------------------------------------


def latency(ws: Workspace, broker: str, rate: int, seconds: int) -> dict[str, Any]:
    fleet = generate_fleet(max(rate, 100), seed=9)
    messages = documents(fleet, max(1, rate * seconds // len(fleet)), first_seq=1)[: rate * seconds]
    keys = [(name.split("/")[3], json.loads(payload)["seq"]) for name, payload in messages]
    database = ws.home / "latency.db"
    controller = ws.controller(broker, database, "latency")
    wait_for(lambda: controller.logged("connected to") > 0, 30, "the controller")
    published: dict[tuple[str, int], float] = {}
    stored: dict[tuple[str, int], float] = {}
    done = threading.Event()
    poller = threading.Thread(target=_poll_history, args=(database, stored, done), daemon=True)
    poller.start()
    publisher = Publisher(broker, "bench-latency")
    log(f"latency: {len(messages)} documents at {rate}/s")
    start = time.perf_counter()
    for index, ((name, payload), key) in enumerate(zip(messages, keys, strict=True)):
        due = start + index / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        published[key] = time.perf_counter()
        publisher.client.publish(name, payload, qos=1)
    wait_for(lambda: all(key in stored for key in keys), 120, "every document stored", 0.5)
    done.set()
    poller.join()
    publisher.close()
    ws.stop(controller.process)
    delays = sorted(stored[key] - published[key] for key in keys)
    cut = statistics.quantiles(delays, n=100)
    return {
        "rate_per_second": rate,
        "documents": len(delays),
        "p50_ms": round(statistics.median(delays) * 1000, 1),
        "p99_ms": round(cut[98] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1),
    }


def _poll_history(
    database: Path, stored: dict[tuple[str, int], float], done: threading.Event
) -> None:
    wait_for(database.exists, 30, "the controller's database")
    last = 0
    while not done.is_set():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                while not done.is_set():
                    rows = db.execute(
                        "select id, host_id, seq from status_history where id > ? order by id",
                        [last],
                    ).fetchall()
                    seen = time.perf_counter()
                    for row_id, host_id, seq in rows:
                        stored[host_id, seq] = seen
                        last = row_id
                    time.sleep(0.001)
        except sqlite3.OperationalError:
            time.sleep(0.05)


# --- 3. rules over a big fleet -------------------------------------------------------------------


def rules(ws: Workspace, broker: str, hosts: int) -> dict[str, Any]:
    database = ws.home / "rules.db"
    log(f"rules: storing {hosts} hosts")
    subprocess.run(
        [sys.executable, "-m", "tests.bench", "fill", str(database), str(hosts)], check=True
    )
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "evaluate", str(database)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(result.stdout)
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "scrape", str(database)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures |= json.loads(result.stdout)
    log(f"rules: {figures}")
    controller = ws.controller(broker, database, "rules", evaluate_every=5)
    wait_for(lambda: controller.logged("evaluated") >= 3, 300, "three periodic evaluations")
    figures["controller_peak_rss_mb"] = round(controller.peak_rss_mb(), 1)
    ws.stop(controller.process)
    return {"hosts": hosts, **figures}


def fill(database: Path | str, count: int) -> None:
    """``count`` synthetic hosts' statuses, stored the way the controller stores them."""
    from cpsfleet.controller.db.store import Store

    now = datetime.now(UTC)
    with Store(database) as store:
        fleet = generate_fleet(count, seed=10, now=now)
        for start in range(0, count, 1000):
            with store.database.atomic():
                for host in fleet[start : start + 1000]:
                    store.record_status(status_document(host, 1, now), now)


def evaluate(database: Path | str) -> None:
    """Time whole-fleet evaluations (the first creates every finding and alert)."""
    import logging

    from cpsfleet.controller.alerts.book import AlertBook
    from cpsfleet.controller.db.store import Store
    from cpsfleet.controller.service import Controller as Service
    from cpsfleet.controller.settings import ControllerSettings

    logging.disable(logging.INFO)
    service = Service(ControllerSettings(database=str(database)))
    service.notifier.publish = lambda *args, **kwargs: None  # type: ignore[method-assign]
    with Store(database) as store:
        service.book = AlertBook(store.database, service.settings.alerts)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            service.evaluate(store)
            times.append(time.perf_counter() - started)
        # The periodic run a minute later: the hosts time alone may have changed.
        assert service.last_evaluated is not None
        service.last_evaluated -= timedelta(minutes=1)
        started = time.perf_counter()
        service.evaluate_due(store)
        periodic = time.perf_counter() - started
        findings = scalar(database, "select count(*) from findings")
    print(
        json.dumps(
            {
                "first_evaluation_s": round(times[0], 2),
                "steady_evaluation_s": round(min(times[1:]), 2),
                "periodic_evaluation_s": round(periodic, 3),
                "findings": findings,
                "evaluation_peak_rss_mb": round(status_kb(os.getpid(), "VmHWM") / 1024, 1),
            }
        )
    )


def scrape(database: Path | str) -> None:
    """Time a /metrics scrape of the stored fleet (the exposition text, as the web server
    renders it) and count its series: in all, per card in a reader, per host."""
    from cpsfleet.controller.web.metrics import Metrics

    metrics = Metrics(database)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        text, _type = metrics.render()
        times.append(time.perf_counter() - started)
    families: dict[str, int] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            families[name] = families.get(name, 0) + 1
    per_card = sum(n for name, n in families.items() if name.startswith("cpsfleet_card_"))
    per_host = sum(n for name, n in families.items() if name.startswith("cpsfleet_host_"))
    cards = scalar(database, "select count(*) from cards")
    hosts = scalar(database, "select count(*) from hosts")
    print(
        json.dumps(
            {
                "scrape_s": round(min(times), 2),
                "scrape_series": sum(families.values()),
                "scrape_mb": round(len(text) / 1e6, 1),
                "series_per_card": round(per_card / max(cards, 1), 2),
                "series_per_host": round(per_host / max(hosts, 1), 2),
                "scrape_peak_rss_mb": round(status_kb(os.getpid(), "VmHWM") / 1024, 1),
            }
        )
    )


# --- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    mosquitto = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosquitto.splitlines()[0] if mosquitto else "",
    }


def report(results: dict[str, Any]) -> None:
    for part, figures in results.items():
        print(f"\n{part}")
        for name, value in figures.items():
            print(f"  {name:28} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, comma-separated")
    parser.add_argument("--ingest-hosts", type=int, default=5000)
    parser.add_argument("--ingest-rounds", type=int, default=6)
    parser.add_argument("--ingest-store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--ingest-controllers", type=int, default=1, help="more than 1: PostgreSQL, shared"
    )
    parser.add_argument("--latency-rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--rules-hosts", type=int, default=50000)
    parser.add_argument("--storm-agents", type=int, default=10000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    only = [part for part in args.only.split(",") if part]
    unknown = set(only) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: use {', '.join(PARTS)}")
    raise_fd_limit()
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="cpsfleet-bench-") as home:
        ws = Workspace(Path(home))
        try:
            # A broker of its own for each part: no retained documents from the one before.
            if "ingest" in only:
                results["ingest"] = ingest(
                    ws,
                    ws.mosquitto(),
                    args.ingest_hosts,
                    args.ingest_rounds,
                    args.ingest_store,
                    args.ingest_controllers,
                )
            if "latency" in only:
                results["latency"] = latency(
                    ws, ws.mosquitto(), args.latency_rate, args.latency_seconds
                )
            if "rules" in only:
                results["rules"] = rules(ws, ws.mosquitto(), args.rules_hosts)
            if "storm" in only:
                results["storm"] = storm(ws, ws.mosquitto(), args.storm_agents)
            if "agent" in only:
                results["agent"] = agent()
        finally:
            ws.close()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def storm(ws: Workspace, broker: str, agents: int) -> dict[str, Any]:
    """Every agent known and online, then lost (their wills mark them offline), then all
    back at once: the time from the first host online again to the last, and what was lost.
    """
    database = ws.home / "storm.db"
    controller = ws.controller(broker, database, "storm")
    wait_for(lambda: controller.logged("connected to") > 0, 30, "the controller")
    online = "select count(*) from hosts where presence = 'online'"
    log(f"storm: {agents} agents, first contact, then the storm")
    args = [*CLI, "sim", "fleet", "--broker", broker, "--storm", "--agents", str(agents)]
    args += ["--first-contact", "--will-delay", "5", "--hold", "inf", "--json", "--seed", "11"]
    progress = ws.home / "storm.err"
    with open(progress, "wb") as err:
        played = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
    history = "select count(*) from status_history"
    try:
        # Each host's first status comes with the first contact, its second with the storm.
        wait_for(lambda: scalar(database, history) > agents, 900, "the storm", 0.005)
        began = time.perf_counter()
        try:
            wait_for(
                lambda: (
                    scalar(database, history) == 2 * agents and scalar(database, online) == agents
                ),
                600,
                "every agent back online",
                0.02,
            )
            seconds: float | None = time.perf_counter() - began
        except AssertionError:  # reported below with what the broker acknowledged
            seconds = None
        # The controller may have stored everything before the storm process has its PUBACKs
        # and its workers' reports: stopped before it holds its connections, it is interrupted
        # and prints no summary.
        wait_for(lambda: holding(progress) or played.poll() is not None, 300, "the storm's hold")
    finally:
        played.send_signal(signal.SIGTERM)
        out, _ = played.communicate(timeout=120)
    if not out.strip():
        tail = progress.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the storm printed no summary (exit {played.returncode}):\n{tail}")
    summary = json.loads(out.strip().splitlines()[-1])
    phase = summary.get("storm", summary)
    seq = summary.get("seq")
    statuses = scalar(database, "select count(*) from status_history where seq = ?", seq)
    presences = scalar(database, online)
    acknowledged = int(phase["acknowledged"])
    peak = controller.peak_rss_mb()
    ws.stop(controller.process)
    return {
        "agents": agents,
        "storm_seconds_broker": round(float(phase["seconds"]), 2),
        "connects_per_second": round(float(phase["connects_per_s"])),
        "all_online_at_controller_s": None if seconds is None else round(seconds, 2),
        "messages_acknowledged_by_broker": acknowledged,
        "messages_stored": statuses + presences,
        "messages_lost": acknowledged - statuses - presences,
        # What the load generator could not do (then fewer messages were sent, not lost).
        "agents_failed": int(phase["connect_errors"]),
        "failure": phase.get("failure"),
        "controller_peak_rss_mb": round(peak, 1),
    }


def holding(progress: Path) -> bool:
    """Whether ``cpsfleet sim fleet --storm`` says (on stderr, each second) that it holds."""
    return any(line.startswith("hold: ") for line in progress.read_text().splitlines())


def agent() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench_agent", "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "raw-subscriber":
        raw_subscriber(sys.argv[2], location(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "fill":
        fill(location(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "evaluate":
        evaluate(location(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "scrape":
        scrape(location(sys.argv[2]))
    else:
        sys.exit(main())
