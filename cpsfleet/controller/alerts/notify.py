"""Delivery of alerts: one message per run to each channel, and the MQTT alert topic.

``render`` makes one message of a whole ``Batch`` (40 expiring cards are one
e-mail, not 40); ``Notifier.deliver`` sends a channel its batch through apprise
(e-mail, Teams, Slack, webhooks...) and says whether the channel accepted it, and
if not, what went wrong, instead of raising: a channel that is down must not stop
the controller, and its alerts stay due on it (``cpsfleet.controller.alerts.book``).

The MQTT alert topic holds one retained message (QoS 1) per firing alert::

    <prefix>/<rule>/<host_id>/<subject>
    cpsfleet/v1/alerts/card_expiring/ws-lyon-07/8001234567

The subject "" (a finding about the host itself) is "_"; in a subject, "%",
"/", "+", "#" and NUL are percent-encoded, and a subject that is "_" itself
is "%5F". The payload (a ``cpsfleet.alert`` document, version 1)::

    {"schema": "cpsfleet.alert", "version": 1, "state": "firing",
     "rule": "card_expiring", "severity": "warning", "host_id": "ws-lyon-07",
     "site": "Lyon Part-Dieu", "subject": "8001234567",
     "message": "CPS card 8001234567 ... expires on Jan 10, 2027 (44 days left): renew it",
     "started_at": "2026-11-27T20:56:10Z"}

``site`` may be null; ``started_at`` is an ISO 8601 UTC time. The keys and the tokens (state,
rule, severity) are English; ``message`` is the finding's, in the controller's language, as
are the messages sent to the channels (``render``: in the current language, dates in the
fleet's time zone). When the alert
resolves, an empty retained message clears the topic. The topic mirrors the
alerts' state, not who is told: silenced, acknowledged and below-``min_severity``
alerts are published too, and their subscribers decide what to show.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import UTC, tzinfo
from typing import Any, Protocol

import apprise

from cpsfleet.controller.alerts.book import Alert, AlertError, AlertSettings, Batch, ChannelRef
from cpsfleet.controller.model import SEVERITIES
from cpsfleet.controller.rules.words import local_day, local_moment
from cpsfleet.i18n import N_, _, ngettext
from cpsfleet.schemas import ALERT_SCHEMA, ALERT_VERSION
from cpsfleet.schemas.words import WORDS

log = logging.getLogger(__name__)


# The apprise type (colour, icon) of a message: its most severe firing alert.
NOTIFY_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
}
SPECIAL_SUBJECTS = {"": "_", "_": "%5F"}
ESCAPES = {char: f"%{ord(char):02X}" for char in "%/+#\x00"}
HINT = N_(
    "Acknowledge with `cpsfleet controller ack`, silence with `cpsfleet controller silence add`."
)
# The section headings, one per severity, then the resolved alerts'.
HEADINGS = {
    "critical": N_("CRITICAL"),
    "warning": N_("WARNING"),
    "info": N_("INFO"),
    "resolved": N_("RESOLVED"),
}
# The severities as people read them, in a resolved alert's line.


def render(batch: Batch, zone: tzinfo = UTC) -> tuple[str, str]:
    """The title and body of the one message telling ``batch.due``, grouped by severity, in
    the current language; dates in the fleet's time zone ``zone``."""
    counts = (
        (len(batch.fired), ngettext("{count} new", "{count} new", len(batch.fired))),
        (
            len(batch.repeated),
            ngettext("{count} still firing", "{count} still firing", len(batch.repeated)),
        ),
        (
            len(batch.resolved),
            ngettext("{count} resolved", "{count} resolved", len(batch.resolved)),
        ),
    )
    summary = ", ".join(what.format(count=count) for count, what in counts if count)
    sections = [
        _section(_(HEADINGS[level]), _firing_lines(batch, level, zone)) for level in SEVERITIES
    ]
    resolved = [_resolved_line(alert, zone) for alert in _ordered(batch.resolved)]
    heading = HEADINGS["resolved"]  # not in the call: an older Babel would extract the key
    sections.append(_section(_(heading), resolved))
    body = "\n\n".join([f"{summary}.", *filter(None, sections), _(HINT)])
    return _("cpsfleet alerts: {summary}").format(summary=summary), body


def _firing_lines(batch: Batch, severity: str, zone: tzinfo) -> list[str]:
    alerts = [(alert, _("new")) for alert in batch.fired]
    alerts += [
        (alert, _("firing since {day}").format(day=_day(alert, zone))) for alert in batch.repeated
    ]
    chosen = [(alert, tag) for alert, tag in alerts if alert.severity == severity]
    return [_line(alert, tag) for alert, tag in sorted(chosen, key=lambda pair: _place(pair[0]))]


def _resolved_line(alert: Alert, zone: tzinfo) -> str:
    severity = _(WORDS.get(alert.severity, alert.severity))
    since = _day(alert, zone)
    if alert.resolved_at:
        when = local_moment(alert.resolved_at, zone)
        tag = _("{severity}, firing since {day}, resolved {when}").format(
            severity=severity, day=since, when=when
        )
    else:
        tag = _("{severity}, firing since {day}, resolved now").format(severity=severity, day=since)
    if alert.resolution:
        tag = _("{tag}: {why}").format(tag=tag, why=alert.resolution)
    return _line(alert, tag)


def _section(heading: str, lines: list[str]) -> str:
    return f"{heading} ({len(lines)})\n" + "\n".join(lines) if lines else ""


def _line(alert: Alert, tag: str) -> str:
    where = ", ".join(filter(None, (alert.host_id, alert.site, alert.subject)))
    return f"- {where}: {alert.message} [{alert.rule}, {tag}]"


def _ordered(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=_place)


def _place(alert: Alert) -> tuple[str, str, str, str]:
    return alert.site or "", alert.host_id, alert.rule, alert.subject


def _day(alert: Alert, zone: tzinfo) -> str:
    return local_day(alert.started_at, zone)


def notify_type(batch: Batch) -> apprise.NotifyType:
    """Failure if a critical alert fires, warning for a warning..., success for resolutions only."""
    firing = {alert.severity for alert in batch.fired + batch.repeated}
    worst = next((severity for severity in SEVERITIES if severity in firing), None)
    return apprise.NotifyType.SUCCESS if worst is None else NOTIFY_TYPES[worst]


def alert_topic(prefix: str, alert: Alert) -> str:
    subject = SPECIAL_SUBJECTS.get(alert.subject)
    if subject is None:
        subject = "".join(ESCAPES.get(char, char) for char in alert.subject)
    return f"{prefix}/{alert.rule}/{alert.host_id}/{subject}"


def alert_document(alert: Alert) -> dict[str, Any]:
    """The retained ``cpsfleet.alert`` document of a firing alert (see the module doc)."""
    return {
        "schema": ALERT_SCHEMA,
        "version": ALERT_VERSION,
        "state": alert.state,
        **{name: getattr(alert, name) for name in ("rule", "severity", "host_id", "site")},
        "subject": alert.subject,
        "message": alert.message,
        "started_at": f"{alert.started_at:%Y-%m-%dT%H:%M:%SZ}",
    }


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> None:
        """Retain ``payload`` on ``topic`` (QoS 1); an empty payload clears the topic."""


class Notifier:
    """Sends batches to the ``settings.channels``, one at a time, and, given a publisher,
    mirrors the alerts on the alert topic."""

    def __init__(
        self, settings: AlertSettings, publisher: Publisher | None = None, zone: tzinfo = UTC
    ) -> None:
        """``zone``: the fleet's time zone, of the dates the messages give."""
        self.settings = settings
        self.publisher = publisher
        self.zone = zone
        self._channels = {
            ref.id: (ref, _apprise(number, url))
            for number, url in enumerate(settings.channels, 1)
            if (ref := channel_ref(number, url))
        }

    @property
    def channels(self) -> list[ChannelRef]:
        """The configured channels, in the configuration's order."""
        return [ref for ref, _ in self._channels.values()]

    def name_of(self, channel: str) -> str:
        """The name a person reads of the configured channel ``channel``."""
        return self._channels[channel][0].name

    def deliver(self, channel: str, batch: Batch) -> str | None:
        """Send ``batch.due`` to ``channel`` as one message: None once it accepted it, else
        what went wrong (never raises: whatever a channel plugin does, the controller goes on)."""
        if not batch.due:
            return None
        ref, sender = self._channels[channel]
        title, body = render(batch, self.zone)
        try:
            # What apprise logs of the refusal (the server's answer) is the error to show.
            capture = apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]
            with capture as said:
                accepted = sender.notify(
                    body=body,
                    title=title,
                    notify_type=notify_type(batch),
                    body_format=apprise.NotifyFormat.TEXT,
                )
        except Exception as error:
            log.exception("sending %d alert(s) to %s failed", len(batch.due), ref.name)
            return f"{type(error).__name__}: {error}"[:500]
        if accepted:
            return None
        reason = " ".join(str(said.getvalue()).split()) or "refused, for no reason given"
        log.error("sending %d alert(s) to %s failed: %s", len(batch.due), ref.name, reason)
        return reason[:500]

    def publish(self, alerts: Iterable[Alert]) -> None:
        """Retain each firing alert on its topic; clear the topic of each resolved one."""
        if self.publisher is None:
            return
        for alert in alerts:
            topic = alert_topic(self.settings.mqtt_topic_prefix, alert)
            firing = alert.state == "firing"
            document = alert_document(alert) if firing else None
            payload = json.dumps(document, ensure_ascii=False).encode() if document else b""
            self.publisher.publish(topic, payload)


def channel_ref(number: int, url: str) -> ChannelRef:
    """The configured channel ``number`` (from 1) at ``url``: a digest of the URL names it in
    the database, its number and scheme name it for a person (the URL may hold a password)."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return ChannelRef(digest, f"channel {number} ({url.partition('://')[0]}://...)")


def _apprise(number: int, url: str) -> apprise.Apprise:
    channel = apprise.Apprise()
    if not channel.add(url):
        # The URL itself may hold a password: name the channel by number and scheme only.
        scheme = url.partition("://")[0]
        raise AlertError(
            f"alerts channel {number} ({scheme}://...) is not a URL apprise can use: "
            "see https://github.com/caronc/apprise/wiki for the syntax of each service"
        )
    return channel
