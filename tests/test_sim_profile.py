"""Card profiles: a good TOML file loads; a mistake is a ProfileError naming file and problem."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cpsfleet.sim.faults import Faults
from cpsfleet.sim.profile import Profile, ProfileError, load_profile
from tests.conftest import self_signed_der


def self_signed(common_name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(self_signed_der(common_name))


@pytest.fixture(scope="module")
def auth() -> x509.Certificate:
    return self_signed("auth")


@pytest.fixture(scope="module")
def sign() -> x509.Certificate:
    return self_signed("sign")


@pytest.fixture
def card_dir(tmp_path: Path, auth: x509.Certificate, sign: x509.Certificate, monkeypatch) -> Path:
    """A profile folder with a PEM and a DER certificate; the working directory is elsewhere."""
    directory = tmp_path / "cards"
    (directory / "certs").mkdir(parents=True)
    (directory / "certs" / "auth.pem").write_bytes(auth.public_bytes(serialization.Encoding.PEM))
    (directory / "sign.der").write_bytes(sign.public_bytes(serialization.Encoding.DER))
    (directory / "garbage.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    (directory / "garbage.der").write_bytes(b"\x30\x03\x02\x01\x05")
    monkeypatch.chdir(tmp_path)
    return directory


def write_profile(directory: Path, text: str) -> Path:
    path = directory / "card.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_profile_loads_with_certificates_relative_to_the_profile(
    card_dir: Path, auth: x509.Certificate, sign: x509.Certificate
) -> None:
    path = write_profile(
        card_dir,
        """
kind = "cps3"
atr = "3B:AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"
serial = "9921384a"
auth_cert = "certs/auth.pem"
sign_cert = "sign.der"
token_label = "CPS3 TEST"
updated_at = 2025-03-01T09:00:00

[faults]
remove_after_apdus = 5
garbage = false
corrupt_certificates = true
""",
    )
    assert load_profile(path) == Profile(
        kind="cps3",
        atr=bytes.fromhex("3BAC00402A001225006480000310009000"),
        serial="9921384A",
        auth_cert=auth.public_bytes(serialization.Encoding.DER),
        sign_cert=sign.public_bytes(serialization.Encoding.DER),
        token_label="CPS3 TEST",
        updated_at=datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        faults=Faults(remove_after_apdus=5, corrupt_certificates=True),
    )


def test_minimal_profile_is_just_a_kind(card_dir: Path) -> None:
    assert load_profile(write_profile(card_dir, 'kind = "vitale"\n')) == Profile(kind="vitale")


def test_pin_tries_default_to_three_all_left(card_dir: Path) -> None:
    profile = load_profile(write_profile(card_dir, 'kind = "cps3"\n'))
    assert (profile.pin, profile.pin_tries_max, profile.pin_tries_left) == ("1234", 3, 3)


def test_pin_tries_left_defaults_to_all_the_tries(card_dir: Path) -> None:
    profile = load_profile(write_profile(card_dir, 'kind = "cps3"\npin_tries_max = 5\n'))
    assert (profile.pin_tries_max, profile.pin_tries_left) == (5, 5)


def test_a_blocked_pin_is_zero_tries_left(card_dir: Path) -> None:
    text = 'kind = "cps3"\npin = "20261127"\npin_tries_left = 0\n[faults]\nno_aodf = true\n'
    profile = load_profile(write_profile(card_dir, text))
    assert (profile.pin, profile.pin_tries_max, profile.pin_tries_left) == ("20261127", 3, 0)
    assert profile.faults == Faults(no_aodf=True)


def test_a_profile_built_in_code_is_checked_too() -> None:
    with pytest.raises(ProfileError, match="pin_tries_left must be a whole number from 0"):
        Profile("cps3", pin_tries_left=4)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('kind = "cps5"', "kind must be one of cps3, cps3-contactless, cps4, vitale, generic"),
        ('serial = "99213845"', "kind must be one of"),
        ('kind = "cps3"\ncolour = "blue"', "unknown key(s) colour"),
        ('kind = "cps3"\natr = "3B ZZ"', "atr must be hexadecimal bytes, not '3B ZZ'"),
        ('kind = "cps3"\natr = "3B"', "atr must be 2 to 33 bytes long, not 1"),
        (f'kind = "cps3"\natr = "{"00" * 34}"', "atr must be 2 to 33 bytes long, not 34"),
        ('kind = "cps3"\nserial = "9921384"', "serial must be 8 hexadecimal digits"),
        ('kind = "cps3"\nserial = "99213845G"', "serial must be 8 hexadecimal digits"),
        ('kind = "cps3"\nserial = 99213845', "serial must be 8 hexadecimal digits as a string"),
        ('kind = "cps3"\ntoken_label = 3', "token_label must be a string"),
        ('kind = "cps3"\nupdated_at = "yesterday"', "updated_at must be a TOML date-time"),
        ('kind = "cps3"\nupdated_at = 2025-03-01', "updated_at must be a TOML date-time"),
        ('kind = "cps3"\nfaults = 3', "faults must be a table"),
        ('kind = "cps3"\n[faults]\nexplode = true', "unknown fault 'explode'"),
        ('kind = "cps3"\n[faults]\nremove_after_apdus = "5"', "faults.remove_after_apdus must"),
        ('kind = "cps3"\n[faults]\nremove_after_apdus = true', "faults.remove_after_apdus must"),
        ('kind = "cps3"\n[faults]\ngarbage = 1', "faults.garbage must be a bool"),
        ('kind = "cps3"\npin = 1234', "pin must be 4 to 8 digits as a string, not 1234"),
        ('kind = "cps3"\npin = "12a4"', "pin must be 4 to 8 digits"),
        ('kind = "cps3"\npin = "123"', "pin must be 4 to 8 digits"),
        ('kind = "cps3"\npin_tries_max = 0', "pin_tries_max must be a whole number from 1 to 15"),
        ('kind = "cps3"\npin_tries_max = 16', "pin_tries_max must be a whole number from 1 to 15"),
        ('kind = "cps3"\npin_tries_max = "3"', "pin_tries_max must be a whole number"),
        ('kind = "cps3"\npin_tries_left = 4', "pin_tries_left must be a whole number from 0"),
        ('kind = "cps3"\npin_tries_left = -1', "(blocked) to pin_tries_max (3), not -1"),
        ('kind = "cps3"\npin_tries_left = true', "pin_tries_left must be a whole number"),
        ('kind = "cps3"\npin_tries_left = 2.0', "pin_tries_left must be a whole number"),
        ('kind = "cps3"\npin_tries_max = 2\npin_tries_left = 3', "pin_tries_max (2), not 3"),
        ('kind = "cps3"\n[faults]\nno_aodf = "yes"', "faults.no_aodf must be a bool"),
        ('kind = "cps3"\nserial = ', "not valid TOML"),
        ('kind = "cps3"\nkind = "cps4"', "not valid TOML"),
    ],
)
def test_bad_profile_names_the_file_and_the_problem(
    card_dir: Path, text: str, problem: str
) -> None:
    path = write_profile(card_dir, text + "\n")
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert problem in str(raised.value)


@pytest.mark.parametrize("name", ["garbage.pem", "garbage.der"])
def test_file_that_is_not_a_certificate_is_named(card_dir: Path, name: str) -> None:
    path = write_profile(card_dir, f'kind = "cps3"\nauth_cert = "{name}"\n')
    with pytest.raises(ProfileError, match="is not a PEM or DER certificate") as raised:
        load_profile(path)
    assert str(raised.value).startswith(f"{path}: auth_cert: {card_dir / name} is not")


def test_missing_certificate_file_is_named_with_its_full_path(card_dir: Path) -> None:
    path = write_profile(card_dir, 'kind = "cps3"\nauth_cert = "certs/missing.pem"\n')
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert str(raised.value) == (
        f"{path}: auth_cert: cannot read {card_dir / 'certs' / 'missing.pem'}: "
        "No such file or directory"
    )


def test_profile_that_is_not_utf8_is_not_valid_toml(card_dir: Path) -> None:
    path = card_dir / "latin1.toml"
    path.write_bytes('kind = "cps3"\ntoken_label = "Médecin"\n'.encode("latin-1"))
    with pytest.raises(ProfileError, match="not valid TOML") as raised:
        load_profile(path)
    assert str(raised.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("name", "reason"), [("absent.toml", "No such file or directory"), ("certs", "Is a directory")]
)
def test_unreadable_profile_is_named(card_dir: Path, name: str, reason: str) -> None:
    path = card_dir / name
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert str(raised.value) == f"{path}: cannot read the profile: {reason}"
