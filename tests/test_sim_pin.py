"""The simulated CPS PIN: GET DATA tells its tries without changing them, VERIFY spends them.

The GET DATA bytes are those the official Cryptolib sends and accepts; VERIFY answers as
ISO 7816-4 cards do (63 Cx, 69 83).
"""

from __future__ import annotations

import pytest

from cpsfleet.sim import pkcs15
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.faults import Faults
from cpsfleet.sim.iso import IsoCard
from cpsfleet.sim.profile import Profile

SELECT_MF = "00 A4 09 0C 02 3F00"
GET_DATA = "00 CB 3F FF 0A 4D 08 70 06 BF 81 01 02 A0 80 00"
OK = "90 00"
NO_FAULTS = Faults()


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def cps(kind: str = "cps3", tries_left: int = 3, faults: Faults = NO_FAULTS) -> IsoCard:
    card = build_card(Profile(kind, serial="99213845", pin_tries_left=tries_left, faults=faults))
    return card.card if not isinstance(card, IsoCard) else card


def tries(card: IsoCard) -> bytes:
    assert card.process(h(SELECT_MF)) == h(OK)
    return card.process(h(GET_DATA))


@pytest.mark.parametrize("left", [3, 2, 1, 0])
def test_get_data_answers_the_tries_as_cps_facts_give_them(left: int) -> None:
    expected = h(f"70 0C BF 81 01 08 A0 06 9A 01 03 9B 01 0{left}" + OK)
    assert tries(cps(tries_left=left)) == expected


def test_get_data_without_le_asks_for_get_response() -> None:
    card = cps(tries_left=2)
    card.process(h(SELECT_MF))
    assert card.process(h(GET_DATA)[:-1]) == h("61 0E")
    assert card.process(h("00 C0 00 00 0E")) == h("70 0C BF 81 01 08 A0 06 9A 01 03 9B 01 02 90 00")


def test_get_data_a_hundred_times_changes_nothing() -> None:
    card = cps(tries_left=1)
    answers = {tries(card) for _ in range(100)}
    assert answers == {h("70 0C BF 81 01 08 A0 06 9A 01 03 9B 01 01 90 00")}
    assert card.pin is not None and card.pin.tries_left == 1


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("00 CB 3F FF 0A 4D 08 70 06 BF 81 02 02 A0 80 00", "6A 88"),  # no PIN 02
        ("00 CB 00 00 0A 4D 08 70 06 BF 81 01 02 A0 80 00", "6A 86"),
        ("00 CB 3F FF 04 4D 02 70 00 00", "6A 80"),
    ],
    ids=["other reference", "other p1 p2", "other data"],
)
def test_get_data_of_something_else_is_refused(command: str, status: str) -> None:
    card = cps()
    card.process(h(SELECT_MF))
    assert card.process(h(command)) == h(status)


def test_get_data_needs_the_mf_selected_where_the_pin_lives() -> None:
    card = cps()
    assert card.process(h("00 A4 09 0C 06 3F00 0001 5031")) == h(OK)
    assert card.process(h(GET_DATA)) == h("6A 88")


def test_each_wrong_pin_costs_a_try_until_it_blocks() -> None:
    card = cps()
    wrong = "00 20 00 01 04 " + b"0000".hex()
    assert [card.process(h(wrong)) for _ in range(3)] == [h("63 C2"), h("63 C1"), h("63 C0")]
    assert tries(card)[-4:] == h("01 00 90 00")
    right = "00 20 00 01 04 " + b"1234".hex()
    assert card.process(h(right)) == h("69 83")  # blocked: even the right PIN is refused
    assert card.process(h("00 20 00 01")) == h("69 83")


def test_the_right_pin_gives_every_try_back() -> None:
    card = cps(tries_left=1)
    assert card.process(h("00 20 00 01 04 " + b"1234".hex())) == h(OK)
    assert tries(card)[-4:] == h("01 03 90 00")


def test_verify_without_a_pin_only_tells_the_tries_left() -> None:
    card = cps(tries_left=2)
    assert [card.process(h("00 20 00 01")) for _ in range(5)] == [h("63 C2")] * 5
    assert card.pin is not None and card.pin.tries_left == 2


@pytest.mark.parametrize(
    ("command", "status"), [("00 20 00 02 04 31323334", "6A 88"), ("00 20 01 01", "6A 86")]
)
def test_verify_of_another_pin_is_refused_without_spending_a_try(command: str, status: str) -> None:
    card = cps()
    assert card.process(h(command)) == h(status)
    assert card.pin is not None and card.pin.tries_left == 3


def test_a_reset_keeps_the_counter_as_the_card_memory_does() -> None:
    card = cps()
    card.process(h("00 20 00 01 04 " + b"0000".hex()))
    card.reset()
    assert card.pin is not None and card.pin.tries_left == 2


def test_the_aodf_names_pin_01_initialized_ascii_4_to_8_digits() -> None:
    card = cps()
    card.process(h("00 A4 09 0C 06 3F00 0001 5034"))
    label = pkcs15.PIN_LABEL.encode().hex()
    assert card.process(h("00 B0 00 00 2E")) == h(
        f"30 2C 30 0E 0C 0C {label} 30 03 04 01 01"
        "A1 15 30 13 03 02 03 08 0A 01 01 02 01 04 02 01 08 02 01 08 80 01 01" + OK
    )


def test_a_card_without_aodf_still_has_its_pin() -> None:
    card = cps(faults=Faults(no_aodf=True))
    assert card.process(h("00 A4 09 0C 06 3F00 0001 5034")) == h("6A 82")
    assert tries(card)[-4:] == h("01 03 90 00")


def test_cps4_answers_get_data_on_channel_1_in_its_applet() -> None:
    card = cps("cps4", tries_left=0)
    assert card.process(h("01 A4 04 0C 08 8025000001FF0100")) == h(OK)
    assert card.process(h("01" + GET_DATA.replace(" ", "")[2:])) == h(
        "70 0C BF 81 01 08 A0 06 9A 01 03 9B 01 00 90 00"
    )


@pytest.mark.parametrize("kind", ["vitale", "generic"])
def test_cards_that_are_not_a_cps_have_no_pin(kind: str) -> None:
    card = build_card(Profile(kind))
    assert isinstance(card, IsoCard) and card.pin is None
    assert card.process(h(GET_DATA)) == h("6D 00")
    assert card.process(h("00 20 00 01")) == h("6D 00")


# --- the CPS4: its tries told to a VERIFY without data, as Cryptolib's card-cps4.c asks --------

SELECT_CHIPDOC = "01 A4 04 0C 08 8025000001FF0100"


@pytest.mark.parametrize(
    ("left", "status"), [(3, "63 C3"), (2, "63 C2"), (1, "63 C1"), (0, "69 83")]
)
@pytest.mark.parametrize("verify", ["01 20 00 01", "01 20 00 01 00"], ids=["T=1", "T=0"])
def test_cps4_verify_without_data_on_channel_1_tells_the_tries_and_spends_none(
    left: int, status: str, verify: str
) -> None:
    """Cryptolib sends it bare (case 1); under T=0 it goes out with P3 = 00."""
    card = cps("cps4", tries_left=left)
    assert card.process(h(SELECT_CHIPDOC)) == h(OK)
    assert [card.process(h(verify)) for _ in range(10)] == [h(status)] * 10
    assert card.pin is not None and card.pin.tries_left == left


def test_cps4_verify_with_a_wrong_pin_still_costs_a_try() -> None:
    card = cps("cps4")
    card.process(h(SELECT_CHIPDOC))
    assert card.process(h("01 20 00 01 04 " + b"0000".hex())) == h("63 C2")
    assert card.process(h("01 20 00 01")) == h("63 C2")
    assert card.pin is not None and card.pin.tries_left == 2
