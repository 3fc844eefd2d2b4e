"""Certificate fields: role from label or key usage, holder identity, dates, broken input."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpsfleet.agent.certificates import read_certificate

NOT_BEFORE = datetime(2023, 11, 27, tzinfo=UTC)
NOT_AFTER = datetime(2026, 11, 27, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())  # EC: quick, and role logic ignores the key type

ISSUER = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ASIP-SANTE"),
        x509.NameAttribute(NameOID.COMMON_NAME, "AC IGC-SANTE FORT PERSONNES"),
    ]
)


def _attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value)


# GN=HONORE+SN=MASSEUR1044+CN=00B7010446,OU=Masseur-Kinésithérapeute,O=TEST,C=FR
TEST_CARD_SUBJECT = x509.Name(
    [
        x509.RelativeDistinguishedName([_attribute(NameOID.COUNTRY_NAME, "FR")]),
        x509.RelativeDistinguishedName([_attribute(NameOID.ORGANIZATION_NAME, "TEST")]),
        x509.RelativeDistinguishedName(
            [_attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Masseur-Kinésithérapeute")]
        ),
        x509.RelativeDistinguishedName(
            [
                _attribute(NameOID.GIVEN_NAME, "HONORE"),
                _attribute(NameOID.SURNAME, "MASSEUR1044"),
                _attribute(NameOID.COMMON_NAME, "00B7010446"),
            ]
        ),
    ]
)


def doctor(id_nat: str = "810002813839") -> x509.Name:
    """CN=<id_nat>+SN=DONNAT-GADY+GN=ISABELLE,title=Médecin,C=FR"""
    return x509.Name(
        [
            x509.RelativeDistinguishedName([_attribute(NameOID.COUNTRY_NAME, "FR")]),
            x509.RelativeDistinguishedName([_attribute(NameOID.TITLE, "Médecin")]),
            x509.RelativeDistinguishedName(
                [
                    _attribute(NameOID.COMMON_NAME, id_nat),
                    _attribute(NameOID.SURNAME, "DONNAT-GADY"),
                    _attribute(NameOID.GIVEN_NAME, "ISABELLE"),
                ]
            ),
        ]
    )


def make_der(
    subject: x509.Name | None = None,
    *,
    digital_signature: bool = False,
    non_repudiation: bool = False,
    key_usage: bool = True,
    serial: int = 0x1A2B3C,
) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(doctor() if subject is None else subject)
        .issuer_name(ISSUER)
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
    )
    if key_usage:
        builder = builder.add_extension(_usage(digital_signature, non_repudiation), critical=True)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _usage(digital_signature: bool, non_repudiation: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


# --- role ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "role"),
    [
        ("Certificat d'Authentification CPS", "authentication"),
        ("Certificat de Signature CPS", "signature"),
        ("Certificat Technique CPS", "technical"),
        ("  certificat de signature  CPS ", "signature"),  # padded, other case
    ],
)
def test_role_comes_from_the_cps_label_first(label: str, role: str) -> None:
    # The key usage says the opposite of the label: the label wins.
    is_auth = role == "authentication"
    der = make_der(digital_signature=not is_auth, non_repudiation=is_auth)
    assert read_certificate(der, label=label, now=NOW).role == role


@pytest.mark.parametrize(
    ("digital_signature", "non_repudiation", "role"),
    [
        (True, False, "authentication"),
        (False, True, "signature"),
        (True, True, "signature"),
        (False, False, "unknown"),
    ],
)
@pytest.mark.parametrize("label", [None, "Some other label"])
def test_role_comes_from_key_usage_without_a_cps_label(
    label: str | None, digital_signature: bool, non_repudiation: bool, role: str
) -> None:
    der = make_der(digital_signature=digital_signature, non_repudiation=non_repudiation)
    assert read_certificate(der, label=label, now=NOW).role == role


def test_role_is_unknown_without_key_usage_or_label() -> None:
    assert read_certificate(make_der(key_usage=False), label=None, now=NOW).role == "unknown"


# --- holder identity ------------------------------------------------------------------


def rdns(subject: str | None) -> list[set[str]]:
    """An RFC 4514 string as its RDNs; a multi-valued RDN's order follows DER, not the card."""
    assert subject is not None
    return [set(rdn.split("+")) for rdn in subject.split(",")]


def test_doctor_fields() -> None:
    cert = read_certificate(make_der(non_repudiation=True), label=None, now=NOW)
    assert (cert.id_nat, cert.id_type) == ("810002813839", "rpps")
    assert (cert.surname, cert.given_name) == ("DONNAT-GADY", "ISABELLE")
    assert cert.profession == "Médecin"
    assert cert.issuer_cn == "AC IGC-SANTE FORT PERSONNES"
    assert rdns(cert.subject) == [
        {"CN=810002813839", "SN=DONNAT-GADY", "GN=ISABELLE"},
        {"title=Médecin"},
        {"C=FR"},
    ]
    assert cert.error is None


def test_test_card_with_adeli_number_and_profession_in_ou() -> None:
    cert = read_certificate(make_der(TEST_CARD_SUBJECT), label=None, now=NOW)
    assert (cert.id_nat, cert.id_type) == ("00B7010446", "adeli")
    assert (cert.surname, cert.given_name) == ("MASSEUR1044", "HONORE")
    assert cert.profession == "Masseur-Kinésithérapeute"
    assert rdns(cert.subject) == [
        {"GN=HONORE", "SN=MASSEUR1044", "CN=00B7010446"},
        {"OU=Masseur-Kinésithérapeute"},
        {"O=TEST"},
        {"C=FR"},
    ]


@pytest.mark.parametrize(
    ("id_nat", "id_type"),
    [
        ("810002813839", "rpps"),
        ("0751234567", "adeli"),
        ("3750000000", "structure"),
        ("1234", "other"),
        ("A123", "other"),
    ],
)
def test_id_type_from_the_first_character(id_nat: str, id_type: str) -> None:
    assert read_certificate(make_der(doctor(id_nat)), label=None, now=NOW).id_type == id_type


def test_no_common_name_gives_no_id() -> None:
    subject = x509.Name([_attribute(NameOID.COUNTRY_NAME, "FR")])
    cert = read_certificate(make_der(subject), label=None, now=NOW)
    assert (cert.id_nat, cert.id_type, cert.surname, cert.profession) == (None, None, None, None)
    assert cert.error is None


# --- dates and fingerprints ------------------------------------------------------------------


def test_dates_serial_and_fingerprint() -> None:
    der = make_der(serial=0xABCDEF0123)
    cert = read_certificate(der, label=None, now=NOW)
    assert (cert.not_before, cert.not_after) == ("2023-11-27T00:00:00Z", "2026-11-27T00:00:00Z")
    assert cert.serial_number == "abcdef0123"
    assert cert.sha256 == hashlib.sha256(der).hexdigest()
    assert (cert.days_left, cert.expired) == (329, False)


@pytest.mark.parametrize(
    ("now", "days_left", "expired"),
    [
        (NOT_AFTER - timedelta(days=2), 2, False),
        (NOT_AFTER - timedelta(hours=23), 0, False),
        (NOT_AFTER, 0, False),
        (NOT_AFTER + timedelta(seconds=1), -1, True),
        (NOT_AFTER + timedelta(days=10), -10, True),
        (NOT_AFTER.replace(tzinfo=None) + timedelta(hours=1), -1, True),  # naive: UTC
        (NOT_AFTER.astimezone(timezone(timedelta(hours=2))) + timedelta(seconds=1), -1, True),
    ],
)
def test_days_left_and_expired(now: datetime, days_left: int, expired: bool) -> None:
    cert = read_certificate(make_der(), label=None, now=now)
    assert (cert.days_left, cert.expired) == (days_left, expired)


def test_pem_and_der_give_the_same_fields() -> None:
    der = make_der()
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    assert read_certificate(pem, label=None, now=NOW) == read_certificate(der, label=None, now=NOW)


# --- broken input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x82\x01\x00\x02",
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    ],
)
def test_broken_certificate_is_reported_not_raised(data: bytes) -> None:
    cert = read_certificate(data, label="Certificat de Signature CPS", now=NOW)
    assert cert.role == "signature"
    assert cert.label == "Certificat de Signature CPS"
    assert cert.error and "certificate" in cert.error
    assert (cert.subject, cert.id_nat, cert.not_after, cert.days_left, cert.sha256) == (None,) * 5


def test_truncated_certificate_without_label_has_unknown_role() -> None:
    cert = read_certificate(make_der()[:-10], label=None, now=NOW)
    assert cert.role == "unknown" and cert.error


def _corrupt(der: bytes, rng: random.Random) -> bytes:
    """A few bytes of ``der`` overwritten, deleted or inserted."""
    data = bytearray(der)
    for _ in range(rng.randint(1, 4)):
        where, value = rng.randrange(len(data)), rng.randrange(256)
        operation = rng.choice(("overwrite", "delete", "insert"))
        if operation == "overwrite":
            data[where] = value
        elif operation == "delete":
            del data[where]
        else:
            data.insert(where, value)
    return bytes(data)


def test_corrupted_certificates_never_raise() -> None:
    der = make_der(non_repudiation=True)
    rng = random.Random(20261127)
    for _ in range(2000):
        cert = read_certificate(_corrupt(der, rng), label=None, now=NOW)
        assert (cert.error is None) == (cert.sha256 is not None)


def test_odd_but_readable_certificate_is_read_despite_warnings() -> None:
    # A negative serial number: cryptography warns (an error under pytest) yet parses it.
    der = make_der(serial=0x1A2B3C)
    negative = der.replace(b"\x02\x03\x1a\x2b\x3c", b"\x02\x03\x9a\x2b\x3c", 1)
    assert negative != der
    cert = read_certificate(negative, label=None, now=NOW)
    assert cert.error is None
    assert cert.serial_number == format(int.from_bytes(b"\x9a\x2b\x3c", signed=True), "x")
