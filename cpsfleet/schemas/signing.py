"""Signed documents: who wrote one, checked against the fleet CA by whoever reads it.

A signed document carries two more members: ``signer``, the base64 of the DER certificate
of the identity that signed it, and ``signature``, the base64 of its ECDSA-with-SHA-256
signature (DER, as ``cryptography`` writes it) over the document's canonical form:

    the UTF-8 bytes of the document without ``signature`` (``signer`` included), as
    JSON with its keys sorted at every level, no whitespace (``,`` and ``:`` as the
    separators) and non-ASCII characters as themselves, that is Python's
    ``json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.

The reader computes that form from the document it parsed, so what is verified is what
it acts on, whatever spacing or key order the payload had. Keys are EC only (any curve,
SHA-256): ``cpsfleet pki`` issues P-256 keys, and one algorithm means one path to check.
A signer is trusted when a fleet CA issued its certificate directly, it is within its
validity, and its CN is the identity expected for that kind of document.

Errors are ``SignatureError`` (a ``ValueError``) saying what is wrong with the signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SIGNER, SIGNATURE = "signer", "signature"
ALGORITHM = ec.ECDSA(hashes.SHA256())


class SignatureError(ValueError):
    """A document whose signature cannot be made or trusted; the message says why."""


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the document without ``signature`` (module docstring)."""
    unsigned = {key: value for key, value in document.items() if key != SIGNATURE}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


@dataclass(frozen=True)
class Signer:
    """A certificate and its EC private key, which sign documents as that certificate's CN."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_files(cls, certificate: Path, key: Path) -> Signer:
        """The PEM pair of a TLS client identity (e.g. the controller's commands certificate)."""
        try:
            loaded = x509.load_pem_x509_certificate(certificate.read_bytes())
            private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise SignatureError(f"cannot read {certificate} and {key}: {error}") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise SignatureError(
                f"{key} is not an EC key: documents are signed with ECDSA only, as the keys "
                "`cpsfleet pki` issues are; issue the certificate with it"
            )
        if private.public_key() != loaded.public_key():
            raise SignatureError(f"{key} is not the key of {certificate}: give the matching pair")
        return cls(loaded, private)

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` with ``signer`` and ``signature`` (any it had are replaced)."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        signed = {**document, SIGNER: base64.b64encode(der).decode("ascii")}
        signature = self.key.sign(canonical(signed), ALGORITHM)
        return {**signed, SIGNATURE: base64.b64encode(signature).decode("ascii")}


def load_cas(path: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM file: the CAs a signer may be issued by (during a CA
    rotation the file holds the old CA and the new one)."""
    try:
        cas = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except (OSError, ValueError) as error:
        raise SignatureError(f"cannot read the CA certificates {path}: {error}") from None
    return cas


def verify(
    document: dict[str, Any], cas: Sequence[x509.Certificate], identity: str, now: datetime
) -> None:
    """Return if ``identity``, certified by one of ``cas`` and valid ``now``, signed
    ``document`` as it is; SignatureError otherwise."""
    if SIGNER not in document or SIGNATURE not in document:
        raise SignatureError(f"unsigned: only a document signed by {identity} is trusted")
    signer = _certificate(document[SIGNER])
    _check_signer(signer, cas, identity, now)
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("the signer's key is not an EC key: documents are signed with ECDSA")
    try:
        key.verify(_decoded(document[SIGNATURE], SIGNATURE), canonical(document), ALGORITHM)
    except InvalidSignature:
        raise SignatureError(
            "the signature does not match: the document was altered after it was signed"
        ) from None


def _check_signer(
    signer: x509.Certificate, cas: Sequence[x509.Certificate], identity: str, now: datetime
) -> None:
    if not any(_issued_by(signer, ca) for ca in cas):
        names = "; ".join(ca.subject.rfc4514_string() for ca in cas)
        raise SignatureError(
            f"the signer {_common_name(signer)!r} is not certified by the fleet CA ({names})"
        )
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        raise SignatureError(
            f"the signer's certificate is valid from {signer.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {signer.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now: renew it"
        )
    if _common_name(signer) != identity:
        raise SignatureError(f"signed by {_common_name(signer)!r}, not by {identity!r}")


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _certificate(text: str) -> x509.Certificate:
    der = _decoded(text, SIGNER)
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise SignatureError(f"the signer is not a certificate: {error}") from None


def _decoded(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise SignatureError(f"{name} is not base64: {error}") from None


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
