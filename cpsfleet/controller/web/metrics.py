"""The controller's Prometheus metrics, served at ``/metrics``.

The fleet's gauges and the message counters are read from the database at each
scrape: a read-only connection opened and closed every time, so a scrape never
holds up the writer thread (WAL) and always sees the latest commit. The ingest
latency is measured in this process. Each ``Metrics`` owns its registry, so
several controllers in one process do not clash over metric names.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.web import series

log = logging.getLogger(__name__)
Row = tuple[Any, ...]

PREFIX = "cpsfleet_"
HELP = {
    "hosts": "Hosts by site (empty when unknown) and presence: offline when the agent said so, "
    "its Last Will did, or it has been silent too long; unknown when never told.",
    "readers": "PC/SC readers the hosts of each site last reported.",
    "cards": "Cards in readers now, by site and kind.",
    "cards_expiring": "CPS cards in readers now, by whole days until their first certificate "
    "expires.",
    "findings": "Open findings by rule and severity.",
    "messages": "Agent messages the controller handled, by outcome, since the database began.",
    "ingest_latency_seconds": "Time from a message's arrival at the controller to its commit.",
    "database_up": "Whether the last scrape could read the controller database.",
    "notification_failures": (
        "Messages of alerts an alert channel refused or could not be sent (each is tried "
        "again later; see `cpsfleet controller alerts`)."
    ),
    "alert_channels_failing": "Alert channels whose last delivery failed.",
    "evaluation_failures": (
        "Evaluations of a host that failed on what it sent (each gives an evaluation_failed "
        "finding; the other hosts are evaluated as usual)."
    ),
}
PRESENCES = ("online", "offline", "unknown")
OUTCOMES = (
    "accepted",
    "stale",
    "rejected",
    "duplicate",
    "failed",
)  # the counters messages_<outcome>
EVALUATION_FAILURES = "evaluation_failures"  # its counter's name in the database
NOTIFICATION_FAILURES = "notification_failures"  # idem
# (bucket, last whole day left it holds), in order: a card goes in the first that holds it.
EXPIRY_BUCKETS: tuple[tuple[str, float], ...] = (
    ("expired", -1),
    ("0-14", 14),
    ("15-30", 30),
    ("31-60", 60),
    ("61-90", 90),
    ("91-180", 180),
    ("181-365", 365),
    ("366+", math.inf),
)
NO_EXPIRY = "unknown"  # a CPS card without a readable certificate date
# From a presence stored in well under a millisecond to a writer held up by a busy disk.
INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Metrics:
    """The metrics of the controller whose database is at ``database``.

    ``observe_ingest`` is for the writer thread, ``render`` for the web server's. The per-card
    series name holders only with ``holder_names`` (``ControllerSettings.metrics_names``).
    """

    def __init__(
        self,
        database: Path | str,
        now: Callable[[], datetime] = utc_now,
        holder_names: bool = False,
    ) -> None:
        self.fleet = FleetReader(Path(database), now, holder_names)
        self.registry = CollectorRegistry()
        self._ingest = Histogram(
            PREFIX + "ingest_latency_seconds",
            HELP["ingest_latency_seconds"],
            buckets=INGEST_BUCKETS,
            registry=self.registry,
        )

    def observe_ingest(self, seconds: float) -> None:
        """Count one stored message that took ``seconds`` from arrival to commit."""
        # Arrival is a wall-clock time: a clock stepped back can make the difference negative.
        self._ingest.observe(max(seconds, 0.0))

    def render(self) -> tuple[bytes, str]:
        """The exposition text of a scrape, and its content type: the fleet-wide metrics and
        this process's through prometheus_client, the per-card and per-host series written
        by ``series`` (all from one read of the database)."""
        families, per_item = self.fleet.read()
        body = generate_latest(Collected(families)) + generate_latest(self.registry)
        return body + series.text(per_item).encode(), CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Collected:
    """Metric families already read, as prometheus_client's exposition takes them."""

    families: list[Metric]

    def collect(self) -> list[Metric]:
        return self.families


class FleetReader:
    """The fleet as the database holds it at scrape time."""

    def __init__(self, path: Path, now: Callable[[], datetime], holder_names: bool) -> None:
        self.path = path
        self.now = now
        self.holder_names = holder_names

    def read(self) -> tuple[list[Metric], list[series.Family]]:
        """The fleet-wide families and the per-card and per-host series, from one read
        transaction; without the database, only ``database_up`` 0."""
        try:
            with Store.open_readonly(self.path) as store:
                counts = fleet.counts(store.database, math.ceil(self.now().timestamp()))
        except (StoreError, sqlite3.Error) as error:
            log.debug("metrics without the database: %s", error)
            return [_database_up(0)], []
        per_item = [
            *series.card_families(counts, self.holder_names),
            *series.host_families(counts),
        ]
        return [*_fleet_families(counts), _database_up(1)], per_item


def expiry_bucket(days_left: int | None) -> str:
    """The ``days_to_expiry`` label for a card with ``days_left`` whole days (negative: expired)."""
    if days_left is None:
        return NO_EXPIRY
    return next(bucket for bucket, last_day in EXPIRY_BUCKETS if days_left <= last_day)


def _fleet_families(counts: fleet.Counts) -> list[Metric]:
    return [
        _hosts(counts.hosts),
        _gauge("readers", ["site"], counts.readers),
        _gauge("cards", ["site", "kind"], counts.cards),
        _expiring(counts.expiry),
        _gauge("findings", ["rule", "severity"], counts.findings),
        *_counters(counts.counters),
        GaugeMetricFamily(
            PREFIX + "alert_channels_failing",
            HELP["alert_channels_failing"],
            value=counts.channels_failing,
        ),
    ]


def _gauge(name: str, labels: list[str], rows: list[Row]) -> GaugeMetricFamily:
    """A gauge from rows of its label values followed by the value."""
    family = GaugeMetricFamily(PREFIX + name, HELP[name], labels=labels)
    for *values, value in rows:
        family.add_metric(values, value)
    return family


def _hosts(rows: list[Row]) -> GaugeMetricFamily:
    """Every presence of every site, zeros included: a site gone offline shows online 0."""
    counts = {(site, presence): hosts for site, presence, hosts in rows}
    sites = sorted({site for site, _ in counts})
    every = [
        (site, presence, counts.get((site, presence), 0))
        for site in sites
        for presence in PRESENCES
    ]
    return _gauge("hosts", ["site", "presence"], every)


def _expiring(rows: list[Row]) -> GaugeMetricFamily:
    counts = dict.fromkeys([*(bucket for bucket, _ in EXPIRY_BUCKETS), NO_EXPIRY], 0)
    for days_left, cards in rows:
        counts[expiry_bucket(days_left)] += cards
    return _gauge("cards_expiring", ["days_to_expiry"], list(counts.items()))


def _counters(counters: dict[str, int]) -> list[CounterMetricFamily]:
    # prometheus_client names the samples cpsfleet_<name>_total.
    messages = CounterMetricFamily(PREFIX + "messages", HELP["messages"], labels=["outcome"])
    for outcome in OUTCOMES:
        messages.add_metric([outcome], counters.get(f"messages_{outcome}", 0))
    return [
        messages,
        *(
            CounterMetricFamily(PREFIX + name, HELP[name], value=counters.get(name, 0))
            for name in (EVALUATION_FAILURES, NOTIFICATION_FAILURES)
        ),
    ]


def _database_up(up: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + "database_up", HELP["database_up"], value=up)
