"""The fleet rules: pure functions from what a host last reported to findings.

Each rule reads one ``HostView`` and yields ``Finding``s; ``RULES`` lists them in
the order ``evaluate`` reports them. An offline host is still judged on its last
known state: a card that expired while the workstation was off is still expired.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from cpsfleet.controller.model import (
    CARD_RULES,
    CardView,
    CertificateView,
    Finding,
    HostView,
    PinView,
    Severity,
)
from cpsfleet.controller.rules.hours import HoursError, WorkingHours, parse_hours
from cpsfleet.controller.rules.words import local_day, local_moment
from cpsfleet.i18n import N_, _, ngettext
from cpsfleet.schemas.privacy import PREFIX as PSEUDONYM_PREFIX
from cpsfleet.schemas.times import add_years, days_left

# The pattern the status schema gives a Cryptolib version: what agents report.
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
# The release part that begins a package version (PEP 440): "0.2.0" of "0.2.0.dev3".
_RELEASE = re.compile(r"[0-9]+(\.[0-9]+)*(?![0-9])")

# The lowest value of each number: zero is a meaningful offline margin (no grace).
_LOWEST = {
    "expiring_warning_days": 1,
    "expiring_critical_days": 1,
    "card_update_max_years": 1,
    "offline_margin_s": 0,
    "default_scan_interval_s": 1,
    "card_retire_after_days": 1,
    "card_unseen_days": 1,
}


# A card unseen for ten years is long gone (they are issued for three).
MAX_RETIRE_DAYS = 3650


class RulesConfigError(ValueError):
    """The thresholds given to the rules are inconsistent; the message says which and why."""


@dataclass(frozen=True)
class Thresholds:
    expiring_warning_days: int = 60
    expiring_critical_days: int = 14
    card_update_max_years: int = 3
    min_cryptolib_version: str = "5.2.0"  # 5.2 is the first Cryptolib that reads CPS4
    offline_margin_s: int = 300
    default_scan_interval_s: int = 900
    working_hours: str = "07:00-20:00"
    working_days: str = "mon-fri"
    timezone: str = "Europe/Paris"
    # A card not seen for this long leaves the active lists, and its alerts resolve.
    card_retire_after_days: int = 90
    # A roster professional's card unseen this long is reported (card_unseen) until it retires
    # (card_retire_after_days): at or beyond that, card_unseen never shows.
    card_unseen_days: int = 30
    # Agents older than this are reported (agent_outdated); None: agents are not compared.
    min_agent_version: str | None = None

    def __post_init__(self) -> None:
        for name, lowest in _LOWEST.items():
            _check_whole_number(name, getattr(self, name), lowest)
        agent = self.min_agent_version
        if agent is not None and (not isinstance(agent, str) or _version_key(agent) is None):
            raise RulesConfigError(
                f"min_agent_version {agent!r} is not a dotted version like 0.2.0"
            )
        for name in ("card_retire_after_days", "card_unseen_days"):
            if getattr(self, name) > MAX_RETIRE_DAYS:  # dates beyond would overflow
                raise RulesConfigError(
                    f"{name} must be at most {MAX_RETIRE_DAYS} (ten years), "
                    f"not {getattr(self, name)}"
                )
        if self.expiring_critical_days >= self.expiring_warning_days:
            raise RulesConfigError(
                f"expiring_critical_days ({self.expiring_critical_days}) must be less than "
                f"expiring_warning_days ({self.expiring_warning_days}): lower the critical one"
            )
        version = self.min_cryptolib_version
        if not isinstance(version, str) or _version_key(version) is None:
            raise RulesConfigError(
                f"min_cryptolib_version {version!r} is not a dotted version like 5.2.0"
            )
        try:
            self.hours()
        except HoursError as error:
            raise RulesConfigError(str(error)) from None

    def hours(self) -> WorkingHours:
        return parse_hours(self.working_hours, self.working_days, self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        """The fleet's time zone: of working hours, and of the dates and days left people
        read (a day ends at midnight there)."""
        return ZoneInfo(self.timezone)


def _check_whole_number(name: str, value: object, lowest: int) -> None:
    # bool is an int in Python, but "expiring_warning_days: true" is a configuration mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        kind = "a positive" if lowest else "a non-negative"
        raise RulesConfigError(f"{name} must be {kind} whole number, not {value!r}")


Rule = Callable[[HostView, datetime, Thresholds], Iterable[Finding]]


def evaluate(host: HostView, now: datetime, thresholds: Thresholds) -> list[Finding]:
    """All findings for one host: rules in ``RULES`` order, each in the host's own order.

    A rule that fails on what this host sent is this host's ``evaluation_failed`` finding,
    never the fleet's evaluation stopping: one bad document must not blind the controller.
    """
    try:
        found = [finding for _name, rule in RULES for finding in rule(host, now, thresholds)]
    except Exception as error:  # any rule, any value the contract admits: see the tests
        return [_evaluation_failed(host, f"{type(error).__name__}: {error}")]
    if host.unreadable:
        found.append(_evaluation_failed(host, "; ".join(host.unreadable)))
    return found


EVALUATION_FAILED = "evaluation_failed"


def _evaluation_failed(host: HostView, reason: str) -> Finding:
    return evaluation_failed(host.id, reason, _host_name(host), host.site)


def evaluation_failed(
    host_id: str, reason: str, name: str | None = None, site: str | None = None
) -> Finding:
    """The finding of a host the controller could not evaluate, saying why."""
    message = _(
        "the controller could not evaluate {host}: {reason} (its other findings may be "
        "missing; a new status from its agent is evaluated afresh)"
    ).format(host=name or host_id, reason=f"{reason:.500}")
    return Finding(EVALUATION_FAILED, "critical", host_id, "", message, site=site)


def evaluate_fleet(
    hosts: Iterable[HostView], now: datetime, thresholds: Thresholds
) -> list[Finding]:
    """All findings for the fleet, host by host in order of host id, whatever the input order."""
    ordered = sorted(hosts, key=lambda host: host.id)
    return [finding for host in ordered for finding in evaluate(host, now, thresholds)]


def _finding(
    rule: str,
    severity: Severity,
    host: HostView,
    subject: str,
    message: str,
    since: datetime | None = None,
) -> Finding:
    return Finding(rule, severity, host.id, subject, message, since, site=host.site)


def _host_name(host: HostView) -> str:
    return host.hostname or host.id


def _when(moment: datetime, thresholds: Thresholds) -> str:
    return local_moment(moment, thresholds.zone)


# --- the agent and the workstation ------------------------------------------------------


def agent_offline(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    if host.presence == "offline":
        message = _(
            "the agent of {host} went offline (MQTT connection lost): check that the "
            "workstation is on and the cpsfleet agent service runs"
        ).format(host=_host_name(host))
        yield _finding("agent_offline", "critical", host, "", message, host.presence_at)
        return
    interval = host.scan_interval_s or thresholds.default_scan_interval_s
    allowance = timedelta(seconds=2 * interval + thresholds.offline_margin_s)
    # A host that never sent a status has been silent since the controller first saw it.
    last = host.last_status_at or host.first_seen
    if now - last > allowance:
        yield _finding(
            "agent_offline",
            "critical",
            host,
            "",
            _silence(host, last, thresholds),
            last + allowance,
        )


def _silence(host: HostView, last: datetime, thresholds: Thresholds) -> str:
    if host.last_status_at:
        template = _(
            "no status from the agent of {host} since {when}: check the cpsfleet agent "
            "service and its connection to the broker"
        )
    else:
        template = _(
            "no status from the agent of {host} ever (first seen {when}): check the cpsfleet "
            "agent service and its connection to the broker"
        )
    return template.format(host=_host_name(host), when=_when(last, thresholds))


def pcsc_unavailable(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    if host.pcsc_available is False:
        message = _(
            "PC/SC is unavailable on {host} ({error}): start the PC/SC service (pcscd)"
        ).format(host=_host_name(host), error=host.pcsc_error or _("no error given"))
        yield _finding("pcsc_unavailable", "critical", host, "", message)


def no_reader(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    if host.pcsc_available and not host.readers:
        message = _("no card reader on {host}: plug in a card reader").format(host=_host_name(host))
        yield _finding("no_reader", "warning", host, "", message)


def cryptolib_missing(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    if host.cryptolib_installed is False:
        message = _(
            "Cryptolib CPS is not installed on {host}: install it (version {minimum} or later) "
            "from the ANS site"
        ).format(host=_host_name(host), minimum=thresholds.min_cryptolib_version)
        yield _finding("cryptolib_missing", "critical", host, "", message)


def cryptolib_outdated(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    installed = _version_key(host.cryptolib_version) if host.cryptolib_installed else None
    minimum = _version_key(thresholds.min_cryptolib_version)
    if installed is not None and minimum is not None and installed < minimum:
        message = _(
            "Cryptolib CPS {version} on {host} is older than {minimum} and cannot read CPS4 "
            "cards: upgrade it"
        ).format(
            version=host.cryptolib_version,
            host=_host_name(host),
            minimum=thresholds.min_cryptolib_version,
        )
        yield _finding("cryptolib_outdated", "warning", host, "", message)


def agent_outdated(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    """An agent older than ``min_agent_version``: its host needs the new package. A version
    whose release part cannot be read ("dev") is not judged."""
    minimum = _version_key(thresholds.min_agent_version)
    installed = _release_key(host.agent_version)
    if minimum is not None and installed is not None and installed < minimum:
        message = _(
            "the cpsfleet agent {version} on {host} is older than {minimum}: install the new "
            "cpsfleet agent package on this workstation"
        ).format(
            version=host.agent_version, host=_host_name(host), minimum=thresholds.min_agent_version
        )
        yield _finding("agent_outdated", "warning", host, "", message)


def _release_key(text: str | None) -> tuple[int, ...] | None:
    """The version key of a package version's release part: "0.2.0.dev3" and "0.2.0rc1" read
    as 0.2.0 (a pre-release is not told apart from its release)."""
    release = _RELEASE.match(text or "")
    return _version_key(release.group(0)) if release else None


# Cached: a fleet runs a handful of versions, and every evaluation compares each host's.
@lru_cache(maxsize=1024)
def _version_key(text: str | None) -> tuple[int, ...] | None:
    """Numeric parts without trailing zeros, so 5.2 == 5.2.0 < 5.10; None if not a version."""
    if text is None or not _VERSION.fullmatch(text):
        return None
    parts = [int(part) for part in text.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


# --- the cards --------------------------------------------------------------------------


def _cps_cards(host: HostView) -> Iterator[CardView]:
    """The CPS cards in the host's readers now."""
    return (card for card in host.cards if card.is_cps)


def watched_cards(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[CardView]:
    """The CPS cards whose findings are this host's, in or out of its readers: those in its
    readers (unless another host has seen them since, or a newer card of their holder
    superseded them) and those last seen here that left the reader (unless superseded, or
    not seen for ``card_retire_after_days``)."""
    if not host.elsewhere:
        yield from _cps_cards(host)
    else:
        yield from (card for card in _cps_cards(host) if card.serial not in host.elsewhere)
    for card in host.remembered:
        if card.superseded_by is None and not retired(card, now, thresholds):
            yield card


def retired(card: CardView, now: datetime, thresholds: Thresholds) -> bool:
    """Not seen for ``card_retire_after_days``: the card left the fleet's active lists."""
    age = timedelta(days=thresholds.card_retire_after_days)
    return card.last_seen is not None and now - card.last_seen >= age


def _card_subject(card: CardView) -> str:
    return card.serial or card.reader


def _describe(card: CardView) -> str:
    """The card and its holder; the reader only for a card without a serial, which its
    reader names: a card's place changes from day to day, not its findings."""
    holder = next((_holder(cert) for cert in card.certificates if cert.surname), None)
    if card.serial:
        if holder:
            return _("CPS card {serial} of {holder}").format(serial=card.serial, holder=holder)
        return _("CPS card {serial}").format(serial=card.serial)
    if holder:
        return _("CPS card of {holder} in {reader}").format(holder=holder, reader=card.reader)
    return _("CPS card in {reader}").format(reader=card.reader)


def _holder(cert: CertificateView) -> str:
    name = " ".join(filter(None, (cert.surname, cert.given_name)))
    return f"{name} ({cert.profession})" if cert.profession else name


def _expiry(card: CardView) -> datetime | None:
    """The card stops working when its first certificate does."""
    return min((c.not_after for c in card.certificates if c.not_after), default=None)


def _last_update(card: CardView) -> datetime | None:
    """An update of the card writes new certificates: the newest notBefore is the last one."""
    return max((c.not_before for c in card.certificates if c.not_before), default=None)


def card_expired(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    for card in watched_cards(host, now, thresholds):
        expiry = _expiry(card)
        if expiry and expiry <= now:
            message = _("{card} expired on {day}: renew it").format(
                card=_describe(card), day=local_day(expiry, thresholds.zone)
            )
            yield _finding("card_expired", "critical", host, _card_subject(card), message, expiry)


def card_expiring(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    for card in watched_cards(host, now, thresholds):
        expiry = _expiry(card)
        if not expiry or expiry <= now:
            continue
        days = days_left(expiry, now, thresholds.zone)
        if days is None:
            continue  # RFC 5280's "no expiry"
        severity = _expiry_severity(days, thresholds)
        if severity:
            message = ngettext(
                "{card} expires on {day} ({count} day left): renew it",
                "{card} expires on {day} ({count} days left): renew it",
                days,
            ).format(card=_describe(card), day=local_day(expiry, thresholds.zone), count=days)
            yield _finding("card_expiring", severity, host, _card_subject(card), message)


def _expiry_severity(days_left: int, thresholds: Thresholds) -> Severity | None:
    ladder: tuple[tuple[int, Severity], ...] = (
        (thresholds.expiring_critical_days, "critical"),
        (thresholds.expiring_warning_days, "warning"),
    )
    return next((severity for limit, severity in ladder if days_left <= limit), None)


def card_not_updated(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    years = thresholds.card_update_max_years
    for card in watched_cards(host, now, thresholds):
        expiry = _expiry(card)
        if expiry and expiry <= now:
            continue  # one alert per card problem: an expired card is card_expired's
        updated = _last_update(card)
        if updated and now >= (due := add_years(updated, years)):
            message = ngettext(
                "{card} was last updated on {day}, {years} year ago or more: update it "
                "(activation needs a card updated less than {years} year ago)",
                "{card} was last updated on {day}, {years} years ago or more: update it "
                "(activation needs a card updated less than {years} years ago)",
                years,
            ).format(card=_describe(card), day=local_day(updated, thresholds.zone), years=years)
            yield _finding("card_not_updated", "warning", host, _card_subject(card), message, due)


# Translated where it is shown: _(PIN_NEXT_STEP).
PIN_NEXT_STEP = N_("unblock the PIN with the PUK in CPS Gestion (or ask for a new PIN mailer)")


def _cards_with_tries_left(
    host: HostView, now: datetime, thresholds: Thresholds, left: int
) -> Iterator[tuple[CardView, PinView]]:
    for card in watched_cards(host, now, thresholds):
        if card.pin is not None and card.pin.tries_left == left:
            yield card, card.pin


def pin_blocked(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    """A blocked PIN: the holder cannot log in (SI-DEP, Pro Santé Connect) until unblocked."""
    for card, pin in _cards_with_tries_left(host, now, thresholds, 0):
        message = _("the PIN of {card} is blocked (no try left of {tries}): {step}").format(
            card=_describe(card), tries=pin.tries_max, step=_(PIN_NEXT_STEP)
        )
        yield _finding("pin_blocked", "critical", host, _card_subject(card), message)


def pin_last_try(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    for card, pin in _cards_with_tries_left(host, now, thresholds, 1):
        message = _(
            "the PIN of {card} has one try left of {tries}, and a wrong PIN blocks it: if the "
            "holder is unsure of it, {step}"
        ).format(card=_describe(card), tries=pin.tries_max, step=_(PIN_NEXT_STEP))
        yield _finding("pin_last_try", "warning", host, _card_subject(card), message)


# --- why a card's findings end -----------------------------------------------------------

EXPIRY_RULES = ("card_expired", "card_expiring", "card_not_updated")


def card_resolution(
    host: HostView, rule: str, subject: str, now: datetime, thresholds: Thresholds
) -> str | None:
    """Why a finding of ``rule`` about the host's card ``subject`` (its serial) ends now,
    when the card as last seen tells: superseded by a newer card of its holder, retired after
    ``card_retire_after_days`` unseen, renewed (its certificates now valid past the warning),
    its PIN unblocked. None otherwise, or for another rule than the card rules'."""
    if rule not in CARD_RULES:
        return None
    for card in (*_cps_cards(host), *host.remembered):
        if card.serial == subject:
            return dict(_card_fate(card, now, thresholds)).get(rule)
    return None


def _card_fate(card: CardView, now: datetime, thresholds: Thresholds) -> Iterator[tuple[str, str]]:
    zone = thresholds.zone
    if card.superseded_by is not None:
        if card.superseded_at:
            reason = _("superseded by card {serial} of the same holder (first seen {day})").format(
                serial=card.superseded_by, day=local_day(card.superseded_at, zone)
            )
        else:
            reason = _("superseded by card {serial} of the same holder").format(
                serial=card.superseded_by
            )
        yield from ((rule, reason) for rule in CARD_RULES)
        return
    if retired(card, now, thresholds) and card.last_seen is not None:
        reason = ngettext(
            "not seen for {count} day (last seen {day}): the card is retired",
            "not seen for {count} days (last seen {day}): the card is retired",
            thresholds.card_retire_after_days,
        ).format(count=thresholds.card_retire_after_days, day=local_day(card.last_seen, zone))
        yield from ((rule, reason) for rule in CARD_RULES)
        return
    expiry = _expiry(card)
    left = None if expiry is None else days_left(expiry, now, zone)
    if (
        expiry is not None
        and expiry > now
        and (left is None or left > thresholds.expiring_warning_days)
    ):
        reason = _("renewed: its certificates are valid until {day}").format(
            day=local_day(expiry, zone)
        )
        yield from ((rule, reason) for rule in EXPIRY_RULES)
    if card.pin is not None and card.pin.tries_left is not None and card.pin.tries_left > 1:
        reason = _("the PIN has {count} tries left again").format(count=card.pin.tries_left)
        yield from ((rule, reason) for rule in ("pin_blocked", "pin_last_try"))


# --- who is missing: the cards and the roster -----------------------------------------------


def _id_nat(card: CardView) -> str | None:
    return next((cert.id_nat for cert in card.certificates if cert.id_nat), None)


def card_not_in_roster(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    """A CPS card whose holder is not in the roster: their readiness is not followed. Info:
    most often a locum or a newcomer the roster does not list yet, not a fault of the
    workstation. A pseudonymised idNat ("p:…") is judged against the roster's pseudonyms when
    the controller has the fleet's key, and not at all without it."""
    if host.roster is None:
        return
    for card in watched_cards(host, now, thresholds):
        id_nat = _id_nat(card)
        if not id_nat or (id_nat.startswith(PSEUDONYM_PREFIX) and not host.roster_pseudonyms):
            continue
        if id_nat not in host.roster:
            message = _(
                "{card} (idNat {id_nat}) is not in the roster of professionals: add its "
                "holder to the roster to follow their readiness"
            ).format(card=_describe(card), id_nat=id_nat)
            yield _finding("card_not_in_roster", "info", host, _card_subject(card), message)


def card_unseen(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    """A roster professional's card last seen on this host ``card_unseen_days`` ago or more
    (and not yet retired, nor superseded by a newer card of theirs)."""
    if host.roster is None:
        return
    age = timedelta(days=thresholds.card_unseen_days)
    for card in host.remembered:
        if card.superseded_by is not None or retired(card, now, thresholds):
            continue
        if card.last_seen is None or now - card.last_seen < age or _id_nat(card) not in host.roster:
            continue
        message = ngettext(
            "{card} has not been seen since {day} ({count} day or more; last in a reader of "
            "{host}): check that its holder still has it and uses a monitored workstation",
            "{card} has not been seen since {day} ({count} days or more; last in a reader of "
            "{host}): check that its holder still has it and uses a monitored workstation",
            thresholds.card_unseen_days,
        ).format(
            card=_describe(card),
            day=local_day(card.last_seen, thresholds.zone),
            count=thresholds.card_unseen_days,
            host=_host_name(host),
        )
        yield _finding(
            "card_unseen", "warning", host, _card_subject(card), message, card.last_seen + age
        )


def non_cps_card(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    for card in host.cards:
        if not card.is_cps:
            message = _("{card} (not a CPS) is in {reader}").format(
                card=_card_noun(card.kind_label), reader=card.reader
            )
            yield _finding("non_cps_card", "info", host, _card_subject(card), message)


def card_left_in_reader(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    """A CPS card in an unattended workstation out of hours can be used by anyone passing by."""
    hours = thresholds.hours()
    if host.presence == "offline" or hours.contains(now):
        return
    for card in _cps_cards(host):
        message = _(
            "{card} is left in {reader} outside working hours ({hours}): take it out and keep "
            "it with its holder"
        ).format(card=_describe(card), reader=card.reader, hours=hours.describe())
        yield _finding("card_left_in_reader", "warning", host, _card_subject(card), message)


def _card_noun(label: str) -> str:
    """ "Carte Vitale 2" -> "a Vitale 2 card" ("une carte Vitale 2"); "Unknown card" -> "an
    unknown card"."""
    core = label.removeprefix("Carte ")
    if core.lower().endswith("card"):
        core = core[: -len("card")].strip()
    if core.lower() in ("", "unknown"):
        return _("an unknown card")
    article = _("an {kind} card") if core[:1].lower() in "aeiou" else _("a {kind} card")
    return article.format(kind=core)


# --- what the agent itself could not read -----------------------------------------------


def probe_error(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    for subject, message in _numbered(_reported_problems(host)):
        yield _finding("probe_error", "warning", host, subject, message)


def _reported_problems(host: HostView) -> Iterator[tuple[str, str]]:
    """(where on the host, what the agent said) for every problem of the status."""
    yield from (("host", f"{p.where}: {p.message}") for p in host.problems)
    yield from (("cryptolib", f"{p.where}: {p.message}") for p in host.cryptolib_problems)
    for reader in host.readers:
        yield from ((f"reader:{reader.name}", f"{p.where}: {p.message}") for p in reader.problems)
    for card in host.cards:
        place = f"card:{_card_subject(card)}"
        yield from ((place, f"{p.where}: {p.message}") for p in card.problems)
        unreadable = (c for c in card.certificates if c.error)
        yield from ((place, _unreadable(c.role, c.error or "")) for c in unreadable)


def _unreadable(role: str, error: str) -> str:
    """A certificate the agent could not read, named by its role (authentication, signature)."""
    template = UNREADABLE.get(role)
    if template is None:
        return _("{role} certificate unreadable: {error}").format(role=role, error=error)
    return _(template).format(error=error)


UNREADABLE = {
    "authentication": N_("authentication certificate unreadable: {error}"),
    "signature": N_("signature certificate unreadable: {error}"),
}


def _numbered(problems: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Second and later problems at one place get " #2", " #3": a finding's subject is
    part of its identity, and two problems at one place are two findings."""
    seen: Counter[str] = Counter()
    for subject, message in problems:
        seen[subject] += 1
        yield (subject if seen[subject] == 1 else f"{subject} #{seen[subject]}", message)


def cps_gestion_missing(host: HostView, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    """Cryptolib CPS without CPS Gestion: the flowchart's last step, activating the card, is
    done with CPS Gestion, so a holder cannot activate a card on this workstation."""
    if host.cryptolib_installed and host.cps_gestion is False:
        message = _(
            "CPS Gestion is missing on {host}, where Cryptolib CPS is installed: reinstall "
            "Cryptolib CPS from the ANS site (its installer includes CPS Gestion), which holders "
            "need to activate their card and to unblock a PIN"
        ).format(host=_host_name(host))
        yield _finding("cps_gestion_missing", "warning", host, "", message)


RULES: tuple[tuple[str, Rule], ...] = (
    ("agent_offline", agent_offline),
    ("pcsc_unavailable", pcsc_unavailable),
    ("no_reader", no_reader),
    ("cryptolib_missing", cryptolib_missing),
    ("cryptolib_outdated", cryptolib_outdated),
    ("card_expired", card_expired),
    ("card_expiring", card_expiring),
    ("card_not_updated", card_not_updated),
    ("pin_blocked", pin_blocked),
    ("pin_last_try", pin_last_try),
    ("non_cps_card", non_cps_card),
    ("card_left_in_reader", card_left_in_reader),
    ("probe_error", probe_error),
    ("cps_gestion_missing", cps_gestion_missing),
    ("agent_outdated", agent_outdated),
    ("card_not_in_roster", card_not_in_roster),
    ("card_unseen", card_unseen),
)
