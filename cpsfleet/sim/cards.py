"""The simulated card kinds: CPS3 (contact and contactless), CPS4, Vitale, generic.

Each kind is a row of ``KINDS``: its default ATR, how strict its APDU handling
is, and how its files are laid out. ``build_card`` turns a profile into a card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cpsfleet.sim import der, pkcs15
from cpsfleet.sim.faults import Faults, FaultyCard, truncate
from cpsfleet.sim.iso import DF, EF, CardOptions, IsoCard
from cpsfleet.sim.pin import PinCounter
from cpsfleet.sim.pkcs15 import CardCertificate
from cpsfleet.sim.profile import Profile

FID_SN_ICC = 0xD003
FID_ACTUA = 0xD010
APP_FID = 0x0001
PAN_PREFIX = bytes.fromhex("8025000001")
DEFAULT_SERIAL = "99213845"

AID_CPS_CONTACT = bytes.fromhex("E828BD080F8025000001FF0010")
AID_CPS_CONTACTLESS = bytes.fromhex("E828BD080F8025000001FF0020")
AID_CHIPDOC = bytes.fromhex("8025000001FF0100")
AID_PKCS15 = bytes.fromhex("A000000063504B43532D3135")

LABEL_AUTH = "Certificat d'Authentification CPS"
LABEL_SIGN = "Certificat de Signature CPS"
LABEL_TECH = "Certificat Technique CPS"
# The CPS PIN: VERIFY 00 20 00 01 (as Cryptolib sends it); its AODF entry and GET DATA name it 01.
PIN_REFERENCE = 0x01


def _with_tck(atr_without_tck: bytes) -> bytes:
    tck = 0
    for byte in atr_without_tck[1:]:
        tck ^= byte
    return atr_without_tck + bytes([tck])


GENERIC_ATR = _with_tck(bytes.fromhex("3B888001") + b"CFLTSIM1")


def luhn_digit(digits: str) -> int:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char, 16) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (10 - total % 10) % 10


def ef_sn_icc(serial: str) -> bytes:
    """EF.SN.ICC: tag 5A, a PAN 80 25 00 00 01 <serial> then the Luhn digit and an F pad."""
    digits = PAN_PREFIX.hex() + serial.lower()
    pan = PAN_PREFIX + bytes.fromhex(serial) + bytes([luhn_digit(digits) << 4 | 0x0F])
    return der.tlv(0x5A, pan)


def ef_actua(updated_at: datetime) -> bytes:
    """EF_ACTUA: the dates of the card's last update, BCD YYYYMMDDhhmmss."""
    stamp = der.bcd(updated_at.astimezone(UTC).strftime("%Y%m%d%H%M%S"))
    return der.tlv(0xEC, der.tlv(0x81, stamp), der.tlv(0x82, stamp))


@dataclass(frozen=True)
class Kind:
    atr: bytes
    options: CardOptions
    layout: Callable[[Profile], DF]
    has_pin: bool = True


def _certificates(profile: Profile) -> list[CardCertificate]:
    labelled = (
        (LABEL_AUTH, profile.auth_cert),
        (LABEL_SIGN, profile.sign_cert),
        (LABEL_TECH, profile.tech_cert),
    )
    return [CardCertificate(label, data) for label, data in labelled if data is not None]


def _cps_files(profile: Profile, aid: bytes, token_label: str) -> list[DF | EF]:
    """What a CPS holds from its root: serial, EF.DIR, EF_ACTUA and the PKCS#15 application."""
    serial = profile.serial or DEFAULT_SERIAL
    app_path = (0x3F00).to_bytes(2, "big") + APP_FID.to_bytes(2, "big")
    app = pkcs15.application(
        APP_FID,
        aid,
        _certificates(profile),
        bytes.fromhex(serial),
        profile.token_label or token_label,
        path_prefix=b"\x3f\x00",
        pin_reference=None if profile.faults.no_aodf else PIN_REFERENCE,
    )
    return [
        EF(FID_SN_ICC, ef_sn_icc(serial)),
        EF(pkcs15.FID_DIR, pkcs15.dir_record(aid, "CPS", app_path)),
        EF(FID_ACTUA, ef_actua(profile.updated_at or datetime(2025, 1, 1, tzinfo=UTC))),
        app,
    ]


def _cps3_layout(aid: bytes) -> Callable[[Profile], DF]:
    return lambda profile: DF(0x3F00, children=_cps_files(profile, aid, "CPS3 SIMU"))


def _cps4_layout(profile: Profile) -> DF:
    applet = DF(0x3F00, AID_CHIPDOC, _cps_files(profile, AID_CPS_CONTACT, "CPS4 SIMU"))
    return DF(0x3F00, children=[applet])


def _vitale_layout(profile: Profile) -> DF:
    return DF(0x3F00)


def _generic_layout(profile: Profile) -> DF:
    serial = bytes.fromhex(profile.serial or DEFAULT_SERIAL)
    app = pkcs15.application(
        0x5015,
        AID_PKCS15,
        _certificates(profile),
        serial,
        profile.token_label or "cpsfleet generic",
        path_prefix=b"\x3f\x00",
    )
    app_path = bytes.fromhex("3F005015")
    return DF(
        0x3F00,
        children=[EF(pkcs15.FID_DIR, pkcs15.dir_record(AID_PKCS15, "PKCS15", app_path)), app],
    )


KINDS: dict[str, Kind] = {
    "cps3": Kind(
        bytes.fromhex("3BAC00402A001225006480000310009000"),
        CardOptions(max_read=0xE7, aid_select_wants_p2_0c=True),
        _cps3_layout(AID_CPS_CONTACT),
    ),
    "cps3-contactless": Kind(
        bytes.fromhex("3B8F80010031B86404B0ECC1739401808290000E"),
        CardOptions(max_read=0xE7, aid_select_wants_p2_0c=True),
        _cps3_layout(AID_CPS_CONTACTLESS),
    ),
    "cps4": Kind(
        bytes.fromhex("3B9B188001001225006480040100009044"),
        CardOptions(channels=frozenset({0, 1}), applet_is_root=True, fci_on_p2_00=True),
        _cps4_layout,
    ),
    "vitale": Kind(
        bytes.fromhex("3B751300004509EA9000"), CardOptions(), _vitale_layout, has_pin=False
    ),
    "generic": Kind(GENERIC_ATR, CardOptions(), _generic_layout, has_pin=False),
}


def pin_counter(profile: Profile) -> PinCounter:
    return PinCounter(
        profile.pin.encode("ascii"),
        PIN_REFERENCE,
        profile.pin_tries_max,
        profile.pin_tries_left,
    )


def build_card(profile: Profile) -> IsoCard | FaultyCard:
    """The card a profile describes, wrapped in its faults when it has any."""
    if profile.faults.corrupt_certificates:
        profile = replace(
            profile,
            auth_cert=truncate(profile.auth_cert),
            sign_cert=truncate(profile.sign_cert),
            tech_cert=truncate(profile.tech_cert),
        )
    kind = KINDS[profile.kind]
    pin = pin_counter(profile) if kind.has_pin else None
    card = IsoCard(profile.atr or kind.atr, kind.layout(profile), kind.options, pin)
    return card if profile.faults == Faults() else FaultyCard(card, profile.faults)
