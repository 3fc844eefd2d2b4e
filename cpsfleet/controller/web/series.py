"""The per-card and per-host series of ``/metrics``, built from one scrape's snapshot.

A card is known by its host and reader (a card without a serial has no other name), a host
by its id; the other labels say where it is and what it is, so that rules and dashboards can
group by them. Holder names are labels only when the configuration allows it (never when
agents pseudonymise): a name in a time series database outlives the card.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from cpsfleet.controller.db import fleet

PREFIX = "cpsfleet_"
CARD_LABELS = ["site", "host_id", "host", "reader", "serial", "kind", "profession"]
HOLDER = "holder"
HOST_LABELS = ["site", "host_id", "host"]
PRESENCES = ("online", "offline", "unknown")
HELP = {
    "card_certificate_not_after_seconds": "When each card's certificates of a role stop "
    "working (their earliest notAfter), in seconds since the epoch.",
    "card_certificate_not_before_seconds": "When each card's certificates of a role were last "
    "written (their latest notBefore: the card's last update), in seconds since the epoch.",
    "card_pin_tries_left": "PIN tries left of each card, as its agent read them without the PIN.",
    "card_pin_tries_max": "PIN tries of each card once its PIN is unblocked.",
    "host_presence": "Each host's presence as the rules see it: 1 for its current one.",
    "host_pcsc_up": "Whether PC/SC (pcscd, the smart card service) answered on each host.",
    "host_cryptolib_installed": "Whether Cryptolib CPS is installed on each host.",
    "host_cryptolib_info": "The Cryptolib CPS version installed on each host (always 1).",
    "host_readers": "PC/SC readers each host last reported.",
}
# Which of CARD_DATES_SQL's dates, after (host_id, reader, role), each series gives.
DATES = {"card_certificate_not_after_seconds": 0, "card_certificate_not_before_seconds": 1}
PIN_TRIES = {"card_pin_tries_left": "pin_tries_left", "card_pin_tries_max": "pin_tries_max"}
Card = tuple[str, str]  # (host_id, reader)


def card_families(counts: fleet.Counts, holder_names: bool) -> list[GaugeMetricFamily]:
    """The dates and PIN tries of each card in a reader now; ``holder_names`` adds ``holder``."""
    labels = [*CARD_LABELS, HOLDER] if holder_names else CARD_LABELS
    cards = {(c["host_id"], c["reader"]): _card_labels(c, labels) for c in counts.cards_now}
    return [
        *(_dates(name, index, labels, cards, counts) for name, index in DATES.items()),
        *(_tries(name, column, labels, cards, counts) for name, column in PIN_TRIES.items()),
    ]


def _dates(
    name: str, index: int, labels: list[str], cards: dict[Card, list[str]], counts: fleet.Counts
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, HELP[name], labels=[*labels, "role"])
    for host_id, reader, role, *dates in counts.card_dates:
        card, moment = cards.get((host_id, reader)), dates[index]
        if card is not None and moment is not None:
            family.add_metric([*card, role], moment)
    return family


def _tries(
    name: str, column: str, labels: list[str], cards: dict[Card, list[str]], counts: fleet.Counts
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, HELP[name], labels=labels)
    for card in counts.cards_now:
        if card[column] is not None:
            family.add_metric(cards[card["host_id"], card["reader"]], card[column])
    return family


def _card_labels(card: dict[str, Any], labels: list[str]) -> list[str]:
    holder = " ".join(filter(None, (card["surname"], card["given_name"])))
    known = card | {"site": card["site"] or "", HOLDER: holder}
    return [str(known[label] or "") for label in labels]


def host_families(counts: fleet.Counts) -> list[GaugeMetricFamily]:
    """Each host's presence (every state, zeros included), PC/SC, Cryptolib and readers."""
    presence = GaugeMetricFamily(
        PREFIX + "host_presence", HELP["host_presence"], labels=[*HOST_LABELS, "presence"]
    )
    for host in counts.host_states:
        for state in PRESENCES:
            presence.add_metric([*_host_labels(host), state], int(host["presence"] == state))
    return [
        presence,
        _host_gauge("host_pcsc_up", counts, "pcsc_available"),
        _host_gauge("host_cryptolib_installed", counts, "cryptolib_installed"),
        _cryptolib_info(counts),
        _host_gauge("host_readers", counts, "readers"),
    ]


def _host_labels(host: dict[str, Any]) -> list[str]:
    return [str(host[label]) for label in HOST_LABELS]


def _host_gauge(name: str, counts: fleet.Counts, column: str) -> GaugeMetricFamily:
    """A gauge of each host whose ``column`` is known (a host that never said has none)."""
    family = GaugeMetricFamily(PREFIX + name, HELP[name], labels=HOST_LABELS)
    for host in _known(counts.host_states, column):
        family.add_metric(_host_labels(host), int(host[column]))
    return family


def _cryptolib_info(counts: fleet.Counts) -> GaugeMetricFamily:
    name = "host_cryptolib_info"
    family = GaugeMetricFamily(PREFIX + name, HELP[name], labels=[*HOST_LABELS, "version"])
    for host in _known(counts.host_states, "cryptolib_version"):
        if host["cryptolib_installed"]:
            family.add_metric([*_host_labels(host), host["cryptolib_version"]], 1)
    return family


def _known(hosts: list[dict[str, Any]], column: str) -> Iterator[dict[str, Any]]:
    return (host for host in hosts if host[column] is not None)
