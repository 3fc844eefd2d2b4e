"""What changed between two views of a host, as ``cpsfleet controller rescan`` prints it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from cpsfleet.controller.commands.changes import inventory_changes
from cpsfleet.controller.model import CardView, CertificateView, HostView, ReaderView

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
READER_0, READER_1 = "Virtual PCD 00 00", "Virtual PCD 00 01"


def certificate(not_after: datetime, role: str = "authentication") -> CertificateView:
    return CertificateView(role, None, "810002813839", "DUPONT", "Jean", "10", AT, not_after)


def card(serial: str = "99213845", *certificates: CertificateView) -> CardView:
    return CardView(READER_0, "3BAC", "cps3", "CPS3", True, serial, tuple(certificates))


def host(*cards: CardView, readers: tuple[str, ...] = (READER_0, READER_1)) -> HostView:
    states = {c.reader: "card_present" for c in cards}
    return HostView(
        "ws-a",
        "ws-a",
        "Lyon",
        AT,
        AT,
        last_status_at=AT,
        pcsc_available=True,
        cryptolib_version="5.2.2",
        readers=tuple(ReaderView(name, states.get(name, "empty")) for name in readers),
        cards=cards,
    )


def test_the_same_inventory_is_no_change() -> None:
    assert inventory_changes(host(card()), host(card())) == []


def test_a_host_never_inventoried_before() -> None:
    assert inventory_changes(None, host()) == ["first inventory of this host"]


def test_cards_inserted_removed_and_replaced() -> None:
    assert inventory_changes(host(), host(card())) == [
        f"card inserted in {READER_0}: cps3 99213845"
    ]
    assert inventory_changes(host(card()), host()) == [
        f"card removed from {READER_0}: cps3 99213845"
    ]
    assert inventory_changes(host(card()), host(card("20991234"))) == [
        f"card replaced in {READER_0}: cps3 99213845 -> cps3 20991234"
    ]


def test_certificates_renewed_on_a_card_left_in_its_reader() -> None:
    old = card("99213845", certificate(datetime(2026, 12, 1, tzinfo=UTC)))
    new = card("99213845", certificate(datetime(2029, 12, 1, tzinfo=UTC)))
    assert inventory_changes(host(old), host(new)) == [
        f"card cps3 99213845 in {READER_0}: authentication certificate "
        "Jean DUPONT, until 2026-12-01 -> Jean DUPONT, until 2029-12-01"
    ]


def test_readers_and_services() -> None:
    before = host(readers=(READER_0, READER_1))
    after = replace(
        host(readers=(READER_1, "Virtual PCD 00 02")),
        pcsc_available=False,
        cryptolib_version=None,
    )
    assert inventory_changes(before, after) == [
        "PC/SC service: available -> unavailable",
        "Cryptolib CPS: 5.2.2 -> not installed",
        "reader added: Virtual PCD 00 02",
        f"reader removed: {READER_0}",
    ]
    mute = replace(host(), readers=(ReaderView(READER_0, "mute"), ReaderView(READER_1, "empty")))
    assert inventory_changes(host(), mute) == [f"reader {READER_0}: empty -> mute"]
