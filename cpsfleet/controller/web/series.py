"""The per-card and per-host series of ``/metrics``, built from one scrape's snapshot.

A card is known by its host and reader (a card without a serial has no other name), a host
by its id; the other labels say where it is and what it is, so that rules and dashboards can
group by them. Holder names are labels only when the configuration allows it (never when
agents pseudonymise): a name in a time series database outlives the card.

These series grow with the fleet (670,000 for 50,000 hosts, see docs/metrics.md), so they
are written as exposition text here, each card's and host's labels formatted once for all
its series, rather than by prometheus_client, which checks and escapes every label of every
sample: the scrape of 50,000 hosts took 12.7 s that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Family:
    """One gauge: its samples as exposition lines (``name{labels} value``)."""

    name: str
    lines: list[str] = field(default_factory=list)

    def add(self, labels: str, value: float) -> None:
        """``labels``: ``labels_text``'s, without the braces."""
        self.lines.append(f"{PREFIX}{self.name}{{{labels}}} {_value(value)}\n")

    def text(self) -> str:
        help_text = HELP[self.name].replace("\\", "\\\\").replace("\n", "\\n")
        head = f"# HELP {PREFIX}{self.name} {help_text}\n# TYPE {PREFIX}{self.name} gauge\n"
        return head + "".join(self.lines)


def text(families: Iterable[Family]) -> str:
    """The exposition text (Prometheus' format 0.0.4) of ``families``."""
    return "".join(family.text() for family in families)


def labels_text(names: list[str], values: Iterable[Any]) -> str:
    """``name="value",…`` with the values escaped as the exposition format wants."""
    pairs = zip(names, values, strict=True)
    return ",".join(f'{name}="{_escape(str(value))}"' for name, value in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    """An integer as itself (the dates are whole seconds), anything else as a float."""
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def card_families(counts: fleet.Counts, holder_names: bool) -> list[Family]:
    """The dates and PIN tries of each card in a reader now; ``holder_names`` adds ``holder``."""
    labels = [*CARD_LABELS, HOLDER] if holder_names else CARD_LABELS
    cards = {(c["host_id"], c["reader"]): _card_labels(c, labels) for c in counts.cards_now}
    return [
        *(_dates(name, index, cards, counts) for name, index in DATES.items()),
        *(_tries(name, column, cards, counts) for name, column in PIN_TRIES.items()),
    ]


def _dates(name: str, index: int, cards: dict[Card, str], counts: fleet.Counts) -> Family:
    family = Family(name)
    for host_id, reader, role, *dates in counts.card_dates:
        card, moment = cards.get((host_id, reader)), dates[index]
        if card is not None and moment is not None:
            family.add(f'{card},role="{_escape(role)}"', moment)
    return family


def _tries(name: str, column: str, cards: dict[Card, str], counts: fleet.Counts) -> Family:
    family = Family(name)
    for card in counts.cards_now:
        if card[column] is not None:
            family.add(cards[card["host_id"], card["reader"]], card[column])
    return family


def _card_labels(card: dict[str, Any], labels: list[str]) -> str:
    holder = " ".join(filter(None, (card["surname"], card["given_name"])))
    known = card | {"site": card["site"] or "", HOLDER: holder}
    return labels_text(labels, [known[label] or "" for label in labels])


def host_families(counts: fleet.Counts) -> list[Family]:
    """Each host's presence (every state, zeros included), PC/SC, Cryptolib and readers."""
    hosts = [(host, _host_labels(host)) for host in counts.host_states]
    presence = Family("host_presence")
    for host, labels in hosts:
        for state in PRESENCES:
            presence.add(f'{labels},presence="{state}"', int(host["presence"] == state))
    return [
        presence,
        _host_gauge("host_pcsc_up", hosts, "pcsc_available"),
        _host_gauge("host_cryptolib_installed", hosts, "cryptolib_installed"),
        _cryptolib_info(hosts),
        _host_gauge("host_readers", hosts, "readers"),
    ]


Host = tuple[dict[str, Any], str]  # a host's row and its labels' text


def _host_labels(host: dict[str, Any]) -> str:
    return labels_text(HOST_LABELS, [host[label] or "" for label in HOST_LABELS])


def _host_gauge(name: str, hosts: list[Host], column: str) -> Family:
    """A gauge of each host whose ``column`` is known (a host that never said has none)."""
    family = Family(name)
    for host, labels in _known(hosts, column):
        family.add(labels, int(host[column]))
    return family


def _cryptolib_info(hosts: list[Host]) -> Family:
    family = Family("host_cryptolib_info")
    for host, labels in _known(hosts, "cryptolib_version"):
        if host["cryptolib_installed"]:
            family.add(f"{labels},{labels_text(['version'], [host['cryptolib_version']])}", 1)
    return family


def _known(hosts: list[Host], column: str) -> Iterator[Host]:
    return ((host, labels) for host, labels in hosts if host[column] is not None)
