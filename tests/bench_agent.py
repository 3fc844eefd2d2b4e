"""Footprint of the agent daemon: ``python -m tests.bench_agent [--json]``.

It starts what it needs itself: a pcscd with four vpcd readers on free ports, each
holding a simulated CPS card (the doctor's CPS3, the nurse's CPS4, the expired CPS3
and a CPS4 of its own), a Mosquitto on a free loopback port, and the real daemon
(``cpsfleet agent run``) as a process whose /proc/<pid> it reads:

- scan wall time: the ``duration_ms`` the agent puts in each status it publishes
  (median and max of scheduled scans of the four cards, and of scans after a card
  change), and how long a one-shot ``cpsfleet agent scan`` process takes;
- memory: VmRSS once startup has settled, after the scans and after a ``rescan`` command
  (checked against its schema), and VmHWM (the peak);
- CPU: utime + stime per scheduled scan, and over an idle window with no card change
  and no scheduled scan, where it must be nil; with the CPU time the scheduler
  accounts to the threads in nanoseconds and their context switches (wakeups);
- statuses at start: how many the daemon publishes before it falls quiet (one);
- card events: from the moment a simulated card is pulled out of its reader (its vpcd
  connection closed) or put in (connected), to the moment a subscriber on the broker, where
  the controller takes them, receives the ``card_removed`` or ``card_inserted`` event. pcscd
  takes its share: it sees a vpcd card come 0.3 to 0.6 s after it connects. Each event is
  awaited in turn: one that never comes stops the benchmark with an error, one that comes
  out of turn or in excess is counted as unexpected (none lost or extra: zero);
- a ``rescan`` command: from the broker's acknowledgement of the command to the arrival of
  the status answering it.

The daemon runs as the systemd unit of ``ansible/roles/cpsfleet_agent`` starts it: the
virtualenv's ``cpsfleet`` script, ``agent run --config ...``, with the unit's
``Environment=`` variables. ``--entry typer`` starts it through the agent's Typer command
group instead, to show what parsing its command line with Typer (and pydantic) would add.

Targets (this 2-core machine): scan < 1 s, RSS < 40 MB, no CPU between scans. They
are reported, not asserted (``tests/test_agent_footprint.py`` checks the idle
behaviour in CI). Not collected by pytest (no ``test_`` prefix). Everything it
starts is stopped on exit, on failure and on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.schemas.commands import Command, new_command
from cpsfleet.schemas.topics import command_topic, topic
from cpsfleet.sim import vpcd
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.examples import write_examples
from cpsfleet.sim.pki import Holder, issue_card_certificates, load_or_create_ca
from cpsfleet.sim.profile import load_profile
from cpsfleet.sim.readers import running_pcscd, virtual_readers
from tests.conftest import Broker, free_port, reader_state, terminate, wait_for

READERS = 4
EXAMPLE_CARDS = ("doctor-cps3", "nurse-cps4", "expired-cps3")
HOST_ID = "bench-agent"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KB_PER_MB = 1024
TARGET_SCAN_MS = 1000
TARGET_RSS_KB = 40 * 1024
TARGET_EVENT_S = 2.0
# utime + stime are exact CPU time shown in whole ticks: a few microseconds may cross one.
IDLE_TICKS = 1
ROOT = Path(__file__).resolve().parent.parent
AGENT_UNIT = ROOT / "ansible/roles/cpsfleet_agent/templates/cpsfleet-agent.service.j2"
# How the daemon is started: as deployed (the unit's ExecStart), or through Typer.
ENTRIES = {
    "cpsfleet": [str(Path(sys.executable).with_name("cpsfleet")), "agent"],
    "typer": [sys.executable, "-c", "from cpsfleet.agent.cli import app; app()"],
}
# What bounds the daemon's memory: the modules its process loads, in their order, each with
# the RSS it adds, measured in a fresh interpreter (the first line: Python alone). A step
# may import several modules, separated by commas.
IMPORT_STEPS = (
    ("Python itself", ""),
    ("hashlib, ssl (OpenSSL; paho's TLS)", "hashlib,ssl"),
    ("paho-mqtt (urllib.request, http, email)", "paho.mqtt.client"),
    ("cryptography (certificates, signed commands)", "cryptography.x509"),
    # with what it loads for features the agent does not use: asyncio, multiprocessing,
    # tzlocal and importlib.metadata (the agent no longer hides them from it)
    ("apscheduler", "apscheduler.schedulers.background,apscheduler.triggers.interval"),
    ("pyscard", "smartcard.scard"),
    ("sqlite3, tomllib (the outbox, the configuration)", "sqlite3,tomllib"),
    ("the agent's own modules and schemas", "cpsfleet.agent.service,cpsfleet.agent.mqtt"),
    ("the command line (cpsfleet, without Typer)", "cpsfleet.cli"),
)
IMPORT_PROBE = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
found = []
for step in sys.argv[1:]:
    for module in filter(None, step.split(",")):
        importlib.import_module(module)
    found.append(rss())
print(json.dumps(found))
"""


# --- /proc -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """What /proc says of a process at one moment."""

    ticks: int  # utime + stime of all its threads, live and ended, in clock ticks
    run_ns: int  # time on CPU of its live threads (schedstat), in nanoseconds
    switches: dict[int, int]  # context switches (wakeups) of each live thread, by thread id
    rss_kb: int
    hwm_kb: int

    def wakeups_since(self, before: Sample) -> dict[int, int]:
        return {tid: n - before.switches.get(tid, 0) for tid, n in self.switches.items()}


def sample(pid: int) -> Sample:
    proc = Path(f"/proc/{pid}")
    fields = (proc / "stat").read_text().rpartition(")")[2].split()
    status = _status(proc / "status")
    if "VmRSS" not in status:  # a zombie: the agent has exited
        raise RuntimeError(f"process {pid} has exited")
    run_ns, switches = 0, {}
    for task in (proc / "task").iterdir():
        try:
            run_ns += int((task / "schedstat").read_text().split()[0])
            task_status = _status(task / "status")
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        switches[int(task.name)] = sum(
            task_status[key] for key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
        )
    # fields[0] is the state, the 3rd field of stat: utime and stime are the 14th and 15th
    ticks = int(fields[11]) + int(fields[12])
    return Sample(ticks, run_ns, switches, status["VmRSS"], status["VmHWM"])


def _status(path: Path) -> dict[str, int]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        words = value.split()
        if len(words) in (1, 2) and words[0].isdigit():
            values[key] = int(words[0])
    return values


# --- what the benchmark starts -------------------------------------------------------------


def free_base_port(count: int) -> int:
    """The first of ``count`` consecutive ports free on all interfaces (vpcd binds them all)."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        if all(_port_is_free(base + n) for n in range(count)):
            return base
    raise RuntimeError(f"found no {count} consecutive free ports between 20000 and 30000")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def write_profiles(directory: Path) -> list[Path]:
    """The three example CPS cards and a CPS4 of the benchmark's own: four CPS cards."""
    examples = {path.stem: path for path in write_examples(directory)}
    now = datetime.now(UTC).replace(microsecond=0)
    holder = Holder(
        "810003456789",
        "BENCH",
        "CAMILLE",
        "Pharmacien",
        now - timedelta(days=30),
        now + timedelta(days=1000),
    )
    issued = issue_card_certificates(
        load_or_create_ca(directory / "ca"), holder, directory / "bench"
    )
    own = directory / "bench-cps4.toml"
    own.write_text(
        f'kind = "cps4"\nserial = "30551234"\n'
        f'auth_cert = "{issued.authentication.relative_to(directory)}"\n'
        f'sign_cert = "{issued.signature.relative_to(directory)}"\n'
    )
    return [examples[name] for name in EXAMPLE_CARDS] + [own]


@dataclass
class CardInReader:
    """A simulated card played in a thread of this process into one vpcd reader."""

    profile: Path
    port: int
    reader: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def insert(self) -> None:
        card = build_card(load_profile(self.profile))
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=vpcd.play, args=(card, "127.0.0.1", self.port, self.stop), daemon=True
        )
        self.thread.start()
        wait_for(
            lambda: reader_state(self.reader) == "card_present", what=f"a card in {self.reader}"
        )

    def pull(self) -> None:
        """Stop playing the card, without waiting for pcscd to notice."""
        self.stop.set()

    def remove(self) -> None:
        self.pull()
        if self.thread is not None:
            self.thread.join(timeout=5)
        wait_for(lambda: reader_state(self.reader) == "empty", what=f"{self.reader} empty")


class StatusWatch:
    """The agent's status documents, as a subscriber on the broker receives them."""

    def __init__(self, broker: Broker, host_id: str = HOST_ID) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda client, userdata, message: self.received.put(
            json.loads(message.payload)
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(topic(host_id, "status"), qos=1)
        self.client.loop_start()

    def next(self, accept: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The next status that ``accept`` takes; the others are skipped."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                document = self.received.get(timeout=left)
            except queue.Empty:
                break
            if accept(document):
                return document
        raise TimeoutError(f"no such status from the agent within {timeout:.0f} s")

    def quiet_for(self, seconds: float, timeout: float = 60) -> int:
        """Wait until no status has come for ``seconds``; how many came meanwhile."""
        deadline = time.monotonic() + timeout
        count = 0
        while time.monotonic() < deadline:
            try:
                self.received.get(timeout=seconds)
            except queue.Empty:
                return count
            count += 1
        raise TimeoutError(f"the agent kept publishing for {timeout:.0f} s")

    def drain(self) -> int:
        count = 0
        while not self.received.empty():
            self.received.get_nowait()
            count += 1
        return count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class EventWatch:
    """The agent's card events, each with the moment (monotonic) this process received it."""

    def __init__(self, broker: Broker, host_id: str = HOST_ID) -> None:
        self.received: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda client, userdata, message: self.received.put(
            (time.monotonic(), json.loads(message.payload))
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(topic(host_id, "events"), qos=1)
        self.client.loop_start()
        self.unexpected: list[str] = []  # events that came when another was awaited, or extra

    def arrival(self, kind: str, timeout: float) -> float:
        """When the next event of this type arrived; the others are counted as unexpected."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                arrived, document = self.received.get(timeout=left)
            except queue.Empty:
                break
            if document["type"] == kind:
                return arrived
            self.unexpected.append(document["type"])
        raise TimeoutError(f"no {kind} event from the agent within {timeout:.0f} s")

    def drain(self) -> None:
        """Count what came and was not awaited as unexpected (each event is awaited once)."""
        while not self.received.empty():
            self.unexpected.append(self.received.get_nowait()[1]["type"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cps_cards(document: dict[str, Any]) -> int:
    return sum(1 for r in document["readers"] if r["card"] is not None and r["card"]["is_cps"])


def with_cards(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda document: cps_cards(document) == count


@contextmanager
def agent_process(
    command: list[str], home: Path, broker: Broker, interval: int, log: Path
) -> Iterator[int]:
    """``cpsfleet agent run`` with this configuration, until the block ends; yields its PID."""
    config = home / f"agent-{interval}.toml"
    config.write_text(
        f'broker = "{broker.url}"\nhost_id = "{HOST_ID}"\ninterval = {interval}\n'
        f'splay = 0\nwill_delay = 5\nstate_dir = "{home / "state"}"\n'
    )
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [*command, "run", "--config", str(config)],
            stdout=output,
            stderr=output,
            env={**os.environ, **unit_environment()},
        )
    try:
        yield process.pid
    finally:
        terminate(process, timeout=20)


def unit_environment(unit: Path = AGENT_UNIT) -> dict[str, str]:
    """The variables the agent's systemd unit sets (its ``Environment=NAME=VALUE`` lines)."""
    found = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            found[name] = value
    return found


# --- the measurements -------------------------------------------------------------------------


@dataclass
class Figures:
    python: str
    cpus: int | None
    entry: str
    startup_s: float = 0.0
    scans: int = 0
    scan_ms_median: float = 0.0
    scan_ms_max: float = 0.0
    change_scans: int = 0
    change_scan_ms_median: float = 0.0
    change_scan_ms_max: float = 0.0
    oneshot_s_median: float = 0.0
    oneshot_scan_ms_median: float = 0.0
    rss_idle_mb: float = 0.0
    rss_after_scans_mb: float = 0.0
    rss_after_command_mb: float = 0.0
    cpu_per_scan_s: float = 0.0
    idle_window_s: float = 0.0
    idle_cpu_s: float = 0.0
    idle_cpu_ns: int = 0
    idle_wakeups: int = 0
    idle_wakeups_by_thread: list[int] = field(default_factory=list)
    idle_statuses: int = 0
    startup_statuses: int = 0
    removal_s: list[float] = field(default_factory=list)
    insertion_s: list[float] = field(default_factory=list)
    events_unexpected: list[str] = field(default_factory=list)
    rescan_answer_s: float = 0.0
    peaks_mb: list[float] = field(default_factory=list)
    imports_mb: list[tuple[str, float]] = field(default_factory=list)

    def targets(self) -> dict[str, bool]:
        return {
            "scan_under_1s": max(self.scan_ms_max, self.change_scan_ms_max) < TARGET_SCAN_MS,
            "rss_under_40mb": max(self.peaks_mb) < TARGET_RSS_KB / KB_PER_MB,
            "no_cpu_when_idle": self.idle_cpu_s <= IDLE_TICKS / CLOCK_TICKS,
            "one_status_at_start": self.startup_statuses == 1,
            "card_events_under_2s": max(self.removal_s + self.insertion_s) < TARGET_EVENT_S,
            "card_events_none_lost": not self.events_unexpected,
        }


def measure_idle(pid: int, watch: StatusWatch, seconds: float, figures: Figures) -> None:
    """No card change and no scheduled scan for ``seconds``: what does the agent spend?"""
    watch.quiet_for(3)
    before = sample(pid)
    time.sleep(seconds)
    after = sample(pid)
    figures.idle_window_s = seconds
    figures.rss_idle_mb = after.rss_kb / KB_PER_MB
    figures.idle_cpu_s = (after.ticks - before.ticks) / CLOCK_TICKS
    figures.idle_cpu_ns = after.run_ns - before.run_ns
    wakeups = after.wakeups_since(before)
    figures.idle_wakeups = sum(wakeups.values())
    figures.idle_wakeups_by_thread = [wakeups[tid] for tid in sorted(wakeups)]
    figures.idle_statuses = watch.drain()


def measure_card_changes(
    card: CardInReader, watch: StatusWatch, events: EventWatch, cycles: int, figures: Figures
) -> None:
    """Remove and insert one card ``cycles`` times: how soon each event is on the broker; the
    scans after insertion see four cards."""
    durations = []
    for _ in range(cycles):
        pulled = time.monotonic()
        card.remove()
        figures.removal_s.append(events.arrival("card_removed", timeout=30) - pulled)
        watch.next(with_cards(READERS - 1), timeout=30)
        put_in = time.monotonic()
        card.insert()
        figures.insertion_s.append(events.arrival("card_inserted", timeout=30) - put_in)
        durations.append(watch.next(with_cards(READERS), timeout=30)["duration_ms"])
    # The agent queues each event before the status that follows it: none is still to come.
    events.drain()
    figures.events_unexpected = events.unexpected
    figures.change_scans = len(durations)
    figures.change_scan_ms_median = statistics.median(durations)
    figures.change_scan_ms_max = max(durations)


def measure_scheduled_scans(pid: int, watch: StatusWatch, scans: int, figures: Figures) -> None:
    """``scans`` scans at the 1 s interval, four CPS cards each: wall time and CPU per scan."""
    for _ in range(3):  # the first scans, and the one after connecting: startup is over
        watch.next(with_cards(READERS), timeout=30)
    before = sample(pid)
    durations = [watch.next(with_cards(READERS), timeout=30)["duration_ms"] for _ in range(scans)]
    after = sample(pid)
    figures.scans = scans
    figures.scan_ms_median = statistics.median(durations)
    figures.scan_ms_max = max(durations)
    figures.cpu_per_scan_s = (after.ticks - before.ticks) / CLOCK_TICKS / scans
    figures.rss_after_scans_mb = after.rss_kb / KB_PER_MB
    figures.peaks_mb.append(after.hwm_kb / KB_PER_MB)


def send_rescan(broker: Broker, host_id: str, issued_by: str) -> Command:
    """A ``rescan`` command for ``host_id``, as ``cpsfleet controller rescan`` sends it on
    plain MQTT (unsigned, QoS 1); returned once the broker has it."""
    command = new_command(host_id, "rescan", datetime.now(UTC), timedelta(minutes=5), issued_by)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    try:
        payload = json.dumps(command.document())
        sender.publish(command_topic(host_id), payload, qos=1).wait_for_publish(10)
    finally:
        sender.disconnect()
        sender.loop_stop()
    return command


def measure_command(pid: int, broker: Broker, watch: StatusWatch, figures: Figures) -> None:
    """A ``rescan`` command: from its acknowledgement by the broker to its answer's arrival,
    the RSS once its answer is out, and the peak so far."""
    command = send_rescan(broker, HOST_ID, "bench_agent")
    sent = time.monotonic()
    watch.next(lambda document: command.id in (document.get("answers") or []), timeout=30)
    figures.rescan_answer_s = time.monotonic() - sent
    after = sample(pid)
    figures.rss_after_command_mb = after.rss_kb / KB_PER_MB
    figures.peaks_mb.append(after.hwm_kb / KB_PER_MB)


def measure_oneshot(command: list[str], runs: int, figures: Figures) -> None:
    """``cpsfleet agent scan --json`` as a process: its wall time, and the scan's own."""
    walls, scans = [], []
    for _ in range(runs):
        started = time.monotonic()
        result = subprocess.run(
            [*command, "scan", "--json", "--host-id", HOST_ID],
            capture_output=True,
            text=True,
            timeout=60,
        )
        walls.append(time.monotonic() - started)
        scans.append(json.loads(result.stdout)["duration_ms"])
    figures.oneshot_s_median = statistics.median(walls)
    figures.oneshot_scan_ms_median = statistics.median(scans)


def run(home: Path, args: argparse.Namespace) -> Figures:
    figures = Figures(python=sys.version.split()[0], cpus=os.cpu_count(), entry=args.entry)
    command = ENTRIES[args.entry]
    with ExitStack() as stack:
        base = free_base_port(READERS)
        readers, _ = stack.enter_context(
            virtual_readers(READERS, base, log_path=home / "pcscd.log")
        )
        cards = [
            CardInReader(profile, reader.port, reader.name)
            for profile, reader in zip(write_profiles(home / "cards"), readers, strict=True)
        ]
        for card in cards:
            stack.callback(card.pull)
            card.insert()
        broker_home = home / "mosquitto"
        broker_home.mkdir()
        broker = Broker(broker_home, free_port()).start()
        stack.callback(broker.stop)
        watch = StatusWatch(broker)
        stack.callback(watch.close)
        events = EventWatch(broker)
        stack.callback(events.close)

        started = time.monotonic()
        with agent_process(command, home, broker, 3600, home / "agent.log") as pid:
            watch.next(with_cards(READERS), timeout=60)
            figures.startup_s = time.monotonic() - started
            figures.startup_statuses = 1 + watch.quiet_for(3)
            measure_idle(pid, watch, args.idle, figures)
            figures.peaks_mb.append(sample(pid).hwm_kb / KB_PER_MB)
            measure_card_changes(cards[-1], watch, events, args.changes, figures)
            figures.peaks_mb.append(sample(pid).hwm_kb / KB_PER_MB)
        watch.drain()
        with agent_process(command, home, broker, 1, home / "agent.log") as pid:
            measure_scheduled_scans(pid, watch, args.scans, figures)
            measure_command(pid, broker, watch, figures)
        measure_oneshot(command, 3, figures)
    measure_imports(figures)
    return figures


def measure_imports(figures: Figures) -> None:
    modules = [module for _, module in IMPORT_STEPS]
    probe = [sys.executable, "-c", IMPORT_PROBE, *modules]
    found = json.loads(subprocess.run(probe, check=True, capture_output=True, text=True).stdout)
    added = [kb - before for before, kb in zip([0, *found], found, strict=False)]
    figures.imports_mb = [
        (name, kb / KB_PER_MB) for (name, _), kb in zip(IMPORT_STEPS, added, strict=True)
    ]


# --- the report ----------------------------------------------------------------------------------


def table(figures: Figures) -> str:
    f = figures
    met = f.targets()
    mark = {True: "ok", False: "MISSED"}
    rows = [
        ("startup to first status", f"{f.startup_s:.2f} s", ""),
        (
            "statuses published at start",
            str(f.startup_statuses),
            f"one: {mark[met['one_status_at_start']]}",
        ),
        (
            f"card removed to its event on the broker, median (n={len(f.removal_s)})",
            f"{statistics.median(f.removal_s):.2f} s",
            f"max {max(f.removal_s):.2f} s",
        ),
        (
            f"card inserted to its event on the broker, median (n={len(f.insertion_s)})",
            f"{statistics.median(f.insertion_s):.2f} s",
            f"max {max(f.insertion_s):.2f} s; < 2 s: {mark[met['card_events_under_2s']]}",
        ),
        (
            "card events received, each awaited once, in order",
            str(len(f.removal_s) + len(f.insertion_s)),
            f"{len(f.events_unexpected)} unexpected; "
            f"none lost or extra: {mark[met['card_events_none_lost']]}",
        ),
        ("rescan command on the broker to its answer", f"{f.rescan_answer_s:.2f} s", ""),
        (f"scheduled full scan, median (n={f.scans})", f"{f.scan_ms_median:.0f} ms", ""),
        ("scheduled full scan, max", f"{f.scan_ms_max:.0f} ms", ""),
        (
            f"scan after a card change, median (n={f.change_scans})",
            f"{f.change_scan_ms_median:.0f} ms",
            "",
        ),
        (
            "scan after a card change, max",
            f"{f.change_scan_ms_max:.0f} ms",
            f"< 1 s: {mark[met['scan_under_1s']]}",
        ),
        (
            "one-shot `agent scan` process, wall time",
            f"{f.oneshot_s_median:.2f} s",
            f"(its scan: {f.oneshot_scan_ms_median:.0f} ms)",
        ),
        ("RSS idle (VmRSS)", f"{f.rss_idle_mb:.1f} MB", ""),
        ("RSS after the scans (VmRSS)", f"{f.rss_after_scans_mb:.1f} MB", ""),
        (
            "RSS after a rescan command (VmRSS)",
            f"{f.rss_after_command_mb:.1f} MB",
            "",
        ),
        (
            "RSS peak (VmHWM)",
            f"{max(f.peaks_mb):.1f} MB",
            f"< 40 MB: {mark[met['rss_under_40mb']]}",
        ),
        ("CPU per scheduled scan (utime+stime)", f"{f.cpu_per_scan_s * 1000:.0f} ms", ""),
        (
            f"CPU over {f.idle_window_s:.0f} s idle (utime+stime)",
            f"{f.idle_cpu_s:.2f} s",
            f"nil: {mark[met['no_cpu_when_idle']]}",
        ),
        ("  threads' time on CPU (schedstat)", f"{f.idle_cpu_ns / 1e6:.2f} ms", ""),
        (
            "  wakeups (context switches)",
            str(f.idle_wakeups),
            "per thread: " + " ".join(map(str, f.idle_wakeups_by_thread)),
        ),
        ("  statuses published meanwhile", str(f.idle_statuses), ""),
        ("RSS of the modules alone, by what loads them", "", ""),
        *((f"  {name}", f"{mb:.1f} MB", "") for name, mb in f.imports_mb),
    ]
    width = max(len(name) for name, _, _ in rows)
    header = (
        f"agent footprint: {READERS} vpcd readers with CPS cards, "
        f"Python {f.python}, {f.cpus} CPU(s), entry: {f.entry}"
    )
    return "\n".join(
        [header, *(f"{name:<{width}}  {value:>9}  {note}".rstrip() for name, value, note in rows)]
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: each `with` block stops what it started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--scans", type=int, default=20, help="scheduled scans to time")
    parser.add_argument("--changes", type=int, default=10, help="card removals and insertions")
    parser.add_argument("--idle", type=float, default=20, help="idle window, in seconds")
    parser.add_argument(
        "--entry",
        choices=ENTRIES,
        default="cpsfleet",
        help="run `cpsfleet agent run` as deployed, or through the agent's Typer command group",
    )
    args = parser.parse_args()
    other = running_pcscd()
    if other is not None:
        print(
            f"error: a pcscd is running (PID {other}); the benchmark starts its own",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="cpsfleet-bench-agent-") as tmp:
        try:
            figures = run(Path(tmp), args)
        except KeyboardInterrupt:
            print("interrupted: everything the benchmark started is stopped", file=sys.stderr)
            return 130
        except (TimeoutError, AssertionError, RuntimeError) as error:  # ReadersError too
            log = Path(tmp) / "agent.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            print(f"error: {error}\n--- agent log ---\n{tail}", file=sys.stderr)
            return 1
    if args.json:
        print(
            json.dumps(
                {
                    **asdict(figures),
                    "rss_peak_mb": max(figures.peaks_mb),
                    "targets_met": figures.targets(),
                }
            )
        )
    else:
        print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
