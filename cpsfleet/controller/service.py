"""``cpsfleet controller run``: receive the fleet's documents, store them, evaluate the rules.

A process of its own holds the MQTT session (``cpsfleet.controller.intake.receiver``) and passes on
what arrives; one writer thread owns the SQLite connection, stores what has arrived in
one transaction, re-evaluates the hosts whose inventory or presence changed, and
acknowledges. At start it evaluates the whole
fleet; then, every ``evaluate_every`` seconds, the hosts whose findings time alone may
have changed (``cpsfleet.controller.rules.due``: expiries, silences, working hours).

Each evaluation updates the alerts and mirrors them on the MQTT alert topic;
only the periodic run notifies, so one run makes one message per channel. Sending goes
through a thread of its own: a slow mail server must not hold up the intake. The sender
says what each channel answered, and the writer records it: an alert counts as notified
on a channel only once the channel accepted it; a channel that refused is tried again
after a delay that doubles (``cpsfleet.controller.alerts.book``) and then gets what it
missed.

Several controllers may share one PostgreSQL database and the intake (``share_group``,
``cpsfleet.controller.cluster``): each stores and evaluates what it receives, and mirrors
the alerts its evaluations change; the one that leads alone runs the periodic evaluation,
sends the notifications, rebuilds the retained alert topic and prunes. A controller that
starts leading evaluates the whole fleet first, as a lone controller does at start.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cpsfleet import i18n
from cpsfleet.controller.alerts.book import AlertBook, Batch, Key
from cpsfleet.controller.alerts.notify import Notifier
from cpsfleet.controller.cluster import Leadership, hosts_locked, transient
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.batch import store_batch
from cpsfleet.controller.intake.receiver import Message, Receiver, Session
from cpsfleet.controller.model import CARD_RULES, Finding, HostView
from cpsfleet.controller.rules.due import hosts_due
from cpsfleet.controller.rules.findings import (
    EVALUATION_FAILED,
    card_resolution,
    evaluate_fleet,
    evaluation_failed,
)
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web import audit
from cpsfleet.controller.web.app import create_app
from cpsfleet.controller.web.metrics import EVALUATION_FAILURES, NOTIFICATION_FAILURES, Metrics
from cpsfleet.controller.web.server import DashboardServer
from cpsfleet.schemas.topics import shared

log = logging.getLogger(__name__)
T = TypeVar("T")
SESSION_EXPIRY_S = 24 * 3600
PRUNE_EVERY = timedelta(hours=1)
# The audit trail loses its entries older than [dashboard] audit_days: at start, then daily.
AUDIT_PURGE_EVERY_S = 86400
# At most this many messages per transaction: enough to amortise the commit, few enough that
# a batch is stored, evaluated and acknowledged well within a second.
BATCH_MAX = 1000
RECEIVE_MAXIMUM = 2 * BATCH_MAX
# The whole fleet is evaluated this many hosts at a time.
EVALUATION_CHUNK = 1000
# More new or resolved findings than this in one evaluation are logged as counts.
LOGGED_FINDINGS = 50
# Several controllers: a batch (or its evaluation) that PostgreSQL gave up for another
# controller's transaction is run again, this many times at most, after a growing pause.
ATTEMPTS = 8
RETRY_PAUSE_S = 0.05


class WorkerError(RuntimeError):
    """A thread of the controller stopped; the message says which."""


@dataclass(frozen=True)
class Delivery:
    """A batch for one channel, from the writer to the alert sender."""

    channel: str
    batch: Batch


@dataclass(frozen=True)
class Answer:
    """What a channel said of a delivery, from the alert sender back to the writer: None
    once it accepted it, else what went wrong."""

    channel: str
    batch: Batch
    at: datetime
    error: str | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Controller:
    def __init__(
        self, settings: ControllerSettings, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        """``clock``: the controller's time (the rules', the alerts', what it stores as
        received); another clock than the system's plays days in minutes (tests/test_week.py)."""
        self.settings = settings
        self.clock = clock
        self.outbox: queue.Queue[Delivery | None] = queue.Queue()
        self.answers: queue.Queue[Answer] = queue.Queue()
        self.in_flight: set[str] = set()  # channels with a delivery not answered yet
        self.retry_at: datetime | None = None  # when a channel that failed may be tried again
        # time.monotonic() when what was due was last handed to the sender (what a test of
        # the whole controller waits on before it reads what was sent).
        self.dispatched_at = 0.0
        self.receiver: Receiver | None = None  # the MQTT session, once running
        self.notifier = Notifier(settings.alerts, zone=settings.thresholds.zone)
        self.last_prune = datetime.min.replace(tzinfo=UTC)
        self.book: AlertBook | None = None
        self.last_evaluated: datetime | None = None  # the last whole-fleet or periodic run
        # The roster's idNats at the last periodic run: a roster imported since then changes
        # who is missing on any host, so the next run evaluates every host.
        self.roster_evaluated: frozenset[str] | None = None
        self.metrics = Metrics(settings.database, holder_names=settings.metrics_names)
        self.dashboard: DashboardServer | None = None
        self.workers: dict[str, threading.Thread] = {}  # what _check_workers watches, by name
        self.next_audit_purge = 0.0  # time.monotonic() of the next purge of the audit trail
        self.leadership = Leadership(settings.database, settings.node or "controller")
        self.leading = False  # what the writer last acted on (Leadership.check says now)
        self.stored = 0  # messages this controller stored (accepted) since it started

    def _session(self) -> Session:
        settings = self.settings
        return Session(
            broker=settings.broker_url,
            tls=settings.tls if settings.broker_url.tls else None,
            client_id=settings.client_id,
            subscriptions=shared(settings.share_group),
            session_expiry_s=SESSION_EXPIRY_S,
            # Two batches: the next one arrives while one is being stored.
            receive_maximum=RECEIVE_MAXIMUM,
            batch_max=BATCH_MAX,
            log_level=logging.getLogger().getEffectiveLevel(),
        )

    def run(self, stop: threading.Event) -> None:
        store = Store(self.settings.database)
        store.pseudonym_key = self.settings.pseudonym_key
        self.book = AlertBook(store.database, self.settings.alerts)
        try:
            self.book.register_channels(self.notifier.channels, self.clock())
            if self.settings.dashboard.enabled:
                app = create_app(self.settings, self.metrics)
                self.dashboard = DashboardServer(self.settings.dashboard, app)
        except BaseException:
            store.close()
            raise
        sender = threading.Thread(target=self._send, name="alert-sender", daemon=True)
        self.workers = {"the alert sender": sender}
        sender.start()
        try:
            if self.dashboard is not None:
                self.dashboard.start()
                self.workers["the dashboard"] = self.dashboard.thread
            self._contained(lambda: self.record_configuration(store), "recording the configuration")
            self.receiver = Receiver(self._session())
            self.notifier.publisher = self.receiver
            self._serve(store, stop, self.receiver)
        finally:
            self.leadership.close()
            if self.settings.share_group is not None:
                log.info("%s stored %d messages", self.settings.node, self.stored)
            if self.dashboard is not None:
                self.dashboard.stop()
            self.outbox.put(None)
            sender.join(timeout=30)
            self._contained(lambda: self._record_answers(store), "recording the deliveries")
            if self.receiver is not None:
                self.receiver.stop()
            store.close()

    def _send(self) -> None:
        """The alert sender: each delivery to its channel, and the channel's answer back.
        ``deliver`` says a failure rather than raising; should this thread end anyway, the
        controller stops (``_check_workers``). The messages are in the controller's language
        (set in this thread: a context variable does not cross threads)."""
        with i18n.use(self.settings.spoken):
            while (delivery := self.outbox.get()) is not None:
                error = self.notifier.deliver(delivery.channel, delivery.batch)
                self.answers.put(Answer(delivery.channel, delivery.batch, self.clock(), error))

    def _dispatch(self, now: datetime) -> None:
        """Hand the sender what is due on each channel not busy or waiting after a failure."""
        assert self.book is not None
        states = {channel.id: channel for channel in self.book.channels()}
        waiting = []
        for ref in self.notifier.channels:
            state = states.get(ref.id)
            if ref.id in self.in_flight:
                continue
            if state is not None and state.next_attempt_at and not state.ready(now):
                waiting.append(state.next_attempt_at)  # ready() is false only with a time
                continue
            batch = self.book.pending(now, ref.id)
            if batch.due:
                self.in_flight.add(ref.id)
                self.outbox.put(Delivery(ref.id, batch))
        self.retry_at = min(waiting, default=None)
        self.dispatched_at = time.monotonic()

    def _record_answers(self, store: Store) -> None:
        """Record what the channels answered: delivered, or failed and when to try again."""
        assert self.book is not None
        while True:
            try:
                answer = self.answers.get_nowait()
            except queue.Empty:
                return
            self.in_flight.discard(answer.channel)
            if answer.error is None:
                self.book.delivered(answer.channel, answer.batch, answer.at)
                continue
            retry = self.book.failed(answer.channel, answer.error, answer.at)
            store.increment(NOTIFICATION_FAILURES)
            name = self.notifier.name_of(answer.channel)
            log.warning("alerts %s will be tried again at %s", name, retry)
            self.retry_at = retry if self.retry_at is None else min(self.retry_at, retry)

    def _check_workers(self) -> None:
        """A thread of the controller that stopped stops the controller, loudly: its
        service manager then starts it again, rather than it running half dead."""
        for name, thread in self.workers.items():
            if not thread.is_alive():
                raise WorkerError(f"{name} stopped: the controller stops so that it is restarted")

    def _serve(self, store: Store, stop: threading.Event, receiver: Receiver) -> None:
        next_evaluation = time.monotonic() + self.settings.evaluate_every
        while not stop.is_set():
            self._check_workers()
            leading = self._lead(store)
            if leading and time.monotonic() >= self.next_audit_purge:
                self.next_audit_purge = time.monotonic() + AUDIT_PURGE_EVERY_S
                self._contained(lambda: self.purge_audit(store), "purging the audit trail")
            batch = receiver.next_batch(timeout=0.5)
            if batch:
                self.handle_batch(store, self._on_clock(batch))
            if receiver.fresh_session.is_set() and self.book is not None:
                receiver.fresh_session.clear()  # rebuild the retained alert topic
                if leading:
                    self.notifier.publish(self.book.firing())
            self._contained(lambda: self._record_answers(store), "recording the deliveries")
            if not leading:
                continue
            if time.monotonic() >= next_evaluation:
                self._evaluate_contained(lambda: self.evaluate_due(store))
                next_evaluation = time.monotonic() + self.settings.evaluate_every
            elif self.retry_at is not None and self.clock() >= self.retry_at:
                self.retry_at = None
                self._contained(lambda: self._dispatch(self.clock()), "sending the alerts")

    def _lead(self, store: Store) -> bool:
        """Whether this controller leads (``Leadership.check``); one that starts leading
        takes the periodic work over (``_take_over``)."""
        leading = self.leadership.check()
        if leading and not self.leading:
            self.leading = True
            self._take_over(store)
        elif self.leading and not leading:
            self.leading = False
        return leading

    def _take_over(self, store: Store) -> None:
        """Evaluate the whole fleet, which notifies what is due and prunes, as at a lone
        controller's start; among several, rebuild the retained alert topic too: the last
        leader may have died halfway through mirroring an evaluation."""
        self.last_evaluated = self.roster_evaluated = None
        self.last_prune = datetime.min.replace(tzinfo=UTC)
        self.next_audit_purge = 0.0
        self._evaluate_contained(lambda: self.evaluate(store))
        book = self.book
        if self.settings.share_group is not None and book is not None:
            self._contained(
                lambda: self.notifier.publish(book.firing()), "rebuilding the alert topic"
            )

    def record_configuration(self, store: Store) -> list[str]:
        """Record in the audit trail which parts of the configuration changed since the last
        start that recorded one (all of them the first time): their digests, never their
        values. Returns the parts that changed."""
        digests = self.settings.digests()
        people = People(store.database)
        last = people.audit(action="config.change", limit=1)
        before = last[0].detail.get("parts", {}) if last else {}
        changed = [name for name, digest in digests.items() if before.get(name) != digest]
        if changed:
            detail = {"changed": changed, "parts": digests, "since": last[0].id if last else None}
            people.record(_utc_now(), "controller", "config", "config.change", "", "ok", detail)
            log.info("configuration changed since the last start: %s", ", ".join(changed))
        return changed

    def purge_audit(self, store: Store) -> int:
        """Forget the audit entries older than ``audit_days``, on the system's clock: the
        dashboard stamps them with it, and the table keeps any entry younger than a day."""
        purged = audit.purge(People(store.database), _utc_now(), self.settings.dashboard.audit_days)
        if purged:
            log.info(
                "the audit trail forgot %d entries older than %d days",
                purged,
                self.settings.dashboard.audit_days,
            )
        return purged

    def _on_clock(self, messages: list[Message]) -> list[Message]:
        """Received times on the controller's clock (the receiving process keeps the
        system's)."""
        if self.clock is _utc_now:
            return messages
        shift = self.clock() - datetime.now(UTC)
        return [replace(message, received_at=message.received_at + shift) for message in messages]

    @staticmethod
    def _contained(work: Callable[[], object], what: str) -> None:
        """Run ``work`` of the writer; a failure is logged and tried again later: the
        database busy or full must not stop the intake."""
        try:
            work()
        except Exception:
            log.exception("%s failed: the next run will try again", what)

    @staticmethod
    def _evaluate_contained(evaluation: Callable[[], None]) -> None:
        """Run a whole-fleet evaluation; what it cannot evaluate is each host's own finding
        (``_evaluate_alone``), and anything else is logged and tried again at the next run:
        nothing stored may stop the controller, at start or later."""
        try:
            evaluation()
        except Exception:
            log.exception("the evaluation failed: the next one will try again")

    def handle(self, store: Store, message: Message) -> None:
        self.handle_batch(store, [message])

    def handle_batch(self, store: Store, messages: list[Message]) -> None:
        """Store messages in one transaction, evaluate the hosts they concern, then acknowledge.

        One commit for the batch is what makes thousands of documents a second possible. A
        message whose storing fails is rolled back alone, logged, counted and acknowledged:
        kept unacknowledged, it would come back after every restart and stop the intake each
        time. Failures are rare, so the batch is first stored as a whole; only when one fails
        is it stored again message by message, each in a savepoint of its own.
        """
        try:
            batch = _retried(lambda: store_batch(store, messages, isolated=False), "storing")
        except Exception as error:
            if transient(error):
                raise  # given up after ATTEMPTS: restarted, the controller gets them again
            log.warning(
                "storing a batch of %d failed: storing it message by message", len(messages)
            )
            batch = _retried(lambda: store_batch(store, messages, isolated=True), "storing")
        stored = self.clock()
        self.stored += len(batch.accepted)
        for message in batch.accepted:
            self.metrics.observe_ingest((stored - message.received_at).total_seconds())
        if batch.moved:
            self._contained(lambda: self._republish_moved(batch.moved), "moving alert topics")
        if hosts := batch.hosts:
            try:
                _retried(lambda: self.evaluate(store, hosts), "evaluating")
            except Exception:  # find the host at fault: the others are evaluated as usual
                log.exception("failed to evaluate %d host(s): one by one", len(hosts))
                for host_id in hosts:
                    self._evaluate_alone(store, host_id, stored)
        self._acknowledge(messages)

    def _republish_moved(self, moved: list[tuple[str, str]]) -> None:
        """The retained alert topics of cards seen on another host: the alert's topic names
        the host, so the old one is cleared and the alert retained on the new one."""
        assert self.book is not None
        for serial, left in moved:
            alerts = self.book.firing_about(serial, CARD_RULES)
            gone = [replace(alert, host_id=left, state="resolved") for alert in alerts]
            self.notifier.publish([*gone, *alerts])

    def _acknowledge(self, messages: list[Message]) -> None:
        if self.receiver is not None:
            self.receiver.ack(messages)

    def evaluate(self, store: Store, host_ids: list[str] | None = None) -> None:
        """Run the rules over ``host_ids``, or over the whole fleet and then notify."""
        now = self.clock()
        if host_ids is not None:
            self._evaluate_hosts(store, host_ids, now)
            return
        self._evaluate_fleet(store, None, now)

    def evaluate_due(self, store: Store) -> None:
        """The periodic run: the hosts whose findings time alone may have changed since the
        last one (``rules.due``), or every host when that cannot be narrowed down or when a
        roster was imported since (who is missing may change on any host)."""
        now = self.clock()
        since = self.last_evaluated
        due = None if since is None else hosts_due(store, since, now, self.settings.thresholds)
        if store.roster_ids() != self.roster_evaluated:  # imported since: anywhere
            due = None
        self._evaluate_fleet(store, None if due is None else sorted(due), now)

    def _evaluate_fleet(self, store: Store, host_ids: list[str] | None, now: datetime) -> None:
        """Evaluate ``host_ids`` (every host if None), ``EVALUATION_CHUNK`` at a time so that
        memory holds a chunk's views, not 50,000 hosts'; then notify what is due."""
        started = time.perf_counter()
        if host_ids is None:  # read before: a roster imported meanwhile is seen next time
            self.roster_evaluated = store.roster_ids()
        hosts = store.host_ids() if host_ids is None else host_ids
        with _paused_gc():
            self._evaluate_chunks(store, hosts, host_ids is None, now)
        scope = "every host" if host_ids is None else "the hosts due"
        log.info(
            "evaluated %d hosts (%s) in %.2f s", len(hosts), scope, time.perf_counter() - started
        )
        self.last_evaluated = now
        self._dispatch(now)
        if now - self.last_prune >= PRUNE_EVERY:
            store.prune_history(self.settings.history_days, now)
            self.last_prune = now

    def _evaluate_chunks(
        self, store: Store, host_ids: list[str], every_host: bool, now: datetime
    ) -> None:
        for start in range(0, len(host_ids), EVALUATION_CHUNK):
            chunk = host_ids[start : start + EVALUATION_CHUNK]
            try:
                # Every host: a chunk is all the ids between its first and last.
                with hosts_locked(store.database, chunk):
                    views = (
                        store.host_views_between(chunk[0], chunk[-1])
                        if every_host
                        else store.host_views(chunk)
                    )
                    self._evaluate_views(store, views, now)
            except Exception:  # find the host at fault: the others are evaluated as usual
                log.exception("evaluating %d hosts failed: evaluating them one by one", len(chunk))
                for host_id in chunk:
                    self._evaluate_alone(store, host_id, now)

    def _evaluate_alone(self, store: Store, host_id: str, now: datetime) -> None:
        """Evaluate one host; if even that fails, its finding says so and why."""
        try:
            with hosts_locked(store.database, [host_id]):
                self._evaluate_views(store, store.host_views([host_id]), now, [host_id])
        except Exception as error:
            if transient(error):  # another controller's transaction: not the host's fault
                log.warning("evaluating host %s gave way to another controller: %s", host_id, error)
                return
            log.exception("evaluating host %s failed", host_id)
            with i18n.use(self.settings.spoken):
                failed = evaluation_failed(host_id, f"{type(error).__name__}: {error}")
            try:
                self._record_findings(store, [failed], now, [host_id])
            except Exception:  # the database itself: the next evaluation tries again
                log.exception("recording that host %s could not be evaluated failed", host_id)

    def _evaluate_hosts(self, store: Store, host_ids: list[str], now: datetime) -> None:
        with hosts_locked(store.database, host_ids):
            self._evaluate_views(store, store.host_views(host_ids), now, host_ids)

    def _evaluate_views(
        self,
        store: Store,
        views: list[HostView],
        now: datetime,
        host_ids: list[str] | None = None,
    ) -> None:
        """Make the rules' findings over ``views`` the findings and alerts of ``host_ids``
        (the hosts of the views if None). The findings' messages and the reasons alerts
        resolve are in the controller's language, and stored so."""
        scope = [view.id for view in views] if host_ids is None else host_ids
        thresholds = self.settings.thresholds
        with i18n.use(self.settings.spoken):
            findings = evaluate_fleet(views, now, thresholds)
            by_id = {view.id: view for view in views}

            def reason(key: Key) -> str | None:  # asked of the alerts that resolve only
                rule, host_id, subject = key
                view = by_id.get(host_id)
                if view is None:
                    return None
                return card_resolution(view, rule, subject, now, thresholds)

            self._record_findings(store, findings, now, scope, reason)

    def _record_findings(
        self,
        store: Store,
        findings: list[Finding],
        now: datetime,
        scope: list[str],
        reasons: Callable[[Key], str | None] | None = None,
    ) -> None:
        """Make ``findings`` those of the hosts of ``scope``, with their alerts (``reasons``:
        why an alert that resolves does, when the rules can tell)."""
        assert self.book is not None
        failures = sum(1 for finding in findings if finding.rule == EVALUATION_FAILED)
        with store.database.atomic():
            added, resolved = store.replace_findings(findings, now, scope)
            changed = self.book.update(findings, now, scope, reasons).changed
            if failures:
                store.increment(EVALUATION_FAILURES, failures)
        self.notifier.publish(changed)
        _log_changes(added, resolved)


def _retried(work: Callable[[], T], what: str) -> T:
    """``work``'s result, running it again when PostgreSQL gave it up for another
    controller's transaction (a deadlock, a serialization failure), ``ATTEMPTS`` times in
    all; the last failure is raised."""
    for attempt in range(1, ATTEMPTS):
        try:
            return work()
        except Exception as error:
            if not transient(error):
                raise
            log.warning("%s gave way to another controller (%s): again", what, error)
            time.sleep(RETRY_PAUSE_S * attempt)
    return work()


@contextmanager
def _paused_gc() -> Iterator[None]:
    """The cycle collector off: evaluating the fleet makes millions of objects (views, findings,
    rows) that hold no cycles and that reference counting frees; the collector would walk
    them again and again as they pile up (a quarter of a whole-fleet evaluation's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _log_changes(added: list[Finding], resolved: list[Finding]) -> None:
    if len(added) + len(resolved) > LOGGED_FINDINGS:
        log.info("%d new finding(s), %d resolved", len(added), len(resolved))
        return
    for finding in added:
        log.info(
            "finding %s [%s] %s: %s",
            finding.rule,
            finding.severity,
            finding.host_id,
            finding.message,
        )
    for finding in resolved:
        log.info("resolved %s %s %s", finding.rule, finding.host_id, finding.subject)
