"""A test PKI for the card simulator: CPS-like certificates from a fake IGC-Santé.

The CA names copy the real IGC-Santé's so that the agent sees what a real card
shows, but everything here is TEST MATERIAL generated on this machine: the keys
are fresh RSA keys, the CA certificates live five years instead of twenty and
carry a certificate-policy notice saying they are a cpsfleet test CA. Nothing
here is issued by, or valid for, the ANS / ASIP-Santé.

Files: ``load_or_create_ca`` keeps ``root-ca.pem``/``root-ca.key`` and
``intermediate-ca.pem``/``intermediate-ca.key`` in its directory;
``issue_card_certificates`` writes ``auth.pem``/``auth.key`` and
``sign.pem``/``sign.key``. Keys are unencrypted PKCS#8 PEM files with mode 0600.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import CertificatePoliciesOID, NameOID

from cpsfleet.i18n import _


class PkiError(ValueError):
    """The test PKI cannot do what was asked (bad holder data, unusable CA directory)."""


@dataclass(frozen=True)
class Holder:
    """The card holder the certificates are issued to."""

    id_nat: str
    surname: str
    given_name: str
    profession: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class TestCA:
    """The test root and the intermediate that issues card certificates."""

    __test__: ClassVar[bool] = False  # a CA, not a pytest test class

    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: rsa.RSAPrivateKey
    root_path: Path
    intermediate_path: Path


@dataclass(frozen=True)
class CardCertificates:
    """Where the card's certificates (PEM) and private keys (PEM, 0600) were written."""

    authentication: Path
    authentication_key: Path
    signature: Path
    signature_key: Path


def _igc_sante_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ASIP-SANTE"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "0002 187512751"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC-SANTE"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


ROOT_NAME = _igc_sante_name("AC RACINE IGC-SANTE FORT")
INTERMEDIATE_NAME = _igc_sante_name("AC IGC-SANTE FORT PERSONNES")

_CA_LIFETIME = timedelta(days=5 * 365)
_KEY_SIZE = 2048
_TEST_NOTICE = x509.CertificatePolicies(
    [
        x509.PolicyInformation(
            CertificatePoliciesOID.ANY_POLICY,
            [x509.UserNotice(None, "cpsfleet TEST CA for simulated cards - not issued by the ANS")],
        )
    ]
)
_CA_FILES = ("root-ca.pem", "root-ca.key", "intermediate-ca.pem", "intermediate-ca.key")


# --- the CA ------------------------------------------------------------------


def load_or_create_ca(directory: Path) -> TestCA:
    """The test CA kept in ``directory``, created there (keys 0600) on first use."""
    present = [name for name in _CA_FILES if (directory / name).exists()]
    if not present:
        with _io_errors(_("cannot create the test CA in {directory}").format(directory=directory)):
            _create_ca(directory)
    elif len(present) < len(_CA_FILES):
        missing = ", ".join(name for name in _CA_FILES if name not in present)
        raise PkiError(
            _(
                "test CA in {directory} is incomplete (missing {missing}): "
                "restore those files or empty the directory to create a new CA"
            ).format(directory=directory, missing=missing)
        )
    return _load_ca(directory)


def _create_ca(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    validity = _ca_validity()
    root_key, inter_key = _new_key(), _new_key()
    root = _ca_certificate(ROOT_NAME, root_key, ROOT_NAME, root_key, validity, path_length=1)
    inter = _ca_certificate(
        INTERMEDIATE_NAME, inter_key, ROOT_NAME, root_key, validity, path_length=0
    )
    _write_key(directory / "root-ca.key", root_key)
    _write_key(directory / "intermediate-ca.key", inter_key)
    _write_certificate(directory / "root-ca.pem", root)
    _write_certificate(directory / "intermediate-ca.pem", inter)


def _ca_validity() -> tuple[datetime, datetime]:
    """From yesterday (clock skew) for five years: short, unlike the real IGC-Santé roots."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return start, start + _CA_LIFETIME


def _ca_certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    validity: tuple[datetime, datetime],
    path_length: int,
) -> x509.Certificate:
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
    builder = _builder(subject, key, issuer, issuer_key, validity)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
    builder = builder.add_extension(usage, critical=True).add_extension(_TEST_NOTICE, False)
    return builder.sign(issuer_key, hashes.SHA256())


def _load_ca(directory: Path) -> TestCA:
    try:
        root = x509.load_pem_x509_certificate((directory / "root-ca.pem").read_bytes())
        inter = x509.load_pem_x509_certificate((directory / "intermediate-ca.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / "intermediate-ca.key").read_bytes(), password=None
        )
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(
            _("cannot read the test CA in {directory}: {error}").format(
                directory=directory, error=exc
            )
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(
            _("{path} is not an RSA private key").format(path=directory / "intermediate-ca.key")
        )
    paths = directory / "root-ca.pem", directory / "intermediate-ca.pem"
    return TestCA(root, inter, key, *paths)


# --- card certificates ----------------------------------------------------------

# A CN holds at most 64 characters (RFC 5280 ub-common-name).
_ID_NAT = re.compile(r"[0-9A-Za-z]{1,64}")

_HOLDER_RULES: tuple[tuple[Callable[[Holder], bool], str], ...] = (
    (lambda h: bool(_ID_NAT.fullmatch(h.id_nat)), "id_nat must be 1 to 64 ASCII digits/letters"),
    (lambda h: bool(h.surname.strip()), "surname must not be empty"),
    (lambda h: bool(h.given_name.strip()), "given_name must not be empty"),
    (lambda h: bool(h.profession.strip()), "profession must not be empty"),
    (lambda h: _utc(h.not_after) > _utc(h.not_before), "not_after must be after not_before"),
)


def issue_card_certificates(ca: TestCA, holder: Holder, out_dir: Path) -> CardCertificates:
    """Authentication and signature certificates for ``holder``, issued by the intermediate."""
    _validate(holder)
    with _io_errors(
        _("cannot write the card certificates to {directory}").format(directory=out_dir)
    ):
        out_dir.mkdir(parents=True, exist_ok=True)
        auth = _issue(ca, holder, _key_usage(digital_signature=True), out_dir, "auth")
        sign = _issue(ca, holder, _key_usage(content_commitment=True), out_dir, "sign")
    return CardCertificates(*auth, *sign)


def _validate(holder: Holder) -> None:
    broken = [message for rule, message in _HOLDER_RULES if not rule(holder)]
    if broken:
        raise PkiError(f"cannot issue certificates for {holder.id_nat!r}: " + "; ".join(broken))


def holder_name(holder: Holder) -> x509.Name:
    """``CN=<id_nat>+SN=<surname>+GN=<given_name>,title=<profession>,C=FR`` as on real cards."""
    identity = x509.RelativeDistinguishedName(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, holder.id_nat),
            x509.NameAttribute(NameOID.SURNAME, holder.surname),
            x509.NameAttribute(NameOID.GIVEN_NAME, holder.given_name),
        ]
    )
    country = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")])
    title = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.TITLE, holder.profession)])
    return x509.Name([country, title, identity])


def _issue(
    ca: TestCA, holder: Holder, usage: x509.KeyUsage, out_dir: Path, stem: str
) -> tuple[Path, Path]:
    key, signer = _new_key(), ca.intermediate_key
    validity = _utc(holder.not_before), _utc(holder.not_after)
    builder = _builder(holder_name(holder), key, ca.intermediate.subject, signer, validity)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    certificate = builder.add_extension(usage, critical=True).sign(signer, hashes.SHA256())
    cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key"
    _write_key(key_path, key)
    _write_certificate(cert_path, certificate)
    return cert_path, key_path


# --- building blocks ---------------------------------------------------------------


def _builder(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    validity: tuple[datetime, datetime],
) -> x509.CertificateBuilder:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # an existing file keeps its mode otherwise
        file.write(pem)


def _write_certificate(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@contextmanager
def _io_errors(what: str) -> Iterator[None]:
    """File-system errors raised as ``PkiError`` saying what could not be done."""
    try:
        yield
    except OSError as exc:
        raise PkiError(_("{what}: {error}").format(what=what, error=exc)) from exc


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
