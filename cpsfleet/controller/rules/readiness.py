"""Each professional's readiness for CPS activation.

Pure functions over the roster (``Professional``), what the hosts last reported
(``HostView``) and where each card was last seen (``rules.sightings``).
``DECISIONS`` is the seed's activation flowchart as a table: the first row whose
condition holds gives the professional's state and next step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Formatter
from typing import Any, Literal, NamedTuple

from cpsfleet.controller.filters import same_site
from cpsfleet.controller.intake.roster import KINDS, Kind, Professional
from cpsfleet.controller.model import HostView
from cpsfleet.controller.rules.findings import PIN_NEXT_STEP, Thresholds, _version_key
from cpsfleet.controller.rules.sightings import (
    EARLIEST,
    CardSighting,
    card_sightings,
    merge_sightings,
)
from cpsfleet.controller.rules.words import local_day
from cpsfleet.i18n import N_, _, ngettext
from cpsfleet.schemas.privacy import pseudonym
from cpsfleet.schemas.times import add_years, days_left, format_utc, local_date

State = Literal[
    "no_card",
    "renew_card",
    "renew_soon",
    "unblock_pin",
    "ready_ecps",
    "no_reader",
    "install_cryptolib",
    "install_cps_gestion",
    "ready",
]
# The states as people read them (the ``state`` token stays in JSON and the API).
STATE_LABELS: Mapping[State, str] = {
    "no_card": N_("No CPS card"),
    "renew_card": N_("Card to renew"),
    "renew_soon": N_("Card expiring soon"),
    "unblock_pin": N_("PIN to unblock"),
    "ready_ecps": N_("Ready with e-CPS"),
    "no_reader": N_("No card reader"),
    "install_cryptolib": N_("Cryptolib CPS to install"),
    "install_cps_gestion": N_("CPS Gestion to install"),
    "ready": N_("Ready"),
}
# The professions as the professionals' own titles (the roster's tokens stay in JSON).
PROFESSION_TITLES: Mapping[Kind, str] = {
    "doctor": N_("Doctor"),
    "nurse": N_("Nurse"),
}


def state_label(state: State) -> str:
    """The readiness state in words, in the current language."""
    return _(STATE_LABELS[state])


def profession_title(profession: Kind) -> str:
    """The professional's title, in the current language: "Médecin", "Infirmier/Infirmière"."""
    return _(PROFESSION_TITLES[profession])


# The columns of ``readiness_rows``, in order (``LABEL_FIELDS`` follow them in each row).
REPORT_FIELDS = (
    *("surname", "given_name", "profession", "id_nat", "site", "state", "next_step", "detail"),
    *("card_serial", "card_expires", "card_updated", "card_present"),
    *("last_seen_host", "last_seen_at"),
)
# The profession and the state in words, in the current language, for tables people read.
LABEL_FIELDS = ("profession_title", "state_label")


@dataclass(frozen=True)
class Facts:
    """What the fleet knows that matters to one professional."""

    card: CardSighting | None  # their newest card seen, if any
    hosts: tuple[HostView, ...]  # the hosts of their site


@dataclass(frozen=True)
class Readiness:
    state: State
    next_step: str
    detail: str


@dataclass(frozen=True)
class Situation:
    """One professional's case, as the conditions of the decision table read it."""

    professional: Professional
    facts: Facts
    now: datetime
    thresholds: Thresholds


# A condition returns the detail (what was found) when its row applies, None otherwise.
Condition = Callable[[Situation], str | None]


class Decision(NamedTuple):
    state: State
    applies: Condition
    next_step: Mapping[Kind, str]
    # The e-CPS advice ({ecps}) follows the step (translated apart).
    advise_ecps: bool = False


# --- gathering the facts ------------------------------------------------------------------


def remembered(
    rows: Iterable[Mapping[str, Any]], now: datetime, thresholds: Thresholds
) -> list[CardSighting]:
    """Cards stored from earlier inventories (``Store.card_sightings``), not known in a reader;
    not those a newer card of their holder superseded, nor those unseen for
    ``card_retire_after_days``: the cards the fleet watches."""
    age = timedelta(days=thresholds.card_retire_after_days)
    return [
        CardSighting(
            id_nat=row["id_nat"],
            serial=row["serial"],
            expires=_time(row["not_after"]),
            updated=_time(row["not_before"]),
            host=row["host"],
            site=row["site"],
            seen_at=_time(row["last_seen"]),
            present=False,
            pin_tries_left=row["pin_tries_left"],
        )
        for row in rows
        if not row.get("superseded_by") and now - _seen(row["last_seen"]) < age
    ]


def _seen(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def facts_for(
    professional: Professional,
    sightings: Iterable[CardSighting],
    hosts: Iterable[HostView],
    key: bytes | None = None,
) -> Facts:
    """Their newest card (latest update, then latest expiry, then last seen), their site's hosts.

    With the fleet's pseudonym ``key``, a card reported under the pseudonym of their idNat
    is theirs too (see ``cpsfleet.schemas.privacy``).
    """
    names = {professional.id_nat}
    if key is not None:
        names.add(pseudonym(key, professional.id_nat))
    cards = [sighting for sighting in sightings if sighting.id_nat in names]
    card = max(cards, key=_newest, default=None)
    return Facts(card, tuple(host for host in hosts if same_site(professional.site, host.site)))


def _newest(card: CardSighting) -> tuple[datetime, datetime, datetime]:
    return (card.updated or EARLIEST, card.expires or EARLIEST, card.seen_at or EARLIEST)


# --- the decision table -------------------------------------------------------------------


def _no_card(situation: Situation) -> str | None:
    if situation.facts.card is not None or situation.professional.ecps_activated:
        return None
    return _card_unseen(situation)


def _card_unseen(situation: Situation) -> str | None:
    if situation.facts.card is not None:
        return None
    return _("no CPS card with idNat {id_nat} in the fleet's readers").format(
        id_nat=situation.professional.id_nat
    )


def _card_outdated(situation: Situation) -> str | None:
    card, now = situation.facts.card, situation.now
    if card is None:
        return None
    if card.expires is not None and card.expires <= now:
        return _("{card} expired on {day}").format(
            card=_card_name(card), day=_words_day(card.expires, situation)
        )
    years = situation.thresholds.card_update_max_years
    if card.updated is not None and now >= add_years(card.updated, years):
        return ngettext(
            "{card} was last updated on {day}, {years} year ago or more",
            "{card} was last updated on {day}, {years} years ago or more",
            years,
        ).format(card=_card_name(card), day=_words_day(card.updated, situation), years=years)
    return None


def _card_expires_soon(situation: Situation) -> str | None:
    """Within ``expiring_critical_days``, counted as the rule card_expiring counts days left."""
    card, zone = situation.facts.card, situation.thresholds.zone
    left = days_left(card.expires, situation.now, zone) if card and card.expires else None
    if card is None or left is None or left > situation.thresholds.expiring_critical_days:
        return None
    return ngettext(
        "{card} expires on {day} ({count} day left)",
        "{card} expires on {day} ({count} days left)",
        left,
    ).format(card=_card_name(card), day=_expires(situation), count=left)


def _pin_blocked(situation: Situation) -> str | None:
    card = situation.facts.card
    if card is None or card.pin_tries_left != 0:
        return None
    return _("the PIN of {card} is blocked (seen on {host})").format(
        card=_card_name(card), host=card.host
    )


def _no_reader(situation: Situation) -> str | None:
    hosts, site = situation.facts.hosts, situation.professional.site
    if any(host.readers for host in hosts):
        return None
    if not hosts:
        return _("no workstation of site {site} reports to the fleet").format(site=repr(site))
    return _("no card reader on the workstations of site {site}: {hosts}").format(
        site=repr(site), hosts=_host_names(hosts)
    )


def _no_cryptolib(situation: Situation) -> str | None:
    with_reader = [host for host in situation.facts.hosts if host.readers]
    faults = [(host, _cryptolib_fault(host, situation.thresholds)) for host in with_reader]
    if not faults or not all(fault for _, fault in faults):
        return None
    return "; ".join(f"{_host_name(host)}: {fault}" for host, fault in faults)


def _cryptolib_fault(host: HostView, thresholds: Thresholds) -> str | None:
    """What keeps the host's Cryptolib CPS from working, None if nothing we know of."""
    if not host.cryptolib_installed:
        return _("Cryptolib CPS is not installed")
    installed = _version_key(host.cryptolib_version)
    minimum = _version_key(thresholds.min_cryptolib_version)
    if installed is not None and minimum is not None and installed < minimum:
        return _("Cryptolib CPS {version} is older than {minimum}").format(
            version=host.cryptolib_version, minimum=thresholds.min_cryptolib_version
        )
    return None


def _equipped(situation: Situation) -> list[HostView]:
    """The workstations of their site with a reader and a working Cryptolib CPS."""
    thresholds = situation.thresholds
    return [h for h in situation.facts.hosts if h.readers and not _cryptolib_fault(h, thresholds)]


def _no_cps_gestion(situation: Situation) -> str | None:
    equipped = _equipped(situation)
    if not equipped or any(host.cps_gestion for host in equipped):
        return None
    return _("CPS Gestion is missing where a reader and Cryptolib CPS are: {hosts}").format(
        hosts=_host_names(equipped)
    )


def _contacts_missing(professional: Professional) -> str | None:
    mobile, email = professional.mobile_on_file, professional.email_on_file
    if not mobile and not email:
        return _("no mobile number nor e-mail on file (per the roster)")
    if not mobile:
        return _("no mobile number on file (per the roster)")
    if not email:
        return _("no e-mail on file (per the roster)")
    return None


def _card_route_gap(situation: Situation) -> str | None:
    """The first thing missing to use the card itself, None when nothing is."""
    return next(filter(None, (applies(situation) for applies, _ in CARD_STEPS)), None)


def _ready_with_ecps(situation: Situation) -> str | None:
    if not situation.professional.ecps_activated:
        return None
    gap = _card_route_gap(situation)
    return None if gap is None else _("e-CPS activated (per the roster); {gap}").format(gap=gap)


def _ready(situation: Situation) -> str:
    card, professional = situation.facts.card, situation.professional
    working = [host for host in _equipped(situation) if host.cps_gestion]
    parts = []
    if card is not None and card.expires is not None:
        parts.append(
            _("{card} valid until {day}").format(
                card=_card_name(card), day=_words_day(card.expires, situation)
            )
        )
    if working:
        parts.append(
            _("reader, Cryptolib CPS and CPS Gestion on {hosts}").format(hosts=_host_names(working))
        )
    if professional.ecps_activated:
        parts.append(_("e-CPS activated (per the roster)"))
    else:
        parts.append(_contacts_missing(professional) or _("e-CPS not activated (per the roster)"))
    return "; ".join(parts)


def _with_unseen(detail: str, situation: Situation) -> str:
    """The finding card_unseen, told in their row too: their card out of every reader for
    ``card_unseen_days`` or more (a card the fleet still watches: not retired)."""
    card, days = situation.facts.card, situation.thresholds.card_unseen_days
    if card is None or card.present or card.seen_at is None:
        return detail
    if situation.now - card.seen_at < timedelta(days=days):
        return detail
    unseen = ngettext(
        "{card} not seen since {day} ({count} day or more)",
        "{card} not seen since {day} ({count} days or more)",
        days,
    ).format(card=_card_name(card), day=_words_day(card.seen_at, situation), count=days)
    return f"{detail}; {unseen}"


def _card_name(card: CardSighting) -> str:
    return _("card {serial}").format(serial=card.serial) if card.serial else _("their card")


def _day(moment: datetime, situation: Situation) -> str:
    """The date of the report's columns: ISO 8601, in the fleet's time zone."""
    return local_date(moment, situation.thresholds.zone).isoformat()


def _words_day(moment: datetime, situation: Situation) -> str:
    """The date as people read it: in the fleet's time zone and the current language."""
    return local_day(moment, situation.thresholds.zone)


def _host_name(host: HostView) -> str:
    return host.hostname or host.id


def _host_names(hosts: Sequence[HostView]) -> str:
    return ", ".join(_host_name(host) for host in hosts)


def _same(text: str) -> dict[Kind, str]:
    return dict.fromkeys(KINDS, text)


# --- the words of the next steps ------------------------------------------------------------
# A next step may name {expires}, {ecps} or {card_step}: ``FIELDS`` fills them in.

ORDRE: Mapping[Kind, str] = {
    "doctor": N_("the Ordre des médecins"),
    "nurse": N_("the Ordre national des infirmiers"),
}


def _expires(situation: Situation) -> str:
    """The card's last day in the fleet's time zone, as the finding card_expiring says it."""
    card = situation.facts.card
    if card is None or card.expires is None:
        return _("an unknown date")
    return local_day(card.expires, situation.thresholds.zone)


def _ecps_advice(situation: Situation) -> str:
    """e-CPS is advised, never required, to whoever has not activated it."""
    professional = situation.professional
    if professional.ecps_activated:
        return ""
    if _contacts_missing(professional):
        return _(
            "; advised too: e-CPS on their smartphone, which needs no reader (first check "
            "that their private space (espace privé) on {ordre}'s site has a mobile number and "
            "a valid e-mail: e-CPS needs both)"
        ).format(ordre=_(ORDRE[professional.profession]))
    return _(
        "; advised too: e-CPS on their smartphone, which needs no reader (install the e-CPS "
        "app and follow its steps)"
    )


def _card_step(situation: Situation) -> str:
    step = next((step for applies, step in CARD_STEPS if applies(situation)), None)
    return _(step) if step else _("nothing")


FIELDS: Mapping[str, Callable[[Situation], str]] = {
    "expires": _expires,
    "ecps": _ecps_advice,
    "card_step": _card_step,
}


def _next_step(template: str, situation: Situation) -> str:
    names = {name for _text, name, _spec, _conv in Formatter().parse(template) if name}
    return _(template).format_map({name: FIELDS[name](situation) for name in names})


# The next steps are written in English and translated when decided (``_next_step``).
READY_STEP = N_("none: ready for SI-DEP and the services behind Pro Santé Connect")
BUY_READER = N_(
    "buy a single-slot PC/SC card reader (lecteur monofente, about 10–20 € TTC) for a "
    "workstation of their site"
)
INSTALL_CRYPTOLIB = N_(
    "install or update Cryptolib CPS (free from the Agence du Numérique en Santé) on a "
    "workstation with a reader, then activate the card with CPS Gestion"
)
INSTALL_CPS_GESTION = N_(
    "install CPS Gestion on a workstation with a reader and Cryptolib CPS (reinstall Cryptolib "
    "CPS from the Agence du Numérique en Santé: its installer includes CPS Gestion), insert the "
    "card and activate it with CPS Gestion"
)

# What using the card itself needs, in the flowchart's order after the card: a reader,
# the software, the card in the reader. The first missing one is the step to take.
CARD_STEPS: tuple[tuple[Condition, str], ...] = (
    (_no_reader, BUY_READER),
    (_no_cryptolib, INSTALL_CRYPTOLIB),
    (_no_cps_gestion, INSTALL_CPS_GESTION),
    (_card_unseen, N_("insert their card in a reader of a monitored workstation of their site")),
)

# The seed's activation flowchart, in the order its questions are asked: first match wins.
# e-CPS is the alternative to a reader: activated, it is enough for Pro Santé Connect; not
# activated, it is advised ({ecps}) but a working card is enough.
DECISIONS: tuple[Decision, ...] = (
    Decision(
        "no_card",
        _no_card,
        {
            "doctor": N_(
                "ask the Ordre des médecins for a CPS card; if they hold a valid card, insert "
                "it in a reader of a monitored workstation"
            ),
            "nurse": N_(
                "fill form 201 (demande de carte CPS) on the Ordre national des infirmiers' "
                "site; if they hold a valid card, insert it in a reader of a monitored "
                "workstation"
            ),
        },
    ),
    Decision(
        "renew_card",
        _card_outdated,
        {
            "doctor": N_(
                "renew the CPS card: ask the Ordre des médecins (activation needs a card "
                "updated less than three years ago)"
            ),
            "nurse": N_(
                "renew the CPS card: ask the Ordre national des infirmiers (activation needs a "
                "card updated less than three years ago)"
            ),
        },
    ),
    Decision(
        "renew_soon",
        _card_expires_soon,
        {
            "doctor": N_(
                "renew the CPS card before it expires on {expires}: ask the Ordre des médecins"
            ),
            "nurse": N_(
                "renew the CPS card before it expires on {expires}: ask the Ordre "
                "national des infirmiers"
            ),
        },
    ),
    Decision("unblock_pin", _pin_blocked, _same(PIN_NEXT_STEP)),
    Decision(
        "ready_ecps",
        _ready_with_ecps,
        _same(
            N_(
                "none for SI-DEP and the services behind Pro Santé Connect, with e-CPS; to use "
                "the card as well, {card_step}"
            )
        ),
    ),
    Decision("no_reader", _no_reader, _same(BUY_READER), advise_ecps=True),
    Decision("install_cryptolib", _no_cryptolib, _same(INSTALL_CRYPTOLIB), advise_ecps=True),
    Decision("install_cps_gestion", _no_cps_gestion, _same(INSTALL_CPS_GESTION), advise_ecps=True),
    Decision("ready", _ready, _same(READY_STEP), advise_ecps=True),
)


def decide(
    professional: Professional, facts: Facts, now: datetime, thresholds: Thresholds
) -> Readiness:
    """The first row of ``DECISIONS`` that applies: the professional's state and next step."""
    situation = Situation(professional, facts, now, thresholds)
    for decision in DECISIONS:
        detail = decision.applies(situation)
        if detail is not None:
            step = _next_step(decision.next_step[professional.profession], situation)
            if decision.advise_ecps:
                step += _ecps_advice(situation)
            return Readiness(decision.state, step, _with_unseen(detail, situation))
    raise AssertionError("the last row of DECISIONS always applies")


def readiness_rows(
    professionals: Iterable[Professional],
    hosts: Sequence[HostView],
    now: datetime,
    thresholds: Thresholds,
    earlier: Iterable[CardSighting] = (),
    key: bytes | None = None,
) -> list[dict[str, Any]]:
    """One row per professional: who, state, next step, detail, and their card as last seen.

    ``earlier`` are the cards remembered from past inventories (see ``remembered``);
    ``key`` the pseudonym key when agents pseudonymise.
    """
    sightings = merge_sightings(card_sightings(hosts, now, thresholds), earlier)
    rows = []
    for professional in professionals:
        facts = facts_for(professional, sightings, hosts, key)
        situation = Situation(professional, facts, now, thresholds)
        rows.append(_row(situation, decide(professional, facts, now, thresholds)))
    return rows


def _row(situation: Situation, readiness: Readiness) -> dict[str, Any]:
    professional, card = situation.professional, situation.facts.card
    return {
        "surname": professional.surname,
        "given_name": professional.given_name,
        "profession": professional.profession,
        "id_nat": professional.id_nat,
        "site": professional.site,
        "state": readiness.state,
        "next_step": readiness.next_step,
        "detail": readiness.detail,
        "card_serial": card.serial if card else None,
        "card_expires": _day(card.expires, situation) if card and card.expires else None,
        "card_updated": _day(card.updated, situation) if card and card.updated else None,
        "card_present": card.present if card else None,
        "last_seen_host": card.host if card else None,
        "last_seen_at": _stamp(card.seen_at) if card and card.seen_at else None,
        "profession_title": profession_title(professional.profession),
        "state_label": state_label(readiness.state),
    }


def _stamp(moment: datetime) -> str:
    return format_utc(moment)
