"""Just enough BER-TLV / DER encoding to lay out a smart card's files."""

from __future__ import annotations


def length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def tlv(tag: int | bytes, *values: bytes) -> bytes:
    tag_bytes = tag if isinstance(tag, bytes) else tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    value = b"".join(values)
    return tag_bytes + length(len(value)) + value


def sequence(*values: bytes) -> bytes:
    return tlv(0x30, *values)


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def utf8(text: str) -> bytes:
    return tlv(0x0C, text.encode("utf-8"))


def integer(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))


def bit_string(value: bytes, unused_bits: int = 0) -> bytes:
    return tlv(0x03, bytes([unused_bits]) + value)


def bcd(digits: str) -> bytes:
    """Packed BCD of an even number of decimal digits ('20261127' -> 20 26 11 27)."""
    return bytes.fromhex(digits)
