"""A BER-TLV reader for what the card gives back: FCPs, EF.DIR, PKCS#15 files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class TlvError(ValueError):
    """Bytes that are not well-formed BER-TLV."""


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        first = self.tag.to_bytes((self.tag.bit_length() + 7) // 8 or 1, "big")[0]
        return bool(first & 0x20)

    def children(self) -> list[Tlv]:
        return parse(self.value)

    def find(self, tag: int) -> Tlv | None:
        return next((child for child in self.children() if child.tag == tag), None)


def _tag(data: bytes, pos: int) -> tuple[int, int]:
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TlvError("truncated tag")
            tag = tag << 8 | data[pos]
            pos += 1
            if not data[pos - 1] & 0x80:
                break
    return tag, pos


def _length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated length")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 3 or pos + 1 + count > len(data):
        raise TlvError(f"unsupported length encoding {first:#04x}")
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def iterate(data: bytes) -> Iterator[Tlv]:
    """The TLVs one after the other; padding bytes 00 and FF between them are skipped."""
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        tag, pos = _tag(data, pos)
        size, pos = _length(data, pos)
        if pos + size > len(data):
            raise TlvError(f"tag {tag:#x} claims {size} bytes, {len(data) - pos} left")
        yield Tlv(tag, data[pos : pos + size])
        pos += size


def parse(data: bytes) -> list[Tlv]:
    return list(iterate(data))


def first(items: list[Tlv], what: str) -> Tlv:
    """The first TLV of ``items``; a TlvError naming ``what`` when there is none."""
    if not items:
        raise TlvError(f"{what} is empty")
    return items[0]
