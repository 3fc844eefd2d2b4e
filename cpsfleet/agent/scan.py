"""One full inventory of the workstation: PC/SC readers and cards, Cryptolib, host.

Nothing here lets an error escape: each failure becomes a ``Problem`` on the
item it concerns, and the rest of the inventory is still reported.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

from cpsfleet.agent.atr import classify_atr
from cpsfleet.agent.certificates import read_certificate
from cpsfleet.agent.cps import DIALECTS, CardContents, CpsReader
from cpsfleet.agent.host import host_info
from cpsfleet.agent.middleware import detect_cryptolib
from cpsfleet.agent.pcsc import PcscContext, PcscError, ReaderStatus
from cpsfleet.agent.usb import reader_models
from cpsfleet.i18n import N_
from cpsfleet.schemas.documents import Card, Pcsc, Problem, Reader, Status
from cpsfleet.schemas.times import format_utc

# Said in English in the status document; the summary shows it translated (summary.said).
MUTE = N_("the card does not answer (mute): reinsert it")


def read_contents(context: PcscContext, reader: str, kind: str) -> CardContents:
    try:
        with context.connect(reader) as connection:
            return CpsReader(connection, DIALECTS[kind]).read()
    except PcscError as error:
        what = "the card was removed during the scan" if error.card_gone else str(error)
        return CardContents(problems=[Problem("card", what)])


def inventory_card(context: PcscContext, status: ReaderStatus, now: datetime) -> Card:
    card_type = classify_atr(status.atr)
    card = Card(status.atr.hex().upper(), card_type.kind, card_type.label, card_type.is_cps)
    if status.mute:
        return replace(card, problems=(Problem("card", MUTE),))
    if card_type.kind not in DIALECTS:
        return card
    contents = read_contents(context, status.name, card_type.kind)
    certificates = (
        read_certificate(data, label=label, now=now) for label, data in contents.certificates
    )
    return replace(
        card,
        serial=contents.serial,
        certificates=tuple(certificates),
        problems=tuple(contents.problems),
        pin=contents.pin,
    )


def inventory_reader(context: PcscContext, status: ReaderStatus, now: datetime) -> Reader:
    card = None
    if status.state in ("card_present", "in_use"):
        card = inventory_card(context, status, now)
    return Reader(status.name, status.state, card)


def reader_statuses(context: PcscContext) -> list[ReaderStatus]:
    """Reader states; listed again once if a reader vanished between the two calls."""
    try:
        return context.statuses(context.readers())
    except PcscError:
        return context.statuses(context.readers())


def inventory_pcsc(now: datetime) -> tuple[Pcsc, tuple[Reader, ...], tuple[Problem, ...]]:
    try:
        context = PcscContext()
    except PcscError as error:
        return Pcsc(False, str(error)), (), ()
    with context:
        try:
            statuses = reader_statuses(context)
        except PcscError as error:
            return Pcsc(True), (), (Problem("pcsc", str(error)),)
        readers = [inventory_reader(context, s, now) for s in statuses]
    models = reader_models(reader.name for reader in readers)
    return Pcsc(True), tuple(replace(r, model=models.get(r.name)) for r in readers), ()


def scan(
    site: str | None = None, host_id: str | None = None, now: datetime | None = None
) -> Status:
    started = time.monotonic()
    now = now or datetime.now(UTC)
    pcsc, readers, problems = inventory_pcsc(now)
    cryptolib = detect_cryptolib()
    return Status(
        host=host_info(site, host_id),
        scanned_at=format_utc(now),
        duration_ms=round((time.monotonic() - started) * 1000),
        pcsc=pcsc,
        readers=readers,
        cryptolib=cryptolib,
        problems=problems,
    )
