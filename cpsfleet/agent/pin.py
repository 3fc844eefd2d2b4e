"""A CPS card's PIN state, read without the PIN: how many tries are left before it blocks.

The card's PKCS#15 authentication objects (the AODF, named by the ODF under tag
``A8``) give the PIN's reference; GET DATA on that PIN's security data object
(``00 CB 3F FF 0A 4D 08 70 06 BF 81 <ref> 02 A0 80``, the MF selected) answers
``70 .. BF 81 <ref> .. A0 .. 9A 01 <max tries> 9B 01 <tries left>``, as the official
Cryptolib asks a CPS3. A CPS4 is asked as Cryptolib asks it: VERIFY without data
(``01 20 00 <ref>``, no PIN sent) answers ``63 Cx`` (x tries left of 3) or ``69 83``
(blocked), and spends no try. The agent never sends a VERIFY with a PIN, which is what
spends one.
"""

from __future__ import annotations

from cpsfleet.agent import tlv
from cpsfleet.agent.apdu import CardError, StatusWordError
from cpsfleet.schemas.documents import Pin

ODF_AODF_TAG = 0xA8
PIN_OBJECT_TAG = 0x30  # a PinObject; biometric and other authentication objects differ
PIN_REFERENCE_TAG = 0x80  # pinReference [0] INTEGER in PinAttributes
# PinFlags (a BIT STRING): bit 6 unblockingPin (the PUK), bit 7 soPin. Neither is the
# holder's PIN.
NOT_THE_HOLDERS_PIN = 0x02 | 0x01
SECURITY_DATA_TAG = 0x70
COUNTERS_TAG = 0xA0
TRIES_MAX_TAG, TRIES_LEFT_TAG = 0x9A, 0x9B

NOT_READ = "not read: "
NO_AODF = (
    "the card has no PKCS#15 authentication objects (no AODF in its ODF), "
    "so the PIN's reference is unknown"
)
# Cryptolib counts a CPS4's tries out of three: VERIFY's answer tells only those left.
CPS4_TRIES_MAX = 3
SW_TRIES_LEFT = 0x63C0  # 63 Cx: x tries left
SW_BLOCKED = 0x6983


class NoAodf(CardError):
    """The ODF names no AODF: the card does not say which PIN it has."""


def security_data_request(reference: int) -> bytes:
    """The GET DATA data field asking the try counters of PIN ``reference``."""
    return bytes([0x4D, 0x08, 0x70, 0x06, 0xBF, 0x81, reference, 0x02, 0xA0, 0x80])


def aodf_path(odf: bytes) -> bytes:
    """The path of the first AODF the ODF names (a CPS has one); NoAodf if none."""
    for entry in tlv.iterate(odf):
        if entry.tag == ODF_AODF_TAG:
            path = tlv.first(entry.children(), "the ODF's AODF entry")
            inner = path.find(0x04) if path.tag == 0x30 else None
            if inner is None:
                raise CardError("the ODF's AODF entry has a malformed path")
            return inner.value
    raise NoAodf(NO_AODF)


def pin_reference(aodf: bytes) -> int:
    """The reference of the holder's PIN: the first PIN object that is not a PUK or SO PIN."""
    for entry in tlv.iterate(aodf):
        attributes = _pin_attributes(entry)
        if attributes is None or _flags(attributes) & NOT_THE_HOLDERS_PIN:
            continue
        reference = next((a for a in attributes if a.tag == PIN_REFERENCE_TAG), None)
        if reference is None or len(reference.value) != 1 or reference.value[0] > 0x7F:
            # GET DATA names the PIN in one tag byte: 00 to 7F.
            raise CardError(f"the AODF's PIN has no usable pinReference: {_shown(reference)}")
        return reference.value[0]
    raise CardError("the AODF holds no PIN of the holder")


def _pin_attributes(entry: tlv.Tlv) -> list[tlv.Tlv] | None:
    """PinAttributes: the SEQUENCE inside the object's last part, typeAttributes [1]."""
    if entry.tag != PIN_OBJECT_TAG:
        return None
    parts = entry.children()
    if not parts or parts[-1].tag != 0xA1:
        return None
    inner = tlv.first(parts[-1].children(), "a PIN's attributes")
    return inner.children() if inner.tag == 0x30 else None


def _shown(item: tlv.Tlv | None) -> str:
    return "none" if item is None else item.value.hex().upper() or "(empty)"


def _flags(attributes: list[tlv.Tlv]) -> int:
    """The first byte of PinFlags (bits 0 to 7), 0 when absent."""
    flags = next((a for a in attributes if a.tag == 0x03), None)
    return flags.value[1] if flags is not None and len(flags.value) > 1 else 0


def pin_from_security_data(data: bytes, reference: int) -> Pin:
    """Tries left and maximum from GET DATA's answer; CardError if it is not that."""
    outer = tlv.first(tlv.parse(data), "the PIN's security data")
    expected_tag = 0xBF8100 | reference
    sdo = outer.find(expected_tag) if outer.tag == SECURITY_DATA_TAG else None
    counters = sdo.find(COUNTERS_TAG) if sdo is not None else None
    if counters is None:
        raise CardError(f"GET DATA answered something else than PIN {reference}'s counters")
    tries_max, tries_left = (_counter(counters, tag) for tag in (TRIES_MAX_TAG, TRIES_LEFT_TAG))
    if tries_left > tries_max:
        raise CardError(f"the card says {tries_left} PIN tries left of {tries_max}")
    return Pin(tries_left=tries_left, tries_max=tries_max)


def _counter(counters: tlv.Tlv, tag: int) -> int:
    found = counters.find(tag)
    if found is None or len(found.value) != 1:
        raise CardError(f"the PIN's counters lack a one-byte {tag:02X}")
    return found.value[0]


def pin_from_verify_status(sw: int, reference: int) -> Pin:
    """The tries a VERIFY without data tells: ``63 Cx`` x left, ``69 83`` blocked; CardError
    for anything else (``90 00``: the PIN is verified already, its tries go untold)."""
    if sw & 0xFFF0 == SW_TRIES_LEFT and sw & 0x0F <= CPS4_TRIES_MAX:
        return Pin(tries_left=sw & 0x0F, tries_max=CPS4_TRIES_MAX)
    if sw == SW_BLOCKED:
        return Pin(tries_left=0, tries_max=CPS4_TRIES_MAX)
    raise StatusWordError(f"VERIFY without data of PIN {reference:02X}", sw)
