"""The card's PIN and its try counter, as a CPS3 (IAS-ECC) keeps them.

GET DATA on the PIN's security data object tells, without the PIN, how many
tries are left, as the official Cryptolib asks it; it never changes anything. VERIFY checks a PIN:
a wrong one costs a try (``63 Cx``, x tries left), a right one gives every try
back, a blocked PIN (no try left) answers ``69 83`` whatever is sent, and a
VERIFY without data only asks the counter. The counter lives in the card's
memory: a reset or power cycle keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpsfleet.sim import der

SW_OK = b"\x90\x00"
SW_BLOCKED = b"\x69\x83"
SW_WRONG_DATA = b"\x6a\x80"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_NOT_FOUND = b"\x6a\x88"
MAX_TRIES = 15  # 63 Cx can tell no more
# GET DATA's data: "give me the PIN SDO's try counters" (BF 81 <ref>, then A0 80: the
# security attributes template, 9A / 9B asked in full).
GET_DATA_P1P2 = (0x3F, 0xFF)


def security_data_request(reference: int) -> bytes:
    """The GET DATA data field that asks the counters of PIN ``reference``."""
    return bytes([0x4D, 0x08, 0x70, 0x06, 0xBF, 0x81, reference, 0x02, 0xA0, 0x80])


@dataclass
class PinCounter:
    value: bytes
    reference: int = 0x01
    tries_max: int = 3
    tries_left: int = 3

    def security_data(self) -> bytes:
        """``70 0C BF 81 <ref> 08 A0 06 9A 01 <max> 9B 01 <left>``."""
        counters = der.tlv(0x9A, bytes([self.tries_max])) + der.tlv(0x9B, bytes([self.tries_left]))
        return der.tlv(0x70, der.tlv(bytes([0xBF, 0x81, self.reference]), der.tlv(0xA0, counters)))

    def get_data(self, p1: int, p2: int, data: bytes) -> tuple[bytes | None, bytes]:
        """(the security data, 9000), or (None, the error status word)."""
        if (p1, p2) != GET_DATA_P1P2:
            return None, SW_WRONG_P1P2
        if len(data) != 10 or data[:6] != security_data_request(0)[:6]:
            return None, SW_WRONG_DATA
        if data != security_data_request(self.reference):
            return None, SW_NOT_FOUND
        return self.security_data(), SW_OK

    def verify(self, p1: int, p2: int, candidate: bytes) -> bytes:
        if p1 != 0x00:
            return SW_WRONG_P1P2
        if p2 != self.reference:
            return SW_NOT_FOUND
        if self.tries_left == 0:
            return SW_BLOCKED
        if not candidate:
            return self._tries_left()
        if candidate == self.value:
            self.tries_left = self.tries_max
            return SW_OK
        self.tries_left -= 1
        return self._tries_left()

    def _tries_left(self) -> bytes:
        return bytes([0x63, 0xC0 | self.tries_left])
