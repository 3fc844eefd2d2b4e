"""The fields the agent reports about one certificate read from a CPS card.

``read_certificate`` never raises: the bytes come from a card, so a broken
certificate becomes a ``Certificate`` whose ``error`` says what went wrong.

Facts (sources in the project notes):
- PKCS#11 labels of the CPS certificates (Cryptolib CPS external PKCS#11 spec):
  "Certificat d'Authentification CPS", "Certificat de Signature CPS", and on
  contactless cards "Certificat Technique CPS".
- IGC-Santé: the authentication certificate has keyUsage digitalSignature, the
  signature certificate nonRepudiation.
- The subject CN is the holder's national identifier (idNat_PS); its first
  character gives its type: 8 + RPPS, 0 + ADELI, 3 + FINESS / structure
  (ansforge IG-FHIR PSIdNat).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID, ObjectIdentifier

from cpsfleet.schemas.documents import Certificate, CertificateRole, IdType
from cpsfleet.schemas.times import format_utc

_ROLE_BY_LABEL: dict[str, CertificateRole] = {
    "certificat d'authentification cps": "authentication",
    "certificat de signature cps": "signature",
    "certificat technique cps": "technical",
}

# Checked in order: a signature certificate may also carry digitalSignature.
_ROLE_BY_KEY_USAGE: tuple[tuple[str, CertificateRole], ...] = (
    ("content_commitment", "signature"),  # nonRepudiation
    ("digital_signature", "authentication"),
)

_ID_TYPE_BY_FIRST_CHARACTER: dict[str, IdType] = {"8": "rpps", "0": "adeli", "3": "structure"}

# cryptography prints these attributes as dotted OIDs unless told their short names.
_SHORT_NAMES: dict[ObjectIdentifier, str] = {
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
}

# What cryptography raises on malformed input, when loading or when an
# extension or a name is first decoded.
_MALFORMED = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def read_certificate(data: bytes, *, label: str | None, now: datetime) -> Certificate:
    """The reported fields of a DER or PEM certificate; never raises.

    ``now`` without a time zone is taken as UTC. ``days_left`` counts whole days
    from ``now`` to notAfter, rounded down: negative once the certificate expired.
    """
    role = _role_from_label(label)
    # cryptography only warns about some oddities (a negative serial number, a
    # three-letter country); such a certificate is still read, and a caller
    # that turns warnings into errors must not make this function raise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _describe(_load(data), label=label, role=role, now=_as_utc(now))
        except _MALFORMED as exc:
            return Certificate(role=role or "unknown", label=label, error=_error(data, exc))


def _load(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _error(data: bytes, exc: Exception) -> str:
    if not data:
        return "no certificate data (0 bytes)"
    return f"not a readable X.509 certificate ({len(data)} bytes, DER or PEM expected): {exc}"


def _describe(
    cert: x509.Certificate, *, label: str | None, role: CertificateRole | None, now: datetime
) -> Certificate:
    subject = cert.subject
    id_nat = _first(subject, NameOID.COMMON_NAME)
    not_after = cert.not_valid_after_utc
    return Certificate(
        role=role or _role_from_key_usage(cert),
        label=label,
        subject=subject.rfc4514_string(_SHORT_NAMES),
        id_nat=id_nat,
        id_type=_id_type(id_nat),
        surname=_first(subject, NameOID.SURNAME),
        given_name=_first(subject, NameOID.GIVEN_NAME),
        profession=_first(subject, NameOID.TITLE)
        or _first(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        issuer_cn=_first(cert.issuer, NameOID.COMMON_NAME),
        serial_number=format(cert.serial_number, "x"),
        not_before=_iso(cert.not_valid_before_utc),
        not_after=_iso(not_after),
        days_left=(not_after - now).days,
        expired=now > not_after,
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _role_from_label(label: str | None) -> CertificateRole | None:
    if label is None:
        return None
    return _ROLE_BY_LABEL.get(" ".join(label.split()).casefold())


def _role_from_key_usage(cert: x509.Certificate) -> CertificateRole:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "unknown"
    return next((role for flag, role in _ROLE_BY_KEY_USAGE if getattr(usage, flag)), "unknown")


def _id_type(id_nat: str | None) -> IdType | None:
    if not id_nat:
        return None
    return _ID_TYPE_BY_FIRST_CHARACTER.get(id_nat[0], "other")


def _first(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return format_utc(moment)
