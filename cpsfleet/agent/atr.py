"""Tell a CPS card from a Vitale card (or anything else) by its ATR.

The classification is a data table: each row is an ATR pattern, a mask and the
kind of card it identifies. An ATR matches a row when it has the same length and
``atr & mask == pattern & mask`` byte by byte. The first matching row wins.

Sources (short names):
- ``cryptolib``: ansforge/dops-cryptolib, ``card-cps.c`` (``CPS_ATR_LIST``: the
  ATRs and masks the official Cryptolib CPS 5.2 declares for the CPS3 and CPS4).
- ``opensc``: OpenSC ``card-iasecc.c`` ("IAS/ECC CPx", same CPS3 mask).
- ``pcsc-tools``: LudovicRousseau/pcsc-tools ``smartcard_list.txt``, the list
  Debian installs at ``/usr/share/pcsc/smartcard_list.txt``.

No ``cps2`` kind: no ATR in pcsc-tools (the 2023 list Debian ships, nor
upstream in 2026) is attributed to a CPS2 or CPS2ter card, and Cryptolib 5.2
declares none. pcsc-tools' two "Sesam Vitale card CPS" entries,
``... 12 25 00 64 80 00 03 10 ...`` and ``... 12 25 00 64 80 82 02 12 ...``,
differ only in bytes the CPS3 mask ignores (the mask Cryptolib declares and
OpenSC applies), so both are CPS3 here. Cryptolib itself compares ATRs exactly;
the agent applies the masks, as OpenSC does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class AtrFormatError(ValueError):
    """A hexadecimal ATR string could not be read."""


@dataclass(frozen=True)
class CardType:
    """What a card is, as far as its ATR tells."""

    kind: str
    label: str
    is_cps: bool


@dataclass(frozen=True)
class AtrRow:
    """One row of the ATR table: the card kind an ATR pattern and mask identify."""

    pattern: bytes
    mask: bytes
    kind: str
    label: str
    source: str

    def matches(self, atr: bytes) -> bool:
        if len(atr) != len(self.pattern):
            return False
        return all(a & m == p & m for a, p, m in zip(atr, self.pattern, self.mask, strict=True))


_HEX_GROUP = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_SEPARATORS = re.compile(r"[\s:]+")


def parse_hex(text: str) -> bytes:
    """Bytes from hex text such as ``"3B AC 00"``, ``"3BAC00"`` or ``"3b:ac:00"``.

    Raises ``AtrFormatError`` (a ``ValueError``) when the text is empty or is
    not pairs of hexadecimal digits.
    """
    groups = [group for group in _SEPARATORS.split(text.strip()) if group]
    if not groups:
        raise AtrFormatError(f"no hex bytes in {text!r}: expected e.g. '3B AC 00' or '3BAC00'")
    for group in groups:
        if not _HEX_GROUP.fullmatch(group):
            raise AtrFormatError(
                f"{group!r} in {text!r} is not pairs of hex digits: "
                "expected e.g. '3B AC 00', '3BAC00' or '3b:ac:00'"
            )
    return bytes.fromhex("".join(groups))


def _row(pattern: str, mask: str | None, kind: str, label: str, source: str) -> AtrRow:
    """A table row from hex text; ``mask=None`` means the ATR must match exactly."""
    pattern_bytes = parse_hex(pattern)
    mask_bytes = b"\xff" * len(pattern_bytes) if mask is None else parse_hex(mask)
    if len(mask_bytes) != len(pattern_bytes):
        raise AtrFormatError(f"mask {mask!r} and pattern {pattern!r} differ in length")
    return AtrRow(pattern_bytes, mask_bytes, kind, label, source)


_CPS3_CONTACTLESS_MASK = "FF FF FF FF FF FF FF FF 00 00 FF C0 FF FF FF FF FF FF FF FF"

# Order matters: the exact CPS4 rows come first because the CPS3 mask also
# covers the CPS4 T=0 ATR (same length, same bytes where the mask is FF).
# The Vitale 2 mask keeps the 4x 09 EA family (43..49, 4B, 4C in pcsc-tools)
# and its one 4x 09 FA variant; 3B 75 13 00 00 9C ... is a Cyberflex.
# The Vitale 1 rows are exact: their prefix 3F 65 25 00 is Bull CP8's and
# pcsc-tools lists bank, parking and pay-TV cards with it (3F 65 25 00 24 09 6B
# 90 00, 3F 65 25 00 2B 09 69 90 00, ...), some one bit away from a Vitale.
ATR_TABLE: tuple[AtrRow, ...] = (
    _row(
        "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44",
        None,
        "cps4",
        "CPS4",
        "cryptolib card-cps.c CPS4_C",
    ),
    _row(
        "3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44",
        None,
        "cps4",
        "CPS4 (release candidate)",
        "cryptolib card-cps.c CPS4RC_C",
    ),
    _row(
        "3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00",
        None,
        "cps4",
        "CPS4 (T=0)",
        "cryptolib card-cps.c CPS4TO_C; pcsc-tools 'Vitale card CPS V4'",
    ),
    _row(
        "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00",
        "FF 00 00 00 00 FF FF FF FF FF FF 00 00 00 FF FF FF",
        "cps3",
        "CPS3 (contact, IAS-ECC)",
        "cryptolib card-cps.c CPS3_C; opensc IAS/ECC CPx",
    ),
    _row(
        "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E",
        _CPS3_CONTACTLESS_MASK,
        "cps3-contactless",
        "CPS3 (contactless)",
        "cryptolib card-cps.c CPS3_CL; pcsc-tools",
    ),
    _row(
        "3B 75 13 00 00 40 09 EA 90 00",
        "FF FF FF FF FF F0 FF EF FF FF",
        "vitale2",
        "Carte Vitale 2",
        "pcsc-tools 3B 75 13 00 00 4x 09 EA/FA 90 00",
    ),
    _row(
        "3F 65 25 00 22 09 F9 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 3F 65 25 00 2[2C] 09 [F6]9 90 00",
    ),
    _row(
        "3F 65 25 00 22 09 69 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 3F 65 25 00 2[2C] 09 [F6]9 90 00",
    ),
    _row(
        "3F 65 25 00 2C 09 F9 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 3F 65 25 00 2[2C] 09 [F6]9 90 00",
    ),
    _row(
        "3F 65 25 00 2C 09 69 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 3F 65 25 00 2[2C] 09 [F6]9 90 00",
    ),
    _row(
        "3F 65 25 00 52 09 6A 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 'French carte Vitale'",
    ),
    _row(
        "3F 65 25 00 A3 09 6A 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 3F 65 25 00 A[34] 09 6A 90 00",
    ),
    _row(
        "3F 65 25 00 A4 09 6A 90 00",
        None,
        "vitale1",
        "Carte Vitale 1",
        "pcsc-tools 3F 65 25 00 A[34] 09 6A 90 00",
    ),
)

CPS_KINDS = frozenset({"cps3", "cps3-contactless", "cps4"})

UNKNOWN = CardType(kind="unknown", label="Unknown card", is_cps=False)


def classify_atr(atr: bytes) -> CardType:
    """The kind of card an ATR belongs to, ``UNKNOWN`` when no table row matches."""
    row = next((row for row in ATR_TABLE if row.matches(atr)), None)
    if row is None:
        return UNKNOWN
    return CardType(kind=row.kind, label=row.label, is_cps=row.kind in CPS_KINDS)
