"""One worker process of a storm: its share of the agents, every connection driven from one
selector loop, each phase on the parent's order."""

from __future__ import annotations

import errno
import math
import os
import resource
import selectors
import signal
import socket
import struct
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from paho.mqtt.packettypes import PacketTypes

from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.fleet.connection import STALL_S
from cpsfleet.sim.fleet.documents import presence_document as presence
from cpsfleet.sim.fleet.documents import status_document as status
from cpsfleet.sim.fleet.model import SimHost
from cpsfleet.sim.storm.packets import (
    DISCONNECT,
    PINGREQ,
    connect_packet,
    encode,
    frames,
    publish_packet,
    reason_text,
)
from cpsfleet.sim.storm.results import WorkerReport
from cpsfleet.sim.storm.settings import FIRST_CONTACT, KEEPALIVE_S, StormSettings

CONNECT_BATCH = 100  # connections opened between two looks at the sockets
CLOSE_TIMEOUT_S = 10.0
LIVE = ("connected", "acknowledged", "errors")  # each worker's slots in the shared array


@dataclass(frozen=True)
class Job:
    index: int
    broker: BrokerUrl
    hosts: tuple[SimHost, ...]
    seq_start: int
    settings: StormSettings


@dataclass(slots=True)
class Agent:
    """One agent in one phase: its packets, its socket, what the broker answered."""

    hello: bytes  # CONNECT
    messages: bytes  # the two PUBLISH, sent on CONNACK
    sock: socket.socket | None = None
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    answers: int = 0
    state: str = "new"  # connecting, connected, answered, failed, leaving, closed
    opened: float = 0.0


class Worker:
    """One process's share of the fleet: every connection driven from one selector, which
    also watches the link to the parent (its orders: the phase to play, release, stop)."""

    def __init__(self, job: Job, link: Connection, live: Any) -> None:
        self.job, self.link, self.live = job, link, live
        self.selector = selectors.DefaultSelector()
        self.selector.register(link, selectors.EVENT_READ, None)
        address = socket.getaddrinfo(job.broker.host, job.broker.port, type=socket.SOCK_STREAM)
        self.family, self.sockaddr = address[0][0], address[0][4]
        self.handlers = {2: self._on_connack, 4: self._on_puback, 14: self._on_disconnect}
        self.agents: list[Agent] = []
        self.report, self.finished, self.said, self.ping_at = WorkerReport(0), 0, "", math.inf

    def prepare(self, number: int) -> None:
        """This phase's packets, made before the go."""
        now, seq = datetime.now(UTC), self.job.seq_start + number
        self.agents = [self._agent(host, now, seq) for host in self.job.hosts]
        self.report, self.finished = WorkerReport(len(self.agents)), 0
        first = self.job.index * len(LIVE)
        self.live[first : first + len(LIVE)] = [0] * len(LIVE)

    def _agent(self, host: SimHost, now: datetime, seq: int) -> Agent:
        will = encode(presence(host, "offline", now, "connection_lost"))
        online = encode(presence(host, "online", now))
        report = encode(status(host, seq, now, self.job.settings.interval_s))
        return Agent(
            connect_packet(self.job.broker, host.id, self.job.settings.will_delay_s, will),
            publish_packet(topic(host.id, "presence"), online, 1)
            + publish_packet(topic(host.id, "status"), report, 2),
        )

    def play(self) -> WorkerReport:
        """Connect every agent at once, publish, and wait for every answer."""
        self.report.started = time.monotonic()
        self.ping_at = self.report.started + KEEPALIVE_S / 2
        for start in range(0, len(self.agents), CONNECT_BATCH):
            for agent in self.agents[start : start + CONNECT_BATCH]:
                self._open(agent)
            self.pump(0)
        self._settle()
        return self.report

    def _open(self, agent: Agent) -> None:
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
            agent: Agent | None = key.data
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

    def _send(self, agent: Agent, data: bytes) -> None:
        agent.outbox += data
        self._flush(agent)

    def _flush(self, agent: Agent) -> None:
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

    def _read(self, agent: Agent) -> None:
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
        for kind, body in frames(agent.inbox):
            if agent.sock is not None and kind in self.handlers:
                self.handlers[kind](agent, body)

    def _on_connack(self, agent: Agent, body: bytes) -> None:
        if body[1] >= 0x80:
            self._fail(agent, reason_text(PacketTypes.CONNACK, body[1]))
            return
        agent.state = "connected"
        self.report.counts.update(connected=1, published=2)
        self.report.last_connack = time.monotonic()
        self.report.waits.append(self.report.last_connack - agent.opened)
        self._add("connected")
        self._send(agent, agent.messages)

    def _on_puback(self, agent: Agent, body: bytes) -> None:
        code = body[2] if len(body) > 2 else 0
        if code >= 0x80:
            self.report.counts["refused"] += 1
            self.report.reasons[reason_text(PacketTypes.PUBACK, code)] += 1
        else:
            self.report.counts["acknowledged"] += 1
            self._add("acknowledged")
        self.report.last_answer = time.monotonic()
        agent.answers += 1
        if agent.answers == 2:
            agent.state = "answered"
            self.finished += 1

    def _on_disconnect(self, agent: Agent, body: bytes) -> None:
        self._lost(agent, reason_text(PacketTypes.DISCONNECT, body[0] if body else 0))

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

    def _lost(self, agent: Agent, reason: str) -> None:
        if agent.state in ("connecting", "connected"):
            self._fail(agent, reason)
        elif agent.sock is not None:
            self._close(agent)
            self._add("connected", -1)

    def _fail(self, agent: Agent, reason: str) -> None:
        if agent.state == "connected":
            self._add("connected", -1)
        self._close(agent)
        agent.state = "failed"
        self.finished += 1
        self.report.counts["connect_errors"] += 1
        self.report.reasons[reason] += 1
        self.report.last_answer = time.monotonic()
        self._add("errors")

    def _close(self, agent: Agent, reset: bool = False) -> None:
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


def work(link: Connection, live: Any) -> None:
    """A worker process: its job, then each phase on the parent's go, hold, disconnect."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which says stop
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        job: Job = link.recv()
        worker = Worker(job, link, live)
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
