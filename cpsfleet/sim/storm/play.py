"""``play_storm``: a reconnect storm of a synthetic fleet, and the first contact before it."""

from __future__ import annotations

import math
import os
import resource
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from cpsfleet.i18n import _
from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.fleet.connection import STALL_S
from cpsfleet.sim.fleet.model import SimHost
from cpsfleet.sim.storm.pool import Pool
from cpsfleet.sim.storm.results import PhaseResult, Progress, StormResult
from cpsfleet.sim.storm.settings import DEFAULT_SETTINGS, FIRST_CONTACT, STORM, StormSettings
from cpsfleet.sim.storm.wills import WillWatch
from cpsfleet.sim.storm.worker import Job

SPARE_FILES = 64  # a worker's open files besides its agents' sockets


def play_storm(
    broker: BrokerUrl,
    hosts: Sequence[SimHost],
    seq_start: int | None,
    progress: Progress,
    settings: StormSettings = DEFAULT_SETTINGS,
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
    jobs = [Job(i, broker, tuple(hosts[i::count]), start, settings) for i in range(count)]
    pool = Pool(jobs, stop)
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
    pool: Pool,
    broker: BrokerUrl,
    hosts: Sequence[SimHost],
    settings: StormSettings,
    progress: Progress,
) -> tuple[PhaseResult, int]:
    """Play the first contact, then wait for the broker to publish the Wills."""
    with WillWatch(broker, {host.id for host in hosts}).watching() as watch:
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
            _(
                "{broker} is a TLS broker: the storm plays plain mqtt:// brokers only "
                "(each agent would need its own client certificate)"
            ).format(broker=broker)
        )
    if not hosts:
        raise FleetError(_("the storm needs at least 1 agent"))
    count = min(settings.workers or os.cpu_count() or 1, len(hosts))
    need = math.ceil(len(hosts) / count) + SPARE_FILES
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < need:
        raise FleetError(
            _(
                "each of the {count} workers needs {need} open files, but the hard limit is "
                "{hard}: raise it (ulimit -Hn, LimitNOFILE=) or add --workers"
            ).format(count=count, need=need, hard=hard)
        )
    try:
        socket.create_connection((broker.host, broker.port), timeout=5).close()
    except OSError as error:
        raise FleetError(f"cannot reach the broker at {broker}: {error}") from None
    return count
