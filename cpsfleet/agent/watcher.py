"""Card insertion and removal as they happen: PC/SC status-change waits, no polling.

``SCardGetStatusChange`` blocks until a reader's state differs from the one we
pass in; the special reader ``\\\\?PnP?\\Notification`` also wakes it when a
reader is plugged or unplugged. ``SCardCancel`` wakes it for shutdown.

pcsc-lite counts each card insertion and removal in the upper 16 bits of a reader's
state, and wakes the wait when the count we pass in is not its own. A card that came and
went while the agent was busy (scanning, or starved of CPU) shows only in that count: it
is reported as an insertion and a removal of a card the agent did not see.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartcard import scard

from cpsfleet.agent.pcsc import PcscError, _check

log = logging.getLogger(__name__)
PNP_READER = "\\\\?PnP?\\Notification"
INFINITE = 0xFFFFFFFF
EVENT_COUNT_SHIFT = 16
EVENT_COUNT_SPAN = 1 << 16  # the count wraps around


@dataclass(frozen=True)
class Slot:
    """What we know of one reader: whether a card is in it, its ATR, pcsc-lite's event count."""

    present: bool
    atr: bytes
    events: int


@dataclass(frozen=True)
class Change:
    type: str  # card_inserted, card_removed, reader_added, reader_removed
    reader: str
    atr: bytes | None = b""  # None: a card that came and went between two looks, unseen


def slot(flags: int, atr: bytes) -> Slot:
    return Slot(bool(flags & scard.SCARD_STATE_PRESENT), atr, flags >> EVENT_COUNT_SHIFT)


def changes(before: dict[str, Slot], after: dict[str, Slot]) -> list[Change]:
    """What happened between two snapshots of the readers, in the order it must have happened."""
    found: list[Change] = []
    for name in sorted(before.keys() - after.keys()):
        if before[name].present:
            found.append(Change("card_removed", name, before[name].atr))
        found.append(Change("reader_removed", name))
    for name in sorted(after.keys() - before.keys()):
        found.append(Change("reader_added", name))
        if after[name].present:
            found.append(Change("card_inserted", name, after[name].atr))
    for name in sorted(before.keys() & after.keys()):
        found += _card_changes(name, before[name], after[name])
    return found


def _card_changes(name: str, old: Slot, new: Slot) -> list[Change]:
    """A card swapped between two waits shows as the same presence with a new event count
    (or another ATR). An ATR that only appears late, after the card was seen present with
    none, is the same card. Events counted beyond those seen are cards that came and went
    unseen, each an insertion then a removal, between the old card's removal and the new
    card's insertion."""
    other_atr = bool(old.atr) and bool(new.atr) and old.atr != new.atr
    counted = (new.events - old.events) % EVENT_COUNT_SPAN
    swapped = old.present and new.present and (other_atr or counted > 0)
    removed = (
        [Change("card_removed", name, old.atr)]
        if old.present and (swapped or not new.present)
        else []
    )
    inserted = (
        [Change("card_inserted", name, new.atr)]
        if new.present and (swapped or not old.present)
        else []
    )
    unseen = max(0, counted - len(removed) - len(inserted)) // 2
    came_and_went = [Change("card_inserted", name, None), Change("card_removed", name, None)]
    return removed + came_and_went * unseen + inserted


def wait_states(flags: dict[str, int], readers: list[str]) -> dict[str, int]:
    """What to wait on: each reader's last flags as pcsc-lite gave them, its event count
    included (new readers unaware), and PnP. pcsc-lite compares a count of 0 with nothing:
    a card that comes and goes unseen in a reader without a card since pcscd started shows
    at the reader's next event, late but counted."""
    unaware = scard.SCARD_STATE_UNAWARE
    waits = {name: flags.get(name, unaware) for name in readers}
    return {**waits, PNP_READER: flags.get(PNP_READER, unaware)}


class CardWatcher(threading.Thread):
    """Calls ``on_changes`` from its own thread each time readers or cards change."""

    def __init__(self, on_changes: Callable[[list[Change]], None], retry_s: float = 5) -> None:
        super().__init__(name="card-watcher", daemon=True)
        self.on_changes = on_changes
        self.retry_s = retry_s
        self.stopping = threading.Event()
        self.context: Any = None
        self.healthy = True  # PC/SC answered last time we asked

    def stop(self) -> None:
        self.stopping.set()
        if self.context is not None:
            scard.SCardCancel(self.context)

    def run(self) -> None:
        """Watch; when PC/SC fails or comes back, report it as a change with no card event
        (``on_changes([])``) so a fresh status tells the fleet."""
        while not self.stopping.is_set():
            try:
                self._watch()
            except PcscError as error:
                if self.healthy and not self.stopping.is_set():
                    self.on_changes([])
                self.healthy = False
                log.warning("PC/SC unavailable (%s); watching again in %.0f s", error, self.retry_s)
                self.stopping.wait(self.retry_s)

    def _watch(self) -> None:
        self.context = _check(
            "SCardEstablishContext", scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        )
        try:
            known: dict[str, Slot] | None = None
            states = wait_states({}, self._readers())
            if not self.healthy:
                self.healthy = True
                self.on_changes([])
            while not self.stopping.is_set():
                known, states = self._step(known, states)
        finally:
            context, self.context = self.context, None
            scard.SCardReleaseContext(context)

    def _step(
        self, known: dict[str, Slot] | None, states: dict[str, int]
    ) -> tuple[dict[str, Slot] | None, dict[str, int]]:
        """Wait for a change (at once the first time), report it, return the new baseline."""
        timeout = 0 if known is None else INFINITE
        result = scard.SCardGetStatusChange(self.context, timeout, list(states.items()))
        if result[0] == scard.SCARD_E_CANCELLED:
            return known, states
        new = _check("SCardGetStatusChange", result)
        readers = self._readers()
        current = {name: slot(flags, bytes(atr)) for name, flags, atr in new if name in readers}
        found = changes(known, current) if known is not None else []
        if found:
            self.on_changes(found)
        return current, wait_states({name: flags for name, flags, _ in new}, readers)

    def _readers(self) -> list[str]:
        result = scard.SCardListReaders(self.context, [])
        if result[0] == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        return list(_check("SCardListReaders", result))
