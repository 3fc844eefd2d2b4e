"""The card watcher's reading of pcsc-lite's event count, against an in-memory reader.

pcsc-lite counts every insertion and removal in the upper 16 bits of a reader's state. The
agent looks at the readers only now and then (it scans, it may be starved of CPU): what it
reports from its looks must be every change that happened, in order, naming a card only
when it saw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st
from smartcard import scard

from cpsfleet.agent.watcher import PNP_READER, Change, Slot, changes, slot, wait_states

CPS3_ATR = bytes.fromhex("3BAC00402A001225006480000310009000")
CPS4_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
VITALE_ATR = bytes.fromhex("3B751300004509EA9000")
READER = "Virtual PCD 00 00"


@dataclass
class Reader:
    """A reader as pcsc-lite keeps it: a card or none, and its count of card events."""

    count: int = 0
    atr: bytes | None = None

    def insert(self, atr: bytes) -> None:
        self.atr, self.count = atr, (self.count + 1) % 0x10000

    def remove(self) -> None:
        self.atr, self.count = None, (self.count + 1) % 0x10000

    def flags(self) -> int:
        """dwEventState, as SCardGetStatusChange returns it."""
        present = scard.SCARD_STATE_PRESENT if self.atr else scard.SCARD_STATE_EMPTY
        return present | self.count << 16

    def look(self) -> Slot:
        return slot(self.flags(), self.atr or b"")


@dataclass
class Agent:
    """What the watcher reports from the looks it takes."""

    known: Slot
    reported: list[Change] = field(default_factory=list)

    def look(self, reader: Reader) -> None:
        now = reader.look()
        self.reported += changes({READER: self.known}, {READER: now})
        self.known = now


def test_the_count_is_read_from_the_upper_16_bits() -> None:
    flags = scard.SCARD_STATE_PRESENT | scard.SCARD_STATE_CHANGED | 7 << 16
    assert slot(flags, CPS3_ATR) == Slot(True, CPS3_ATR, 7)
    assert slot(scard.SCARD_STATE_EMPTY | 0xFFFF << 16, b"") == Slot(False, b"", 0xFFFF)


def test_the_next_wait_passes_back_the_count_pcsc_lite_gave() -> None:
    """pcsc-lite wakes the wait at once when the count passed in is not its own: a change
    made while the agent was busy is never waited through."""
    flags = scard.SCARD_STATE_EMPTY | 41 << 16
    waits = wait_states({READER: flags}, [READER, "Reader plugged since"])
    assert waits == {
        READER: flags,
        "Reader plugged since": scard.SCARD_STATE_UNAWARE,
        PNP_READER: scard.SCARD_STATE_UNAWARE,
    }


def test_a_card_that_came_and_went_unseen_is_an_insertion_and_a_removal_without_a_card() -> None:
    reader = Reader(count=4)
    agent = Agent(reader.look())
    reader.insert(CPS3_ATR)
    reader.remove()
    agent.look(reader)
    assert agent.reported == [
        Change("card_inserted", READER, None),
        Change("card_removed", READER, None),
    ]


def test_unseen_cards_fall_between_the_removal_and_the_insertion_seen() -> None:
    reader = Reader(count=9)
    reader.insert(CPS3_ATR)
    agent = Agent(reader.look())
    reader.remove()
    for _ in range(2):
        reader.insert(VITALE_ATR)
        reader.remove()
    reader.insert(CPS4_ATR)
    agent.look(reader)
    unseen = [Change("card_inserted", READER, None), Change("card_removed", READER, None)]
    assert agent.reported == [
        Change("card_removed", READER, CPS3_ATR),
        *unseen,
        *unseen,
        Change("card_inserted", READER, CPS4_ATR),
    ]


def test_the_count_wraps_around() -> None:
    reader = Reader(count=0xFFFF)
    agent = Agent(reader.look())
    reader.insert(CPS3_ATR)
    reader.remove()
    reader.insert(CPS3_ATR)
    agent.look(reader)
    assert [(c.type, c.atr) for c in agent.reported] == [
        ("card_inserted", None),
        ("card_removed", None),
        ("card_inserted", CPS3_ATR),
    ]


def test_without_a_count_presence_alone_tells() -> None:
    """A PC/SC that keeps no count (always 0) still gives insertions and removals seen."""
    empty, full = Slot(False, b"", 0), Slot(True, CPS3_ATR, 0)
    assert changes({READER: empty}, {READER: full}) == [Change("card_inserted", READER, CPS3_ATR)]
    assert changes({READER: full}, {READER: empty}) == [Change("card_removed", READER, CPS3_ATR)]


# A session at a reader: each step inserts a card (one of three), removes it, or lets the
# agent look; the agent also looks at the end.
STEPS = st.lists(st.sampled_from([CPS3_ATR, CPS4_ATR, VITALE_ATR, "remove", "look"]), max_size=60)


@given(STEPS, st.integers(0, 0xFFFF))
def test_every_change_is_reported_in_order_naming_only_the_cards_seen(
    steps: list[bytes | str], start: int
) -> None:
    reader = Reader(count=start)
    agent = Agent(reader.look())
    played: list[tuple[str, bytes]] = []  # what happened, card by card
    seen: set[int] = set()  # the cards (by their place in ``played``) present at a look
    for step in [*steps, "look"]:
        if step == "look":
            agent.look(reader)
            seen |= {len(played) - 1} if reader.atr else set()
        elif step == "remove" and reader.atr:
            reader.remove()
            played.append(("card_removed", played[-1][1]))
        elif isinstance(step, bytes) and not reader.atr:
            reader.insert(step)
            played.append(("card_inserted", step))
    # A card's insertion is at an even place in ``played``, its removal right after it.
    truth = [
        Change(kind, READER, atr if place - place % 2 in seen else None)
        for place, (kind, atr) in enumerate(played)
    ]
    assert agent.reported == truth
