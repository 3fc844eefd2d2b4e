"""``cpsfleet agent run``: inventory on a schedule, on every card change and on the controller's
command, published over MQTT.

The schedule is apscheduler's interval trigger on the wall clock: after a
laptop sleeps through one or more runs, the missed runs are coalesced into one
that starts as soon as it wakes. The first run comes after a random delay
within the splay, so a fleet restarted at once does not report at once.

At start the agent publishes one status, that first run's. A connection adds one only
when the broker may have lost the retained status: it kept no session for the agent (a
first connection, an outage longer than ``will_delay``, a broker that lost its state), an
inventory has been taken already (before it, the first run is still to come) and no
status waits in the outbox (that one is delivered on this connection). A blip, where the
broker resumes the session, adds nothing. Nor does PC/SC failing (or coming back) before
the first run has started: that run will see it.

A ``rescan`` command (``cpsfleet controller rescan``) that ``cpsfleet.schemas.commands.accept``
lets through runs a full inventory at once, in the scheduler's pool. Its status names the
command in ``answers``: the first inventory to *start* after a command arrives answers it,
whichever started it, so an inventory already running when the command came (and perhaps
from before the change the administrator wants to see) never does. Commands arriving while
one inventory runs and another waits are all answered by the waiting one: a burst of
commands costs two inventories, not one each.

On mutual TLS (``tls_ca`` and a client certificate) the agent acts only on commands the
controller signed with its commands certificate, issued by that CA (``command_ca``). On
plain MQTT, or TLS without a client certificate, there is no fleet CA to check a signer
against and unsigned commands are taken: plain MQTT is for loopback and tests, where
anyone local could publish anything anyway.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cryptography import x509

from cpsfleet.agent import __version__
from cpsfleet.agent.atr import classify_atr
from cpsfleet.agent.config import AgentConfig
from cpsfleet.agent.host import default_host_id
from cpsfleet.agent.outbox import Outbox
from cpsfleet.agent.privacy import pseudonymise
from cpsfleet.agent.scan import scan
from cpsfleet.agent.watcher import CardWatcher, Change
from cpsfleet.schemas.commands import CommandRefused, accept
from cpsfleet.schemas.documents import Event, EventCard
from cpsfleet.schemas.privacy import load_key
from cpsfleet.schemas.signing import load_cas
from cpsfleet.schemas.times import format_utc_micro

log = logging.getLogger(__name__)
# The ids of the last commands acted on: QoS 1 may deliver one twice. Also the most a
# status answers at once (the schema's maxItems for ``answers``).
REMEMBERED_COMMANDS = 64


class Publisher(Protocol):
    on_connected: Callable[[bool], None]
    on_command: Callable[[bytes, bool], None]

    def start(self, outbox: Outbox) -> None: ...

    def publish_status(self, document: dict[str, Any]) -> None: ...

    def publish_event(self, document: dict[str, Any]) -> None: ...

    def stop(self, timeout: float = 5) -> None: ...


def change_event(host_id: str, change: Change, at: datetime) -> Event:
    """The event of a change the watcher saw; a card's as far as its ATR tells, and none for
    a card that came and went unseen (the watcher knows only that it did)."""
    card = None
    if change.type.startswith("card_") and change.atr is not None:
        card_type = classify_atr(change.atr)
        card = EventCard(change.atr.hex().upper(), card_type.kind, card_type.is_cps)
    return Event(host_id, format_utc_micro(at), change.type, change.reader, card)


def at_once() -> DateTrigger:
    """A job's trigger to run once, at once: ``add_job``'s default, given as an object
    rather than by its name (which apscheduler looks up among its plug-ins)."""
    return DateTrigger(timezone=UTC)


def command_ca(config: AgentConfig) -> tuple[x509.Certificate, ...] | None:
    """The CAs one of which must have issued a command's signer: those of the fleet's CA
    file on mutual TLS (the one that issued this agent's own certificate, and during a
    rotation the next); None otherwise (unsigned commands taken)."""
    if not (config.broker_url.tls and config.tls_ca and config.tls_cert):
        return None
    return load_cas(Path(config.tls_ca))


class AgentDaemon:
    def __init__(self, config: AgentConfig, publisher: Publisher | None = None) -> None:
        from cpsfleet.agent.mqtt import FleetPublisher

        self.config = config
        self.host_id = config.host_id or default_host_id()
        self.publisher = publisher or FleetPublisher(
            config.broker_url,
            self.host_id,
            __version__,
            config.will_delay,
            backoff=(1.0, float(config.reconnect_max)),
            tls=config.tls,
        )
        self.command_ca = command_ca(config)
        self.scan_lock = threading.Lock()
        key_file = config.pseudonym_key_file
        self.pseudonym_key = load_key(key_file) if key_file else None
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.watcher = CardWatcher(self.on_changes)
        self.done_commands: deque[str] = deque(maxlen=REMEMBERED_COMMANDS)
        # Commands received and not yet answered; the network thread adds, inventories take.
        self.unanswered: deque[str] = deque(maxlen=REMEMBERED_COMMANDS)
        self.unanswered_lock = threading.Lock()
        self.outbox: Outbox | None = None
        self.started = threading.Event()  # an inventory has started since the agent did
        self.inventoried = threading.Event()  # and one has been queued

    def scan_and_publish(self) -> None:
        """One full inventory, published as the retained status, answering the commands
        received before it started. Never two at once."""
        with self.scan_lock:
            self._inventory(self._take_unanswered())

    def answer_commands(self) -> None:
        """The inventory a command asks for, unless one started since has answered it."""
        with self.scan_lock:
            answers = self._take_unanswered()
            if answers:
                self._inventory(answers)

    def _take_unanswered(self) -> list[str]:
        with self.unanswered_lock:
            answers = list(self.unanswered)
            self.unanswered.clear()
        return answers

    def _inventory(self, answers: list[str]) -> None:
        self.started.set()
        scanned = scan(site=self.config.site, host_id=self.host_id)
        status = replace(scanned, scan_interval_s=self.config.interval)
        if self.pseudonym_key is not None:
            status = pseudonymise(status, self.pseudonym_key)
        document = status.document()
        if answers:
            document["answers"] = answers
        self.publisher.publish_status(document)
        self.inventoried.set()

    def on_changes(self, changes: list[Change]) -> None:
        """Publish the events, then a fresh status. No events is PC/SC failing or coming back:
        the first run reports it if it has not started yet."""
        now = datetime.now(UTC)
        for change in changes:
            unseen = " (a card that came and went unseen)" if change.atr is None else ""
            log.info("%s in %s%s", change.type, change.reader, unseen)
            self.publisher.publish_event(change_event(self.host_id, change, now).document())
        if changes or self.started.is_set():
            self.scan_and_publish()

    def schedule(self, now: datetime) -> datetime:
        """Every interval from a first run within the splay; returns when the first run is."""
        first = now + timedelta(seconds=random.uniform(0, self.config.splay))
        self.scheduler.add_job(
            self.scan_and_publish,
            IntervalTrigger(seconds=self.config.interval, start_date=first, timezone=UTC),
            next_run_time=first,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            id="inventory",
        )
        return first

    def run(self, stop: threading.Event) -> None:
        self.outbox = outbox = Outbox(Path(self.config.state_dir) / "outbox.db")
        self.publisher.on_connected = self.on_connected
        self.publisher.on_command = self.on_command
        self.publisher.start(outbox)
        first = self.schedule(datetime.now(UTC))
        log.info("agent %s started; first inventory at %s", self.host_id, first.isoformat())
        self.scheduler.start()
        self.watcher.start()
        stop.wait()
        log.info("stopping")
        self.watcher.stop()
        self.scheduler.shutdown(wait=True)
        self.watcher.join(timeout=5)
        self.publisher.stop()
        outbox.close()

    def on_connected(self, session_present: bool) -> None:
        """After a (re)connection: a fresh inventory if the broker may have lost the retained
        one (see above). Called from the MQTT network thread, which must read a status's
        PUBACK before the outbox lets it go: a status pending here is delivered after this."""
        if session_present or not self.inventoried.is_set():
            return
        if self.outbox is not None and self.outbox.pending("status"):
            return
        log.info("the broker kept no session: a fresh inventory for its retained status")
        self.scheduler.add_job(self.scan_and_publish, at_once(), id="rescan", replace_existing=True)

    def on_command(self, payload: bytes, retained: bool) -> None:
        """Act on a command from the controller, or log why not. Called from the MQTT
        network thread, so the inventory itself goes to the scheduler's pool."""
        try:
            command = accept(payload, self.host_id, datetime.now(UTC), retained, self.command_ca)
        except CommandRefused as refused:
            log.warning("command ignored: %s", refused)
            return
        if command.id in self.done_commands:
            log.info("command %s delivered again: already done", command.id)
            return
        self.done_commands.append(command.id)
        checked = ", signature checked" if self.command_ca is not None else ""
        log.info(
            "command %s: %s, from %s%s", command.id, command.action, command.issued_by, checked
        )
        with self.unanswered_lock:
            self.unanswered.append(command.id)
        # A run of its own for each command, never skipped (a run skipped for a busy pool or
        # too many instances could leave the command waiting for the next interval); the
        # runs after the one that answers a burst find nothing left and return at once.
        self.scheduler.add_job(self.answer_commands, at_once(), misfire_grace_time=None)
