"""The ATR table knows every CPS and Vitale card of pcsc-tools' list, and nothing else."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpsfleet.agent.atr import ATR_TABLE, UNKNOWN, AtrFormatError, AtrRow, classify_atr, parse_hex

SMARTCARD_LIST = Path("/usr/share/pcsc/smartcard_list.txt")


# --- the pcsc-tools list ------------------------------------------------------


@dataclass(frozen=True)
class ListEntry:
    """One card of smartcard_list.txt: its ATR in the list's regex-like form."""

    atr: str
    description: str


@pytest.fixture(scope="module")
def smartcard_list() -> list[ListEntry]:
    if not SMARTCARD_LIST.is_file():
        pytest.fail(
            f"{SMARTCARD_LIST} is missing: the project's setup script installs it "
            "(Debian package pcsc-tools); run the setup script, then the tests"
        )
    return list(_entries(SMARTCARD_LIST.read_text(encoding="utf-8").splitlines()))


def _entries(lines: list[str]) -> Iterator[ListEntry]:
    """ATR lines start at column 0; their description lines start with a tab."""
    atr, description = "", []
    for line in lines:
        if line.startswith("\t"):
            description.append(line.strip())
        elif line.strip() and not line.startswith("#"):
            if atr:
                yield ListEntry(atr, " / ".join(description))
            atr, description = line.strip(), []
    if atr:
        yield ListEntry(atr, " / ".join(description))


_TOKEN = re.compile(r"\.\*|\[[^\]]*\]|[0-9A-Fa-f.]")
_ANY_BYTE = ("00", "FF", "5A")
_ANY_NIBBLE = "0F"


def _nibble_choices(token: str) -> str:
    """The hex digits one nibble token stands for: ``7``, ``.``, ``[2C]``, ``[1-5]``, ``[6,E]``."""
    if token == ".":
        return _ANY_NIBBLE
    body = token.strip("[]").replace(",", "")
    ranges = re.sub(
        r"(\w)-(\w)",
        lambda m: "".join(f"{i:X}" for i in range(int(m[1], 16), int(m[2], 16) + 1)),
        body,
    )
    return ranges.upper()


def _byte_choices(high: str, low: str) -> tuple[str, ...]:
    if high == low == ".":
        return _ANY_BYTE
    return tuple(a + b for a in _nibble_choices(high) for b in _nibble_choices(low))


def _byte_slots(atr: str) -> list[tuple[str, ...]]:
    """For each byte position, the hex values it may take (``.*`` is zero or one byte)."""
    slots: list[tuple[str, ...]] = []
    pending: list[str] = []
    for token in _TOKEN.findall(atr.replace(" ", "")):
        if token == ".*":
            slots.append(("", "00"))
        elif pending:
            slots.append(_byte_choices(pending.pop(), token))
        else:
            pending.append(token)
    assert not pending, f"odd number of nibbles in {atr!r}"
    return slots


def all_concrete(atr: str) -> list[bytes]:
    """Every ATR the pattern covers, wildcards replaced by a few values such as 00 and FF."""
    products = itertools.product(*_byte_slots(atr))
    return [bytes.fromhex("".join(choice)) for choice in products]


def sample_concrete(atr: str, samples: int = 3) -> list[bytes]:
    """A few ATRs of the pattern: the k-th value of every wildcard, for k < samples."""
    slots = _byte_slots(atr)
    return [bytes.fromhex("".join(s[k % len(s)] for s in slots)) for k in range(samples)]


def test_the_list_parser_reads_every_pattern_form() -> None:
    assert all_concrete("3F 65 25 00 2[2C] 09 [F6]9 90 00") == [
        parse_hex(h)
        for h in (
            "3F6525002209F99000",
            "3F6525002209699000",
            "3F6525002C09F99000",
            "3F6525002C09699000",
        )
    ]
    assert all_concrete("3B 2.") == [bytes.fromhex("3B20"), bytes.fromhex("3B2F")]
    assert all_concrete("3B 0[1-3] ..")[0] == bytes.fromhex("3B0100")
    assert len(all_concrete("3B 0[1-3] ..")) == 9
    assert all_concrete("3B 00.*") == [bytes.fromhex("3B00"), bytes.fromhex("3B0000")]


# --- which entries name a French health card ------------------------------------

_CPS_WORD = re.compile(r"\bCPS\b")
_FRENCH_HEALTH = re.compile(r"Sant[ée]|Profess?ionn?el|ASIP|\bGIP\b|\bIAS\b")
_VITALE_WORD = re.compile(r"\bvita[lt]e\b", re.IGNORECASE)  # the list spells one "VItate"

# What the description says about the generation, checked in this order.
_CPS_KIND_BY_DESCRIPTION = (
    (re.compile(r"contactless", re.IGNORECASE), "cps3-contactless"),
    (re.compile(r"\bV4\b|\bCPS ?4\b"), "cps4"),
)

# Entries of the list whose description does not name the card although the
# ATR is a French health card's: "Health Care card" is one of the Vitale 2 4x 09 EA family.
UNNAMED_HEALTH_CARDS = {"3B 75 13 00 00 46 09 EA 90 00": "vitale2"}


def names_french_cps(entry: ListEntry) -> bool:
    return bool(_CPS_WORD.search(entry.description) and _FRENCH_HEALTH.search(entry.description))


def names_vitale(entry: ListEntry) -> bool:
    return bool(_VITALE_WORD.search(entry.description))


def expected_kind(entry: ListEntry, atr: bytes) -> str:
    """The kind the table must give: CPS generation from the text, Vitale from the convention."""
    if names_french_cps(entry):
        text = entry.description
        return next((kind for rule, kind in _CPS_KIND_BY_DESCRIPTION if rule.search(text)), "cps3")
    # Vitale 1 cards answer in the inverse convention (TS = 3F), Vitale 2 in the direct one.
    return "vitale1" if atr[0] == 0x3F else "vitale2"


def _misclassified(entries: list[ListEntry], expect: dict[str, str] | None = None) -> list[str]:
    wrong = []
    for entry in entries:
        for atr in all_concrete(entry.atr):
            want = expected_kind(entry, atr) if expect is None else expect[entry.atr]
            got = classify_atr(atr).kind
            if got != want:
                wrong.append(f"{atr.hex(' ').upper()} ({entry.description}): {got}, want {want}")
    return wrong


def test_every_french_cps_of_pcsc_tools_is_classified(smartcard_list: list[ListEntry]) -> None:
    entries = [e for e in smartcard_list if names_french_cps(e)]
    assert len(entries) >= 3, "expected the CPS3 contact and contactless entries of pcsc-tools"
    assert _misclassified(entries) == []
    assert all(classify_atr(all_concrete(e.atr)[0]).is_cps for e in entries)


def test_every_vitale_of_pcsc_tools_is_classified(smartcard_list: list[ListEntry]) -> None:
    entries = [e for e in smartcard_list if names_vitale(e) and not names_french_cps(e)]
    assert {expected_kind(e, all_concrete(e.atr)[0]) for e in entries} == {"vitale1", "vitale2"}
    assert _misclassified(entries) == []
    assert not any(classify_atr(all_concrete(e.atr)[0]).is_cps for e in entries)


def test_unnamed_health_cards_of_pcsc_tools_are_classified(smartcard_list: list[ListEntry]) -> None:
    entries = [e for e in smartcard_list if e.atr in UNNAMED_HEALTH_CARDS]
    assert len(entries) == len(UNNAMED_HEALTH_CARDS)
    assert _misclassified(entries, UNNAMED_HEALTH_CARDS) == []


def test_other_cards_called_cps_are_unknown(smartcard_list: list[ListEntry]) -> None:
    # e.g. the Italian "Carta Provinciale dei Servizi (CPS)" of Trento.
    false_friends = [
        e
        for e in smartcard_list
        if re.search(r"\bCPS\b", e.description, re.IGNORECASE) and not names_french_cps(e)
    ]
    assert any("Provincia" in e.description for e in false_friends)
    kinds = {e.atr: {classify_atr(a).kind for a in sample_concrete(e.atr)} for e in false_friends}
    assert {atr: found for atr, found in kinds.items() if found != {"unknown"}} == {}


def test_no_other_card_of_pcsc_tools_is_taken_for_a_health_card(
    smartcard_list: list[ListEntry],
) -> None:
    others = [
        e
        for e in smartcard_list
        if not (names_french_cps(e) or names_vitale(e) or e.atr in UNNAMED_HEALTH_CARDS)
    ]
    assert len(others) > 3000
    wrong = [
        f"{e.atr} ({e.description}): {classify_atr(atr).kind}"
        for e in others
        for atr in sample_concrete(e.atr)
        if classify_atr(atr) != UNKNOWN
    ]
    assert wrong == []


# --- the table on its own ----------------------------------------------------------


@pytest.mark.parametrize("row", ATR_TABLE, ids=lambda row: row.label)
def test_each_row_pattern_is_classified_by_its_own_row(row: AtrRow) -> None:
    card = classify_atr(row.pattern)
    assert (card.kind, card.label) == (row.kind, row.label)


@pytest.mark.parametrize(
    ("atr", "kind", "is_cps"),
    [
        ("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00", "cps3", True),
        ("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E", "cps3-contactless", True),
        ("3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44", "cps4", True),
        ("3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44", "cps4", True),
        ("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00", "cps4", True),
        # pcsc-tools upstream (2026), newer than the list Debian ships.
        ("3B 75 13 00 00 4B 09 EA 90 00", "vitale2", False),
        ("3B 75 13 00 00 4C 09 EA 90 00", "vitale2", False),
        ("3B 75 13 00 00 45 09 FA 90 00", "vitale2", False),
        ("3F 65 25 00 2C 09 69 90 00", "vitale1", False),
        ("3F 65 25 00 A4 09 6A 90 00", "vitale1", False),
    ],
)
def test_known_atrs(atr: str, kind: str, is_cps: bool) -> None:
    card = classify_atr(parse_hex(atr))
    assert (card.kind, card.is_cps) == (kind, is_cps)


@pytest.mark.parametrize(
    "atr",
    [
        # CPS3 contact: bytes 1-4 and 11-13 are masked out.
        "3B 00 00 00 00 00 12 25 00 64 80 FF FF FF 00 90 00",
        "3B AC 00 40 2A 00 12 25 00 64 80 82 02 12 00 90 00",
    ],
)
def test_masked_bytes_may_vary(atr: str) -> None:
    assert classify_atr(parse_hex(atr)).kind == "cps3"


def test_contactless_mask_keeps_the_top_bits_of_byte_11() -> None:
    base = bytearray(parse_hex("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"))
    base[8:10] = b"\x00\x00"
    base[11] = 0xC0 | 0x3F
    assert classify_atr(bytes(base)).kind == "cps3-contactless"
    base[11] = 0x81
    assert classify_atr(bytes(base)) == UNKNOWN


@pytest.mark.parametrize(
    "atr",
    [
        "3B AC 00 40 2A 00 12 25 00 64 81 00 03 10 00 90 00",  # an unmasked byte differs
        "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00 00",  # one byte too many
        "3F 65 25 00 2B 09 69 90 00",  # St. John's parking meter card (Bull CP8)
        "3F 65 25 00 24 09 6B 90 00",  # Postgirot bank ID card (Bull CP8)
        "3B 75 13 00 00 9C 02 02 01 02",  # Cyberflex Access 32k
        "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 FF FF FF E3",  # French hospital card
    ],
)
def test_look_alikes_are_unknown(atr: str) -> None:
    assert classify_atr(parse_hex(atr)) == UNKNOWN


def test_empty_atr_is_unknown() -> None:
    assert classify_atr(b"") == UNKNOWN
    assert UNKNOWN.kind == "unknown" and not UNKNOWN.is_cps


# --- parse_hex ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["3B AC 00", "3BAC00", "3b:ac:00", " 3b ac\t00\n", "3BAC 00"])
def test_parse_hex_accepts_common_spellings(text: str) -> None:
    assert parse_hex(text) == b"\x3b\xac\x00"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("", "''"),
        ("  ", "'  '"),
        ("3B A", "'A'"),
        ("3G AC", "'3G'"),
        ("0x3B", "'0x3B'"),
        ("3B-AC", "'3B-AC'"),
    ],
)
def test_parse_hex_rejects_bad_input_clearly(text: str, quoted: str) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)) as raised:
        parse_hex(text)
    assert isinstance(raised.value, AtrFormatError)
    assert "hex" in str(raised.value)
