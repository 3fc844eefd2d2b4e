"""What changed in a host's inventory between two views of it, as lines for a person to read.

Plain functions over ``cpsfleet.controller.model`` views: readers plugged or unplugged, cards
inserted, removed or replaced, certificates renewed on a card left in its reader, and the
PC/SC service or Cryptolib CPS changing under them.
"""

from __future__ import annotations

from collections.abc import Callable

from cpsfleet.controller.model import CardView, CertificateView, HostView, ReaderView


def inventory_changes(before: HostView | None, after: HostView) -> list[str]:
    """The changes from ``before`` (None: the host had never reported) to ``after``."""
    if before is None or before.last_status_at is None:
        return ["first inventory of this host"]
    return [
        *_service_changes(before, after),
        *_reader_changes(before.readers, after.readers, _cards(before), _cards(after)),
        *_card_changes(_cards(before), _cards(after)),
    ]


def _cards(view: HostView) -> dict[str, CardView]:
    return {card.reader: card for card in view.cards}


SERVICES: tuple[tuple[str, Callable[[HostView], object]], ...] = (
    ("PC/SC service", lambda view: "available" if view.pcsc_available else "unavailable"),
    ("Cryptolib CPS", lambda view: view.cryptolib_version or "not installed"),
)


def _service_changes(before: HostView, after: HostView) -> list[str]:
    return [
        f"{name}: {read(before)} -> {read(after)}"
        for name, read in SERVICES
        if read(before) != read(after)
    ]


def _reader_changes(
    before: tuple[ReaderView, ...],
    after: tuple[ReaderView, ...],
    cards_before: dict[str, CardView],
    cards_after: dict[str, CardView],
) -> list[str]:
    """Readers plugged and unplugged; a state change only when no card change explains it."""
    old, new = {r.name: r for r in before}, {r.name: r for r in after}
    lines = [f"reader removed: {name}" for name in old if name not in new]
    lines += [f"reader added: {name}" for name in new if name not in old]
    for name in old.keys() & new.keys():
        same_card = (name in cards_before) == (name in cards_after)
        if old[name].state != new[name].state and same_card:
            lines.append(f"reader {name}: {old[name].state} -> {new[name].state}")
    return sorted(lines)


def _card_changes(before: dict[str, CardView], after: dict[str, CardView]) -> list[str]:
    lines: list[str] = []
    for reader in sorted(before.keys() | after.keys()):
        old, new = before.get(reader), after.get(reader)
        if new is None and old is not None:
            lines.append(f"card removed from {reader}: {_card(old)}")
        elif old is None and new is not None:
            lines.append(f"card inserted in {reader}: {_card(new)}")
        elif old is not None and new is not None:
            lines += _same_reader(reader, old, new)
    return lines


def _same_reader(reader: str, old: CardView, new: CardView) -> list[str]:
    if (old.atr, old.kind, old.serial) != (new.atr, new.kind, new.serial):
        return [f"card replaced in {reader}: {_card(old)} -> {_card(new)}"]
    old_certificates, new_certificates = _certificates(old), _certificates(new)
    return [
        f"card {_card(new)} in {reader}: {role} certificate "
        f"{old_certificates.get(role, 'none')} -> {new_certificates.get(role, 'none')}"
        for role in sorted(old_certificates.keys() | new_certificates.keys())
        if old_certificates.get(role) != new_certificates.get(role)
    ]


def _card(card: CardView) -> str:
    return f"{card.kind} {card.serial}" if card.serial else card.kind


def _certificates(card: CardView) -> dict[str, str]:
    return {certificate.role: _certificate(certificate) for certificate in card.certificates}


def _certificate(certificate: CertificateView) -> str:
    if certificate.error:
        return f"unreadable ({certificate.error})"
    holder = " ".join(filter(None, (certificate.given_name, certificate.surname)))
    until = f"until {certificate.not_after:%Y-%m-%d}" if certificate.not_after else "no expiry"
    return f"{holder or certificate.id_nat or '?'}, {until}"
