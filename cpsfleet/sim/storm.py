"""A reconnect storm: every agent of a synthetic fleet on its own MQTT connection, back at once.

Each agent connects as the real one (``agent/mqtt.py``): client id ``cpsfleet-agent-<host id>``,
MQTT 5, keepalive 30 s, a session that outlives the connection by the Will Delay, a retained
QoS 1 ``offline`` Last Will on its presence topic, and clean start false, so that a reconnection
within the Will Delay takes the session back without publishing the Will. Once connected it
publishes ``online`` and a fresh status (retained, QoS 1, the status with the next ``seq``).
The storm lasts from the first CONNECT to the last PUBACK.

Ten thousand connections do not get ten thousand threads: a few worker processes (one per core
by default) each drive their share from one selector loop. The agents speak the few packets
they need from bytes made before the storm, not through paho: paho spends ~0.7 ms of CPU per
agent (MQTT 5 properties objects for every packet, packets read a byte at a time), and on a
2-core machine the load generator, not the broker, set the pace. paho watches the Wills.

Each worker raises its open-file limit to the hard limit; the broker needs one file descriptor
per agent too (``ulimit -n`` of whatever starts Mosquitto, ``LimitNOFILE=`` of its unit) and
``max_connections -1``. Mosquitto listens with a backlog of 100: a storm overflows its accept
queue, and the kernel drops SYNs that the agents send again 1 s, 3 s, 7 s later
(``nstat TcpExtListenOverflows``), as a real fleet coming back at once would.
"""

from __future__ import annotations

import errno
import json
import math
import multiprocessing
import os
import resource
import selectors
import signal
import socket
import struct
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.schemas.topics import PREFIX, parse_topic, topic
from cpsfleet.sim.fleet import MAX_INTERVAL_S, QOS, STALL_S, FleetError, SimHost
from cpsfleet.sim.fleet import presence_document as presence
from cpsfleet.sim.fleet import status_document as status

KEEPALIVE_S = 30  # the agent's
DEFAULT_WILL_DELAY_S = 60  # the agent's default will_delay (agent/config.py)
FIRST_CONTACT, STORM, HOLD = "first contact", "storm", "hold"
CONNECT_BATCH = 100  # connections opened between two looks at the sockets
SPARE_FILES = 64  # a worker's open files besides its agents' sockets
CLOSE_TIMEOUT_S = 10.0
LIVE = ("connected", "acknowledged", "errors")  # each worker's slots in the shared array
WILL_FLAGS = 0x04 | 0x08 | 0x20  # a Will, QoS 1, retained; clean start false
PINGREQ, DISCONNECT = b"\xc0\x00", b"\xe0\x00"


@dataclass(frozen=True)
class StormProgress:
    """The fleet at one moment of a phase (``first contact``, ``storm``, ``hold``)."""

    phase: str
    agents: int
    connected: int
    acknowledged: int
    errors: int
    wills: int | None = None  # offline Wills published after the first contact, so far

    def __str__(self) -> str:
        wills = "" if self.wills is None else f", {self.wills} Wills"
        return (
            f"{self.phase}: {self.connected} of {self.agents} agents connected, "
            f"{self.acknowledged} of {2 * self.agents} messages acknowledged, "
            f"{self.errors} errors{wills}"
        )


Progress = Callable[[StormProgress], None]


@dataclass(frozen=True)
class PhaseResult:
    """What one phase did. ``seconds`` runs from the first CONNECT to the last answer (PUBACK,
    or an agent given up), ``connect_seconds`` from the first CONNECT to the last CONNACK."""

    agents: int
    connected: int
    connect_errors: int
    published: int
    acknowledged: int
    refused: int
    seconds: float
    connect_seconds: float
    # From an agent's SYN to its CONNACK: 1 s, 3 s... when the broker's accept queue overflowed
    connack_median_s: float = 0.0
    connack_p99_s: float = 0.0
    connack_max_s: float = 0.0
    failure: str | None = None  # the most frequent reason agents failed, and how often

    @property
    def connects_per_s(self) -> float:
        return self.connected / self.connect_seconds if self.connect_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "connects_per_s": round(self.connects_per_s, 1)}


@dataclass(frozen=True)
class StormResult:
    """The storm, and the first contact before it when there was one."""

    workers: int
    seq: int  # of the statuses published in the storm
    storm: PhaseResult
    first_contact: PhaseResult | None = None
    wills: int | None = None  # hosts whose offline Will the broker published after first contact

    @property
    def problem(self) -> str | None:
        """Why the storm fell short, or None when the broker acknowledged every message."""
        run = self.storm
        faults = {
            f"{run.connect_errors} of {run.agents} agents failed": run.connect_errors,
            f"the broker refused {run.refused} of {run.published} messages": run.refused,
        }
        found = [fault for fault, count in faults.items() if count]
        return f"{' and '.join(found)} ({run.failure})" if found else None

    def __str__(self) -> str:
        run, first = self.storm, self.first_contact
        after = f" after a first contact and {self.wills} Wills" if first else ""
        return (
            f"storm of {run.agents} agents (workers: {self.workers}){after}: {run.connected} "
            f"connected, {run.connect_errors} connect errors, {run.acknowledged} of "
            f"{2 * run.agents} messages acknowledged in {run.seconds:.2f} s, "
            f"{run.connects_per_s:.0f} connects/s; CONNACK after {run.connack_median_s:.2f} s "
            f"median, {run.connack_p99_s:.2f} s p99, {run.connack_max_s:.2f} s max"
        )

    def as_dict(self) -> dict[str, Any]:
        first = self.first_contact.as_dict() if self.first_contact else None
        extra = {"workers": self.workers, "seq": self.seq, "first_contact": first}
        return {**self.storm.as_dict(), **extra, "wills": self.wills}


@dataclass(frozen=True)
class StormSettings:
    """How a storm is played; FleetError for what it cannot play."""

    workers: int | None = None  # processes; None: one per CPU core
    first_contact: bool = False  # connect, publish and lose every agent before the storm
    hold_s: float = 0.0  # seconds connected after the storm (math.inf: until stopped)
    will_delay_s: int = DEFAULT_WILL_DELAY_S  # and the session expiry, as the agent's
    interval_s: int = 900  # the statuses' scan_interval_s

    def __post_init__(self) -> None:
        workers, hold, delay, interval = (
            self.workers,
            self.hold_s,
            self.will_delay_s,
            self.interval_s,
        )
        needs = (
            (workers is None or workers >= 1, f"at least 1 worker, not {workers}"),
            (hold >= 0, f"a hold of 0 seconds or more, not {hold}"),
            (0 <= delay < 2**32, f"a Will Delay of 0 to {2**32 - 1} seconds, not {delay}"),
            (
                1 <= interval <= MAX_INTERVAL_S,
                f"an interval of 1 to {MAX_INTERVAL_S} s, not {interval}",
            ),
        )
        for met, need in needs:
            if not met:
                raise FleetError(f"the storm needs {need}")

    @property
    def phases(self) -> tuple[str, ...]:
        return (FIRST_CONTACT, STORM) if self.first_contact else (STORM,)


@dataclass(frozen=True)
class _Job:
    index: int
    broker: BrokerUrl
    hosts: tuple[SimHost, ...]
    seq_start: int
    settings: StormSettings


@dataclass
class _Report:
    """One worker's share of a phase; the parent merges them into a PhaseResult."""

    agents: int
    counts: Counter[str] = field(default_factory=Counter)  # connected, published, ...
    reasons: Counter[str] = field(default_factory=Counter)
    started: float = 0.0  # time.monotonic() is the same clock in every process
    last_connack: float | None = None
    last_answer: float | None = None
    waits: list[float] = field(default_factory=list)  # each agent's, from SYN to CONNACK


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        number, byte = divmod(number, 128)
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _field(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes([first]) + _varint(len(body)) + body


def _connect_packet(job: _Job, host: SimHost, will: bytes) -> bytes:
    """CONNECT: MQTT 5, clean start false, Session Expiry and Will Delay, a retained Will."""
    user, password = job.broker.username, job.broker.password
    flags = WILL_FLAGS | (0x80 if user else 0) | (0x40 if password else 0)
    session = b"\x05\x11" + struct.pack("!I", job.settings.will_delay_s)
    delay = b"\x05\x18" + struct.pack("!I", job.settings.will_delay_s)
    return _packet(
        0x10,
        _field("MQTT") + bytes([5, flags]) + struct.pack("!H", KEEPALIVE_S) + session,
        _field(f"cpsfleet-agent-{host.id}"),
        delay + _field(topic(host.id, "presence")) + _field(will),
        _field(user) if user else b"",
        _field(password) if password else b"",
    )


def _publish_packet(name: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH: QoS 1, retained, no properties."""
    return _packet(0x33, _field(name), struct.pack("!H", packet_id), b"\x00", payload)


def _frames(inbox: bytearray) -> Iterator[tuple[int, bytes]]:
    """The whole packets at the head of ``inbox``, taken off it: (packet type, body)."""
    while (header := _header(inbox)) is not None:
        start, length = header
        kind, body = inbox[0] >> 4, bytes(inbox[start : start + length])
        del inbox[: start + length]
        yield kind, body


def _header(inbox: bytearray) -> tuple[int, int] | None:
    """Where the first packet's body starts and its length, once ``inbox`` holds it whole."""
    length = 0
    for at in range(1, min(len(inbox), 5)):
        length |= (inbox[at] & 0x7F) << 7 * (at - 1)
        if not inbox[at] & 0x80:
            return (at + 1, length) if len(inbox) >= at + 1 + length else None
    return None


def _reason(packet: int, code: int) -> str:
    return str(ReasonCode(packet, identifier=code))


@dataclass(slots=True)
class _Agent:
    """One agent in one phase: its packets, its socket, what the broker answered."""

    hello: bytes  # CONNECT
    messages: bytes  # the two PUBLISH, sent on CONNACK
    sock: socket.socket | None = None
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    answers: int = 0
    state: str = "new"  # connecting, connected, answered, failed, leaving, closed
    opened: float = 0.0


class _Worker:
    """One process's share of the fleet: every connection driven from one selector, which
    also watches the link to the parent (its orders: the phase to play, release, stop)."""

    def __init__(self, job: _Job, link: Connection, live: Any) -> None:
        self.job, self.link, self.live = job, link, live
        self.selector = selectors.DefaultSelector()
        self.selector.register(link, selectors.EVENT_READ, None)
        address = socket.getaddrinfo(job.broker.host, job.broker.port, type=socket.SOCK_STREAM)
        self.family, self.sockaddr = address[0][0], address[0][4]
        self.handlers = {2: self._on_connack, 4: self._on_puback, 14: self._on_disconnect}
        self.agents: list[_Agent] = []
        self.report, self.finished, self.said, self.ping_at = _Report(0), 0, "", math.inf

    def prepare(self, number: int) -> None:
        """This phase's packets, made before the go."""
        now, seq = datetime.now(UTC), self.job.seq_start + number
        self.agents = [self._agent(host, now, seq) for host in self.job.hosts]
        self.report, self.finished = _Report(len(self.agents)), 0
        first = self.job.index * len(LIVE)
        self.live[first : first + len(LIVE)] = [0] * len(LIVE)

    def _agent(self, host: SimHost, now: datetime, seq: int) -> _Agent:
        will = _encode(presence(host, "offline", now, "connection_lost"))
        online = _encode(presence(host, "online", now))
        report = _encode(status(host, seq, now, self.job.settings.interval_s))
        return _Agent(
            _connect_packet(self.job, host, will),
            _publish_packet(topic(host.id, "presence"), online, 1)
            + _publish_packet(topic(host.id, "status"), report, 2),
        )

    def play(self) -> _Report:
        """Connect every agent at once, publish, and wait for every answer."""
        self.report.started = time.monotonic()
        self.ping_at = self.report.started + KEEPALIVE_S / 2
        for start in range(0, len(self.agents), CONNECT_BATCH):
            for agent in self.agents[start : start + CONNECT_BATCH]:
                self._open(agent)
            self.pump(0)
        self._settle()
        return self.report

    def _open(self, agent: _Agent) -> None:
        agent.state, agent.opened = "connecting", time.monotonic()
        try:
            agent.sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as error:  # out of file descriptors
            self._fail(agent, str(error))
            return
        agent.sock.setblocking(False)
        code = agent.sock.connect_ex(self.sockaddr)
        if code not in (0, errno.EINPROGRESS):
            self._fail(agent, os.strerror(code))
            return
        agent.outbox += agent.hello  # sent once the socket is writable: connected
        self.selector.register(agent.sock, selectors.EVENT_WRITE, agent)

    def _settle(self) -> None:
        """Pump until every agent is answered; give up on those silent for STALL_S."""
        moved, finished = time.monotonic(), self.finished
        while self.finished < len(self.agents) and self.said != "stop":
            self.pump(0.1)
            if self.finished > finished:
                moved, finished = time.monotonic(), self.finished
            elif time.monotonic() - moved > STALL_S:
                for agent in self.agents:
                    if agent.state in ("connecting", "connected"):
                        self._fail(agent, f"no answer within {STALL_S:g} s")

    def pump(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            agent: _Agent | None = key.data
            if agent is None:
                self.said = self.link.recv()
                continue
            if mask & selectors.EVENT_WRITE:
                self._flush(agent)
            if mask & selectors.EVENT_READ and agent.sock is not None:
                self._read(agent)
        if time.monotonic() >= self.ping_at:
            self.ping_at = time.monotonic() + KEEPALIVE_S / 2
            for agent in self.agents:
                if agent.state in ("connected", "answered"):
                    self._send(agent, PINGREQ)

    def _send(self, agent: _Agent, data: bytes) -> None:
        agent.outbox += data
        self._flush(agent)

    def _flush(self, agent: _Agent) -> None:
        assert agent.sock is not None
        try:
            del agent.outbox[: agent.sock.send(agent.outbox)]
        except BlockingIOError:
            pass
        except OSError as error:  # the connection refused or lost
            self._lost(agent, str(error))
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if agent.outbox else 0)
        self.selector.modify(agent.sock, events, agent)

    def _read(self, agent: _Agent) -> None:
        assert agent.sock is not None
        try:
            data = agent.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self._lost(agent, str(error))
            return
        if not data:
            self._lost(agent, "the broker closed the connection")
            return
        agent.inbox += data
        for kind, body in _frames(agent.inbox):
            if agent.sock is not None and kind in self.handlers:
                self.handlers[kind](agent, body)

    def _on_connack(self, agent: _Agent, body: bytes) -> None:
        if body[1] >= 0x80:
            self._fail(agent, _reason(PacketTypes.CONNACK, body[1]))
            return
        agent.state = "connected"
        self.report.counts.update(connected=1, published=2)
        self.report.last_connack = time.monotonic()
        self.report.waits.append(self.report.last_connack - agent.opened)
        self._add("connected")
        self._send(agent, agent.messages)

    def _on_puback(self, agent: _Agent, body: bytes) -> None:
        code = body[2] if len(body) > 2 else 0
        if code >= 0x80:
            self.report.counts["refused"] += 1
            self.report.reasons[_reason(PacketTypes.PUBACK, code)] += 1
        else:
            self.report.counts["acknowledged"] += 1
            self._add("acknowledged")
        self.report.last_answer = time.monotonic()
        agent.answers += 1
        if agent.answers == 2:
            agent.state = "answered"
            self.finished += 1

    def _on_disconnect(self, agent: _Agent, body: bytes) -> None:
        self._lost(agent, _reason(PacketTypes.DISCONNECT, body[0] if body else 0))

    def wait_for(self, order: str) -> bool:
        """Keep the connections alive until the parent says ``order``; False on ``stop``."""
        while self.said not in (order, "stop"):
            self.pump(1.0)
        return self.said == order

    def drop(self) -> None:
        """Reset every connection, no DISCONNECT: the broker publishes the Wills."""
        for agent in self.agents:
            self._close(agent, reset=True)
        self.live[self.job.index * len(LIVE)] = 0

    def disconnect(self) -> int:
        """DISCONNECT (the broker discards the Will) and wait for the broker to close;
        how many agents were still connected."""
        connected = [agent for agent in self.agents if agent.state in ("connected", "answered")]
        for agent in connected:
            agent.state = "leaving"
            self._send(agent, DISCONNECT)
            if agent.sock is not None:
                with suppress(OSError):
                    agent.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while len(self.selector.get_map()) > 1 and time.monotonic() < deadline:
            self.pump(0.1)
        for agent in self.agents:
            self._close(agent)
        return len(connected)

    def _lost(self, agent: _Agent, reason: str) -> None:
        if agent.state in ("connecting", "connected"):
            self._fail(agent, reason)
        elif agent.sock is not None:
            self._close(agent)
            self._add("connected", -1)

    def _fail(self, agent: _Agent, reason: str) -> None:
        if agent.state == "connected":
            self._add("connected", -1)
        self._close(agent)
        agent.state = "failed"
        self.finished += 1
        self.report.counts["connect_errors"] += 1
        self.report.reasons[reason] += 1
        self.report.last_answer = time.monotonic()
        self._add("errors")

    def _close(self, agent: _Agent, reset: bool = False) -> None:
        if agent.sock is None:
            return
        with suppress(KeyError):
            self.selector.unregister(agent.sock)
        if reset:  # RST, not FIN: a lost connection, and no TIME_WAIT left behind
            agent.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        agent.sock.close()
        agent.sock, agent.state = None, "closed"

    def _add(self, name: str, value: int = 1) -> None:
        self.live[self.job.index * len(LIVE) + LIVE.index(name)] += value


def _work(link: Connection, live: Any) -> None:
    """A worker process: its job, then each phase on the parent's go, hold, disconnect."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which says stop
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        job: _Job = link.recv()
        worker = _Worker(job, link, live)
        for number, phase in enumerate(job.settings.phases, 1):
            worker.prepare(number)
            link.send(("ready", None))
            if not worker.wait_for(phase):
                return
            link.send(("played", worker.play()))
            if phase == FIRST_CONTACT:
                worker.drop()
        worker.wait_for("release")
        link.send(("closed", worker.disconnect()))
    except (EOFError, BrokenPipeError):
        return  # the parent is gone
    except Exception:
        link.send(("failed", traceback.format_exc()))


class _Pool:
    """The worker processes, each on its own two-way link to the parent."""

    def __init__(self, jobs: list[_Job], stop: threading.Event) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self.live = context.RawArray("q", len(jobs) * len(LIVE))
        self.agents, self.stop = sum(len(job.hosts) for job in jobs), stop
        self.links: list[Connection] = []
        self.processes = []
        for _ in jobs:
            here, there = context.Pipe()
            process = context.Process(target=_work, args=(there, self.live), daemon=True)
            process.start()
            there.close()  # so that a worker's death is an EOF here
            self.links.append(here)
            self.processes.append(process)
        try:  # the jobs, sent once the workers run: one that died cannot block the parent
            for job in jobs:
                self._send(job.index, job)
        except FleetError:
            self.close()
            raise

    def close(self) -> None:
        for index in range(len(self.links)):
            with suppress(FleetError):
                self._send(index, "stop")
        for process in self.processes:
            process.join(CLOSE_TIMEOUT_S + 5)
            if process.is_alive():
                process.kill()
                process.join()
        for link in self.links:
            link.close()

    def play(self, phase: str, progress: Progress) -> PhaseResult:
        self.collect("ready", phase, progress)
        for index in range(len(self.links)):
            self._send(index, phase)
        return _merge(self.collect("played", phase, progress))

    def hold(self, hold_s: float, progress: Progress) -> None:
        """Stay connected ``hold_s`` seconds or until stopped; then disconnect cleanly."""
        deadline = time.monotonic() + hold_s
        while (left := deadline - time.monotonic()) > 0 and not self.stop.wait(min(1.0, left)):
            progress(self.progress(HOLD))
        for index in range(len(self.links)):
            self._send(index, "release")
        self.collect("closed", HOLD, progress)

    def progress(self, phase: str) -> StormProgress:
        sums = [sum(self.live[i :: len(LIVE)]) for i in range(len(LIVE))]
        return StormProgress(phase, self.agents, *sums)

    def collect(self, kind: str, phase: str, progress: Progress) -> list[Any]:
        """Each worker's next message, which must be ``kind``; progress every second."""
        got: dict[int, Any] = {}
        tick = time.monotonic() + 1
        while len(got) < len(self.links):
            if self.stop.is_set() and phase != HOLD:
                raise FleetError(f"interrupted: {self.progress(phase)}")
            ready = wait([link for i, link in enumerate(self.links) if i not in got], 0.1)
            for index in (i for i, link in enumerate(self.links) if link in ready):
                said, payload = self._receive(index)
                if said == "failed":
                    raise FleetError(f"storm worker {index} failed:\n{payload}")
                assert said == kind, f"storm worker {index} said {said} before {kind}"
                got[index] = payload
            if time.monotonic() >= tick:
                tick += 1
                progress(self.progress(phase))
        return list(got.values())

    def _send(self, index: int, message: Any) -> None:
        try:
            self.links[index].send(message)
        except OSError:
            raise FleetError(self._died(index)) from None

    def _receive(self, index: int) -> tuple[str, Any]:
        try:
            said: tuple[str, Any] = self.links[index].recv()
        except (EOFError, OSError):
            raise FleetError(self._died(index)) from None
        return said

    def _died(self, index: int) -> str:
        self.processes[index].join(1)
        return f"storm worker {index} exited (code {self.processes[index].exitcode})"


def _merge(reports: list[_Report]) -> PhaseResult:
    counts = sum((report.counts for report in reports), Counter[str]())
    reasons = sum((report.reasons for report in reports), Counter[str]())
    started = min(report.started for report in reports)
    answers = [r.last_answer for r in reports if r.last_answer is not None]
    connacks = [r.last_connack for r in reports if r.last_connack is not None]
    waits = sorted(wait for report in reports for wait in report.waits) or [0.0]
    return PhaseResult(
        sum(report.agents for report in reports),
        counts["connected"],
        counts["connect_errors"],
        counts["published"],
        counts["acknowledged"],
        counts["refused"],
        seconds=max(answers) - started if answers else 0.0,
        connect_seconds=max(connacks) - started if connacks else 0.0,
        connack_median_s=waits[len(waits) // 2],
        connack_p99_s=waits[len(waits) * 99 // 100],
        connack_max_s=waits[-1],
        failure="{}: {} times".format(*reasons.most_common(1)[0]) if reasons else None,
    )


class _WillWatch:
    """Counts the fleet's hosts whose offline Will the broker published (live, not retained)."""

    def __init__(self, broker: BrokerUrl, host_ids: set[str]) -> None:
        self.broker, self.host_ids, self.seen = broker, host_ids, set[str]()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cpsfleet-sim-storm-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    @contextmanager
    def watching(self) -> Iterator[_WillWatch]:
        # Room for every Will in flight: a broker drops what would queue beyond its limit.
        room = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        room.ReceiveMaximum = 65535
        try:
            self.client.connect(self.broker.host, self.broker.port, KEEPALIVE_S, properties=room)
        except OSError as error:
            raise FleetError(f"cannot reach the broker at {self.broker}: {error}") from None
        self.client.subscribe(f"{PREFIX}/+/presence", qos=QOS)
        self.client.loop_start()
        try:
            if not self.subscribed.wait(STALL_S):
                raise FleetError(f"the broker at {self.broker} did not answer a SUBSCRIBE")
            yield self
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def wait(
        self, count: int, timeout: float, stop: threading.Event, tick: Callable[[int], None]
    ) -> int:
        """Wait up to ``timeout`` for ``count`` Wills, ticking each second; how many came."""
        now = time.monotonic()
        deadline, ticked = now + timeout, now
        while len(self.seen) < count and time.monotonic() < deadline:
            if stop.wait(0.1):
                raise FleetError(f"interrupted: {len(self.seen)} of {count} Wills published")
            if time.monotonic() - ticked >= 1:
                ticked = time.monotonic()
                tick(len(self.seen))
        return len(self.seen)

    def _on_message(self, client: mqtt.Client, data: Any, message: mqtt.MQTTMessage) -> None:
        try:
            host_id, _ = parse_topic(message.topic)
            state = json.loads(message.payload).get("state")
        except (ValueError, AttributeError):
            return
        if not message.retain and state == "offline" and host_id in self.host_ids:
            self.seen.add(host_id)


def play_storm(
    broker: BrokerUrl,
    hosts: Sequence[SimHost],
    seq_start: int | None,
    progress: Progress,
    settings: StormSettings = StormSettings(),
    stop: threading.Event | None = None,
) -> StormResult:
    """Play a reconnect storm of ``hosts``; ``progress`` hears of it every second.

    With ``first_contact``, every agent first connects, publishes and loses its connection
    (reset, no DISCONNECT); the storm waits for the broker's offline Wills (after the Will
    Delay). The storm's statuses carry ``seq_start`` + 1 (+ 2 after a first contact;
    ``seq_start`` None: the time in milliseconds). The agents then stay connected ``hold_s``
    seconds (or until ``stop``) and disconnect cleanly, so no Will is published.
    FleetError for a fleet or broker the storm cannot play, a failed worker, or ``stop``
    before the storm is over."""
    stop = stop or threading.Event()
    count = _workers(broker, hosts, settings)
    start = int(time.time() * 1000) if seq_start is None else seq_start
    jobs = [_Job(i, broker, tuple(hosts[i::count]), start, settings) for i in range(count)]
    pool = _Pool(jobs, stop)
    try:
        first, wills = None, None
        if settings.first_contact:
            first, wills = _first_contact(pool, broker, hosts, settings, progress)
        result = pool.play(STORM, progress)
        pool.hold(settings.hold_s, progress)
    finally:
        pool.close()
    return StormResult(count, start + len(settings.phases), result, first, wills)


def _first_contact(
    pool: _Pool,
    broker: BrokerUrl,
    hosts: Sequence[SimHost],
    settings: StormSettings,
    progress: Progress,
) -> tuple[PhaseResult, int]:
    """Play the first contact, then wait for the broker to publish the Wills."""
    with _WillWatch(broker, {host.id for host in hosts}).watching() as watch:
        first = pool.play(FIRST_CONTACT, progress)
        after = pool.progress(FIRST_CONTACT)

        def tick(wills: int) -> None:
            progress(replace(after, connected=0, wills=wills))  # all dropped

        timeout = settings.will_delay_s + STALL_S
        return first, watch.wait(first.connected, timeout, pool.stop, tick)


def _workers(broker: BrokerUrl, hosts: Sequence[SimHost], settings: StormSettings) -> int:
    """How many worker processes to start; FleetError for what the storm cannot play."""
    if broker.tls:
        raise FleetError(
            f"{broker} is a TLS broker: the storm plays plain mqtt:// brokers only "
            "(each agent would need its own client certificate)"
        )
    if not hosts:
        raise FleetError("the storm needs at least 1 agent")
    count = min(settings.workers or os.cpu_count() or 1, len(hosts))
    need = math.ceil(len(hosts) / count) + SPARE_FILES
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise FleetError(
            f"each of the {count} workers needs {need} open files, but the hard limit is "
            f"{hard}: raise it (ulimit -Hn, LimitNOFILE=) or add --workers"
        )
    try:
        socket.create_connection((broker.host, broker.port), timeout=5).close()
    except OSError as error:
        raise FleetError(f"cannot reach the broker at {broker}: {error}") from None
    return count
