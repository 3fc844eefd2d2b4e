"""A PKCS#15 (ISO 7816-15) application laid out as the CPS cards lay it out.

EF.DIR names the application and its path; in the application DF, EF.ODF
points to the certificate directory (CDF), whose entries give each
certificate's label, id and file, and on a CPS to the authentication objects
(AODF), whose PIN entry gives the PIN's reference. EF.TokenInfo identifies the
token.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpsfleet.sim import der
from cpsfleet.sim.iso import DF, EF

FID_DIR = 0x2F00
FID_ODF = 0x5031
FID_TOKEN_INFO = 0x5032
FID_AODF = 0x5034
FID_CDF = 0x5036
FIRST_CERT_FID = 0xC001
ODF_TAG_CDF = 0xA4
ODF_TAG_AODF = 0xA8
PIN_LABEL = "Code porteur"
PIN_MIN_LENGTH, PIN_MAX_LENGTH = 4, 8
# PKCS#15 PinFlags: only "initialized" (bit 4); no padding, so the PIN goes as typed.
PIN_FLAGS_INITIALIZED = b"\x08"
PIN_TYPE_ASCII_NUMERIC = 1


@dataclass(frozen=True)
class CardCertificate:
    label: str
    der: bytes


def dir_record(aid: bytes, label: str, path: bytes) -> bytes:
    """An EF.DIR application template: AID, label and the application's path."""
    return der.tlv(0x61, der.tlv(0x4F, aid), der.tlv(0x50, label.encode()), der.tlv(0x51, path))


def path_object(path: bytes) -> bytes:
    return der.sequence(der.octet_string(path))


def odf(cdf_path: bytes, aodf_path: bytes | None = None) -> bytes:
    """The AODF entry first (if any), then the CDF."""
    aodf = der.tlv(ODF_TAG_AODF, path_object(aodf_path)) if aodf_path else b""
    return aodf + der.tlv(ODF_TAG_CDF, path_object(cdf_path))


def aodf_pin_entry(label: str, auth_id: int, reference: int) -> bytes:
    """An AuthenticationObject for a PIN: common attributes (label), its authId, and
    PinAttributes [1]: flags, type, min / stored / max length, pinReference [0]."""
    common = der.sequence(der.utf8(label))
    klass = der.sequence(der.octet_string(bytes([auth_id])))
    attributes = der.sequence(
        der.bit_string(PIN_FLAGS_INITIALIZED, unused_bits=3),
        der.tlv(0x0A, bytes([PIN_TYPE_ASCII_NUMERIC])),
        der.integer(PIN_MIN_LENGTH),
        der.integer(PIN_MAX_LENGTH),
        der.integer(PIN_MAX_LENGTH),
        der.tlv(0x80, bytes([reference])),
    )
    return der.sequence(common, klass, der.tlv(0xA1, attributes))


def token_info(serial: bytes, manufacturer: str, label: str) -> bytes:
    return der.sequence(
        der.integer(0),
        der.octet_string(serial),
        der.utf8(manufacturer),
        der.tlv(0x80, label.encode()),
        der.bit_string(b"\x40", unused_bits=6),
    )


def cdf_entry(label: str, cert_id: int, path: bytes) -> bytes:
    """A CertificateObject: common attributes, class attributes (id), type attributes (path)."""
    common = der.sequence(der.utf8(label))
    klass = der.sequence(der.octet_string(bytes([cert_id])))
    typed = der.tlv(0xA1, der.sequence(path_object(path)))
    return der.sequence(common, klass, typed)


def application(
    fid: int,
    aid: bytes,
    certificates: list[CardCertificate],
    serial: bytes,
    token_label: str,
    path_prefix: bytes,
    pin_reference: int | None = None,
) -> DF:
    """The application DF with its ODF, TokenInfo, CDF and one EF per certificate; with
    ``pin_reference``, an AODF holding that PIN too."""
    app_path = path_prefix + fid.to_bytes(2, "big")
    cert_files = [EF(FIRST_CERT_FID + index, cert.der) for index, cert in enumerate(certificates)]
    entries = [
        cdf_entry(cert.label, index + 1, app_path + ef.fid.to_bytes(2, "big"))
        for index, (cert, ef) in enumerate(zip(certificates, cert_files, strict=True))
    ]
    aodf: list[DF | EF] = []
    if pin_reference is not None:
        aodf = [EF(FID_AODF, aodf_pin_entry(PIN_LABEL, 1, pin_reference))]
    aodf_path = app_path + FID_AODF.to_bytes(2, "big") if aodf else None
    files: list[DF | EF] = [
        EF(FID_ODF, odf(app_path + FID_CDF.to_bytes(2, "big"), aodf_path)),
        EF(FID_TOKEN_INFO, token_info(serial, "ASIP-SANTE", token_label)),
        *aodf,
        EF(FID_CDF, b"".join(entries)),
        *cert_files,
    ]
    return DF(fid, aid, files)
