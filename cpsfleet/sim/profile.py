"""Card profiles: a TOML file per simulated card, so anyone can define one without code.

kind = "cps3"                 # cps3, cps3-contactless, cps4, vitale, generic
atr = "3B AC 00 40 ..."       # optional: overrides the kind's ATR
serial = "99213845"           # optional: the serial as users see it
auth_cert = "auth.pem"        # optional: PEM or DER, relative to this file
sign_cert = "sign.pem"
tech_cert = "tech.pem"        # optional, contactless cards only
token_label = "CPS3 SIMU"     # optional
updated_at = 2025-03-01T09:00:00Z   # optional: date written to EF_ACTUA
pin = "1234"                  # optional: the PIN VERIFY accepts, 4 to 8 digits (CPS kinds)
pin_tries_max = 3             # optional: tries a PIN gets, 1 to 15 (default 3)
pin_tries_left = 3            # optional: tries left now, 0 (blocked) to pin_tries_max
                              #   (default: all of them)

[faults]                      # optional, for tests: see sim/faults.py
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeGuard

from cryptography import x509

from cpsfleet.i18n import _
from cpsfleet.sim.faults import Faults

KINDS = ("cps3", "cps3-contactless", "cps4", "vitale", "generic")
CERT_KEYS = ("auth_cert", "sign_cert", "tech_cert")
PIN_KEYS = ("pin", "pin_tries_max", "pin_tries_left")
KNOWN_KEYS = {"kind", "atr", "serial", "token_label", "updated_at", "faults", *CERT_KEYS, *PIN_KEYS}
FAULT_KEYS = {
    "remove_after_apdus": int,
    "garbage": bool,
    "corrupt_certificates": bool,
    "no_aodf": bool,
}
SERIAL_PATTERN = re.compile(r"[0-9A-Fa-f]{8}")
PIN_PATTERN = re.compile(r"[0-9]{4,8}")
DEFAULT_PIN = "1234"
DEFAULT_PIN_TRIES = 3
MAX_PIN_TRIES = 15  # the most a card's 63 Cx answer can tell


class ProfileError(ValueError):
    """A card profile that cannot be played; the message says what to fix."""


@dataclass(frozen=True)
class Profile:
    kind: str
    atr: bytes | None = None
    serial: str | None = None
    auth_cert: bytes | None = None
    sign_cert: bytes | None = None
    tech_cert: bytes | None = None
    token_label: str | None = None
    updated_at: datetime | None = None
    faults: Faults = Faults()
    pin: str = DEFAULT_PIN
    pin_tries_max: int = DEFAULT_PIN_TRIES
    pin_tries_left: int = DEFAULT_PIN_TRIES

    def __post_init__(self) -> None:
        _check_pin(self.pin, self.pin_tries_max, self.pin_tries_left)


def load_profile(path: Path) -> Profile:
    """Read and check a profile; raise ProfileError naming the file and the problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ProfileError(f"{path}: cannot read the profile: {error.strerror}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: not valid TOML: {error}") from error
    try:
        return profile_from_dict(raw, base=path.parent)
    except ProfileError as error:
        raise ProfileError(f"{path}: {error}") from error


def profile_from_dict(raw: dict[str, object], base: Path) -> Profile:
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ProfileError(f"unknown key(s) {', '.join(unknown)}; known: {sorted(KNOWN_KEYS)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ProfileError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    certs = {key: _certificate(raw, key, base) for key in CERT_KEYS}
    pin, tries_max, tries_left = _pin_settings(raw)
    return Profile(
        kind=str(kind),
        atr=_atr(raw.get("atr")),
        serial=_serial(raw.get("serial")),
        token_label=_optional_str(raw, "token_label"),
        updated_at=_datetime(raw.get("updated_at")),
        faults=_faults(raw.get("faults", {})),
        pin=pin,
        pin_tries_max=tries_max,
        pin_tries_left=tries_left,
        **certs,
    )


def _pin_settings(raw: dict[str, object]) -> tuple[str, int, int]:
    """The PIN, its tries and the tries left (all of them unless said otherwise), checked."""
    pin = raw.get("pin", DEFAULT_PIN)
    tries_max = raw.get("pin_tries_max", DEFAULT_PIN_TRIES)
    tries_left = raw.get("pin_tries_left", tries_max)
    _check_pin(pin, tries_max, tries_left)
    assert isinstance(pin, str) and _whole(tries_max) and _whole(tries_left)
    return pin, tries_max, tries_left


def _check_pin(pin: object, tries_max: object, tries_left: object) -> None:
    if not isinstance(pin, str) or not PIN_PATTERN.fullmatch(pin):
        raise ProfileError(
            _("pin must be 4 to 8 digits as a string, not {value}").format(value=repr(pin))
        )
    if not _whole(tries_max) or not 1 <= tries_max <= MAX_PIN_TRIES:
        raise ProfileError(
            _("pin_tries_max must be a whole number from 1 to {most}, not {value}").format(
                most=MAX_PIN_TRIES, value=repr(tries_max)
            )
        )
    if not _whole(tries_left) or not 0 <= tries_left <= tries_max:
        raise ProfileError(
            _(
                "pin_tries_left must be a whole number from 0 (blocked) to pin_tries_max "
                "({most}), not {value}"
            ).format(most=tries_max, value=repr(tries_left))
        )


def _whole(value: object) -> TypeGuard[int]:
    # bool is an int in Python, but "pin_tries_left = true" is a mistake in the profile.
    return isinstance(value, int) and not isinstance(value, bool)


def _faults(value: object) -> Faults:
    if not isinstance(value, dict):
        raise ProfileError("faults must be a table ([faults])")
    for key, item in value.items():
        expected = FAULT_KEYS.get(key)
        if expected is None:
            raise ProfileError(f"unknown fault {key!r}; known: {sorted(FAULT_KEYS)}")
        if type(item) is not expected:
            raise ProfileError(f"faults.{key} must be a {expected.__name__}")
    return Faults(**value)


def _optional_str(raw: dict[str, object], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ProfileError(f"{key} must be a string")
    return value


def _atr(value: object) -> bytes | None:
    if value is None:
        return None
    text = re.sub(r"[\s:]", "", str(value))
    try:
        atr = bytes.fromhex(text)
    except ValueError:
        raise ProfileError(f"atr must be hexadecimal bytes, not {value!r}") from None
    if not 2 <= len(atr) <= 33:
        raise ProfileError(f"atr must be 2 to 33 bytes long, not {len(atr)}")
    return atr


def _serial(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SERIAL_PATTERN.fullmatch(value):
        raise ProfileError(f"serial must be 8 hexadecimal digits as a string, not {value!r}")
    return value.upper()


def _datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    raise ProfileError(f"updated_at must be a TOML date-time, not {value!r}")


def _certificate(raw: dict[str, object], key: str, base: Path) -> bytes | None:
    value = raw.get(key)
    if value is None:
        return None
    path = base / str(value)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProfileError(f"{key}: cannot read {path}: {error.strerror}") from error
    return _to_der(data, key, path)


def _to_der(data: bytes, key: str, path: Path) -> bytes:
    """The certificate as DER, whichever of PEM or DER the file holds."""
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError as error:
        raise ProfileError(f"{key}: {path} is not a PEM or DER certificate: {error}") from error
