"""The fleet's agents played into a sink: birth, periodic reports with the odd card taken out or
put back, goodbye; ``play_fleet`` plays them on a broker over one ``FleetConnection``."""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cpsfleet.i18n import _
from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.schemas.documents import PresenceState
from cpsfleet.schemas.topics import topic
from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.fleet.connection import Counts, FleetConnection, Progress
from cpsfleet.sim.fleet.documents import (
    MAX_INTERVAL_S,
    event_document,
    presence_document,
    status_document,
)
from cpsfleet.sim.fleet.model import SimHost, SimReader

CARD_SWAP_CHANCE = 0.05  # per periodic report: a card taken out of its reader, or put back


class Sink(Protocol):
    """Where the played agents' documents go: the broker, or a list in tests."""

    def publish(self, topic: str, document: dict[str, Any], retain: bool) -> None: ...


@dataclass
class PlayedHost:
    """One agent's running state: its last ``seq`` and the readers whose card is out."""

    host: SimHost
    seq: int
    removed: set[str] = field(default_factory=set)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class FleetPlayer:
    """Plays every host's agent into a sink: birth, periodic reports with the odd card
    taken out or put back (an event, then a fresh status), goodbye.

    ``seq`` starts after ``seq_start`` (default: the time in milliseconds), so a controller
    that stores each (host, seq) once takes a rerun's documents as new."""

    def __init__(
        self,
        hosts: Sequence[SimHost],
        sink: Sink,
        interval_s: int,
        seed: int = 1,
        seq_start: int | None = None,
    ) -> None:
        start = int(time.time() * 1000) if seq_start is None else seq_start
        self.played = [PlayedHost(host, start) for host in hosts]
        self.sink, self.interval_s = sink, interval_s
        self.rng = random.Random(seed)

    def announce(self) -> None:
        """Every host comes online and publishes its status."""
        for played in self.played:
            self._presence(played.host, "online")
            self._status(played)

    def report(self, index: int) -> None:
        played = self.played[index]
        with_card = [r for r in played.host.readers if r.card is not None]
        if with_card and self.rng.random() < CARD_SWAP_CHANCE:
            self._swap(played, self.rng.choice(with_card))
        self._status(played)

    def goodbye(self) -> None:
        for played in self.played:
            self._presence(played.host, "offline")

    def _swap(self, played: PlayedHost, reader: SimReader) -> None:
        inserted = reader.name in played.removed
        (played.removed.discard if inserted else played.removed.add)(reader.name)
        event = event_document(played.host, reader, inserted, played.next_seq(), _now())
        self.sink.publish(topic(played.host.id, "events"), event, False)

    def _status(self, played: PlayedHost) -> None:
        status = status_document(
            played.host, played.next_seq(), _now(), self.interval_s, frozenset(played.removed)
        )
        self.sink.publish(topic(played.host.id, "status"), status, True)

    def _presence(self, host: SimHost, state: PresenceState) -> None:
        self.sink.publish(topic(host.id, "presence"), presence_document(host, state, _now()), True)

    def schedule(self, start: float) -> list[tuple[float, int]]:
        """Each host's next report after ``start``, at its own jittered phase of the interval,
        so the reports spread evenly over the interval instead of coming all at once."""
        slot = self.interval_s / len(self.played)
        return [
            (start + (index + self.rng.random()) * slot, index) for index in range(len(self.played))
        ]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FleetRun:
    """What a run did: the fleet's size, the messages, how long it took."""

    hosts: int
    sites: int
    counts: Counts
    seconds: float


def play_fleet(
    broker: BrokerUrl,
    hosts: Sequence[SimHost],
    interval_s: int,
    stop: threading.Event,
    progress: Progress,
    once: bool = False,
    seed: int = 1,
) -> FleetRun:
    """Bring every host online with its status; then, unless ``once``, report every
    ``interval_s`` until ``stop`` and say offline. Returns once the broker acknowledged all."""
    if not 1 <= interval_s <= MAX_INTERVAL_S:
        raise FleetError(f"the interval must be 1 to {MAX_INTERVAL_S} seconds, not {interval_s}")
    started = time.monotonic()
    connection = FleetConnection(broker)
    connection.connect()
    try:
        player = FleetPlayer(hosts, connection, interval_s, seed)
        player.announce()
        if not once:
            _report_until(player, connection, stop, progress)
            player.goodbye()
        counts = connection.wait_answered(progress, stop if once else None)
    finally:
        connection.close()
    if counts.refused:
        raise FleetError(
            _(
                "the broker refused {refused} of {published} messages ({reason}): its ACL must "
                "let one client write every host's topics"
            ).format(refused=counts.refused, published=counts.published, reason=counts.refusal)
        )
    sites = len({host.site for host in hosts})
    return FleetRun(len(hosts), sites, counts, time.monotonic() - started)


def _report_until(
    player: FleetPlayer, connection: FleetConnection, stop: threading.Event, progress: Progress
) -> None:
    due = player.schedule(time.monotonic())
    heapq.heapify(due)
    tick = time.monotonic() + 1
    while not stop.is_set():
        while due[0][0] <= time.monotonic() and not stop.is_set():
            at, index = heapq.heappop(due)
            player.report(index)
            heapq.heappush(due, (at + player.interval_s, index))
        if time.monotonic() >= tick:
            tick = time.monotonic() + 1
            progress(connection.counts)
        stop.wait(max(0.0, min(due[0][0], tick) - time.monotonic()))
