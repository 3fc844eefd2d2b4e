"""Reading the PIN state without pcscd: the AODF's PIN reference, GET DATA's counters, a
CPS4's answer to VERIFY without data, and the reader's PIN step against the simulated card
(whatever it answers, never a VERIFY carrying a PIN)."""

from __future__ import annotations

import re

import pytest

from cpsfleet.agent import pin
from cpsfleet.agent.apdu import CardError
from cpsfleet.agent.cps import CPS3, CPS4, CpsReader
from cpsfleet.schemas.documents import Pin
from cpsfleet.sim import der, pkcs15
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.faults import Faults, FaultyCard
from cpsfleet.sim.iso import IsoCard
from cpsfleet.sim.profile import Profile

APP = bytes.fromhex("3F000001")
# As the official Cryptolib reads them: the ODF's AODF entry, and GET DATA's answer for PIN 01.
ODF = bytes.fromhex("A80A3008 04063F0000015034 A40A3008 04063F0000015036")
COUNTERS = "700C BF8101 08 A006 9A0103 9B01{left:02X}"
PUK_FLAGS = der.bit_string(b"\x0a", unused_bits=1)  # initialized + unblockingPin


def counters(left: int, reference: int = 1) -> bytes:
    data = bytes.fromhex(COUNTERS.format(left=left))
    return data.replace(b"\xbf\x81\x01", bytes([0xBF, 0x81, reference]))


def pin_entry(reference: bytes, flags: bytes = der.bit_string(b"\x08", unused_bits=3)) -> bytes:
    attributes = der.sequence(flags, der.tlv(0x0A, b"\x01"), der.tlv(0x80, reference))
    return der.sequence(der.sequence(), der.sequence(), der.tlv(0xA1, attributes))


class CardTransport:
    """Forwards every APDU to a simulated card, or answers ``answers[ins]`` instead."""

    def __init__(self, card: IsoCard | FaultyCard, answers: dict[int, bytes] | None = None):
        self.card = card
        self.answers = answers or {}
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        response = self.answers.get(apdu[1]) or self.card.process(apdu)
        return response[:-2], int.from_bytes(response[-2:], "big")


def read(profile: Profile, answers: dict[int, bytes] | None = None) -> tuple[Pin, CardTransport]:
    transport = CardTransport(build_card(profile), answers)
    dialect = CPS4 if profile.kind == "cps4" else CPS3
    contents = CpsReader(transport, dialect).read()
    assert contents.pin is not None
    assert not [apdu for apdu in transport.sent if apdu[1] == 0x20 and len(apdu) > 5], (
        "the agent sent a VERIFY with a PIN"
    )
    return contents.pin, transport


# --- the files and answers ---------------------------------------------------------------------


def test_the_aodf_path_is_the_odf_entry_tagged_a8() -> None:
    assert pin.aodf_path(ODF) == APP + bytes.fromhex("5034")


def test_an_odf_without_a8_says_there_is_no_aodf() -> None:
    with pytest.raises(pin.NoAodf, match="no PKCS#15 authentication objects"):
        pin.aodf_path(bytes.fromhex("A40A3008 04063F0000015036"))


def test_the_pin_reference_is_the_simulated_aodf_entrys() -> None:
    assert pin.pin_reference(pkcs15.aodf_pin_entry("Code porteur", 1, 0x01)) == 0x01


def test_the_puk_is_skipped_for_the_holders_pin() -> None:
    aodf = pin_entry(b"\x02", PUK_FLAGS) + pin_entry(b"\x01")
    assert pin.pin_reference(aodf) == 0x01


@pytest.mark.parametrize(
    ("aodf", "message"),
    [
        (pin_entry(b""), "no usable pinReference: (empty)"),
        (pin_entry(b"\x81"), "no usable pinReference: 81"),
        (pin_entry(b"\x02", PUK_FLAGS), "holds no PIN of the holder"),
        (b"", "holds no PIN of the holder"),
    ],
    ids=["empty reference", "beyond one tag byte", "only a PUK", "empty file"],
)
def test_an_aodf_without_a_usable_pin_is_a_card_error(aodf: bytes, message: str) -> None:
    with pytest.raises(CardError, match=re.escape(message)):
        pin.pin_reference(aodf)


@pytest.mark.parametrize("left", [3, 2, 1, 0])
def test_get_datas_answer_gives_tries_left_and_maximum(left: int) -> None:
    assert pin.pin_from_security_data(counters(left), 1) == Pin(tries_left=left, tries_max=3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (counters(3, reference=2), "something else than PIN 1's counters"),
        (counters(4), "4 PIN tries left of 3"),
        (bytes.fromhex("7009 BF8101 05 A003 9A0103"), "lack a one-byte 9B"),
        (bytes.fromhex("6F00"), "something else than PIN 1's counters"),
    ],
    ids=["another pin", "more left than the maximum", "no tries left", "another object"],
)
def test_anything_else_from_get_data_is_a_card_error(data: bytes, message: str) -> None:
    with pytest.raises(CardError, match=message):
        pin.pin_from_security_data(data, 1)


# --- the reader's PIN step on the simulated card ------------------------------------------------


@pytest.mark.parametrize("left", [3, 1, 0])
def test_the_reader_reads_the_simulated_tries_with_get_data_after_selecting_the_mf(
    left: int,
) -> None:
    found, transport = read(Profile("cps3", serial="99213845", pin_tries_left=left))
    assert found == Pin(tries_left=left, tries_max=3)
    assert transport.sent[-2:] == [
        bytes.fromhex("00A4090C023F00"),
        bytes.fromhex("00CB3FFF0A4D087006BF810102A08000"),
    ]


def test_a_card_without_aodf_is_not_asked_and_says_why() -> None:
    found, transport = read(Profile("cps3", faults=Faults(no_aodf=True)))
    assert found == Pin(error=pin.NOT_READ + pin.NO_AODF)
    assert not [apdu for apdu in transport.sent if apdu[1] == 0xCB]


@pytest.mark.parametrize("left", [3, 2, 1, 0])
def test_a_cps4_is_asked_with_a_verify_without_data_on_channel_1(left: int) -> None:
    profile = Profile("cps4", serial="99213845", pin_tries_left=left)
    found, transport = read(profile)
    assert found == Pin(tries_left=left, tries_max=3)
    assert transport.sent[-1] == bytes.fromhex("01200001")
    assert not [apdu for apdu in transport.sent if apdu[1] == 0xCB]
    assert {apdu[0] for apdu in transport.sent} == {0x01}
    assert isinstance(transport.card, IsoCard) and transport.card.pin is not None
    assert transport.card.pin.tries_left == left


def test_a_cps4_is_read_with_cryptolibs_iso_select_asking_the_fci() -> None:
    _, transport = read(Profile("cps4", serial="99213845"))
    selects = [apdu for apdu in transport.sent if apdu[1] == 0xA4]
    assert selects[1] == bytes.fromhex("01A4080002D003")
    assert all(apdu[2:4] == b"\x08\x00" for apdu in selects[1:])


@pytest.mark.parametrize(
    ("sw", "found"),
    [
        (0x63C3, Pin(3, 3)),
        (0x63C2, Pin(2, 3)),
        (0x63C1, Pin(1, 3)),
        (0x63C0, Pin(0, 3)),
        (0x6983, Pin(0, 3)),
    ],
)
def test_verify_without_data_tells_the_tries_left_of_three(sw: int, found: Pin) -> None:
    assert pin.pin_from_verify_status(sw, 1) == found


@pytest.mark.parametrize("sw", [0x9000, 0x63C4, 0x6A88, 0x6982, 0x6300])
def test_any_other_answer_to_verify_without_data_is_a_card_error(sw: int) -> None:
    with pytest.raises(CardError, match=f"VERIFY without data of PIN 01: card answered {sw:04X}"):
        pin.pin_from_verify_status(sw, 1)


def test_a_cps4_refusing_verify_without_data_has_no_tries_and_says_why() -> None:
    found, _ = read(Profile("cps4", serial="99213845"), {0x20: bytes.fromhex("9000")})
    assert found == Pin(error=pin.NOT_READ + "VERIFY without data of PIN 01: card answered 9000")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("6A88", "GET DATA of PIN 01's tries: card answered 6A88"),
        ("700C BF8101 08 A006 9A0103 9B0109 9000", "9 PIN tries left of 3"),
        ("DEADBEEF 9000", "not read: "),
    ],
    ids=["refused", "inconsistent", "garbage"],
)
def test_a_get_data_the_card_refuses_or_garbles_is_the_pins_error_not_a_problem(
    answer: str, message: str
) -> None:
    found, _ = read(Profile("cps3", serial="99213845"), {0xCB: bytes.fromhex(answer)})
    assert found.tries_left is None and found.tries_max is None
    assert found.error is not None and found.error.startswith(pin.NOT_READ)
    assert message in found.error


def test_a_card_whose_odf_is_unreadable_has_no_pin_state_and_no_more_commands() -> None:
    found, transport = read(Profile("cps3"), {0xB0: bytes.fromhex("6A82")})
    assert found == Pin(error=pin.NOT_READ + "the card's PKCS#15 directory (ODF) is unreadable")
    assert not [apdu for apdu in transport.sent if apdu[1] == 0xCB]
