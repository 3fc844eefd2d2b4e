"""A small CA for the fleet's mutual TLS, for SSTIs without a PKI of their own.

One directory holds everything::

    ca.pem, ca.key                       the fleet CA (certificate 0644, key 0600)
    agents/<host_id>.pem, .key           one per workstation: CN = host id, clientAuth
    controllers/<name>.pem, .key         CN = cpsfleet-controller by default, clientAuth;
                                         cpsfleet-commands for the commands it sends
    brokers/<name>.pem, .key             serverAuth, subjectAltName from ``hosts``

Mosquitto (``use_identity_as_username``) takes a client certificate's CN as the
MQTT user name its ACL knows: an agent's CN is its host id, which confines it to
its own topics. A ``<name>.pem`` holds the leaf certificate only; clients and the
broker are given ``ca.pem`` separately.

Keys are EC P-256 (ECDSA with SHA-256): every TLS 1.2/1.3 stack the fleet meets
(OpenSSL under Mosquitto and Python, Windows, macOS) speaks it, keys and handshakes
are small and fast on old workstations, and ANSSI's RGS accepts 256-bit curves
as it does RSA 3072. Files are replaced atomically (a temporary file, then
``os.replace``), so a process reading them never sees half a file.

Errors are ``PkiError`` (a ``ValueError``) saying what went wrong and what to do.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Re-exported: the agent checks a command's signer against it, the PKI and the ACL name it.
from cpsfleet.i18n import _
from cpsfleet.schemas.commands import COMMANDS_IDENTITY as COMMANDS_IDENTITY
from cpsfleet.schemas.topics import HOST_ID, TopicError, check_host_id

Role = Literal["agent", "controller", "broker"]
ROLES: tuple[Role, ...] = ("agent", "controller", "broker")
ROLE_NAMES: dict[str, Role] = {role: role for role in ROLES}
CONTROLLER_IDENTITY = "cpsfleet-controller"
ORGANIZATION = "cpsfleet"
CA_CERTIFICATE, CA_KEY = "ca.pem", "ca.key"
PREVIOUS = ".previous"
CERTIFICATE_MODE, KEY_MODE = 0o644, 0o600
# Workstation clocks drift: a certificate valid from an hour ago works on one that is behind.
CLOCK_SKEW = timedelta(hours=1)
RIVALS: dict[Role, Role] = {"agent": "controller", "controller": "agent"}
USAGES = {
    "agent": ExtendedKeyUsageOID.CLIENT_AUTH,
    "controller": ExtendedKeyUsageOID.CLIENT_AUTH,
    "broker": ExtendedKeyUsageOID.SERVER_AUTH,
}


class PkiError(ValueError):
    """The fleet PKI cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class CaFiles:
    certificate: Path
    key: Path


@dataclass(frozen=True)
class IssuedFiles:
    """A leaf certificate and its key; after a renewal, where the replaced pair was kept."""

    role: Role
    name: str
    certificate: Path
    key: Path
    not_after: datetime
    previous_certificate: Path | None = None
    previous_key: Path | None = None


class CertificateInfo(TypedDict):
    path: str
    name: str
    role: str
    serial: str
    not_before: str
    not_after: str
    days_left: int
    hosts: list[str]


# --- the CA ----------------------------------------------------------------------


def create_ca(
    directory: Path, name: str = "cpsfleet fleet CA", days: int = 3650, *, force: bool = False
) -> CaFiles:
    """A new CA in ``directory``; an existing one is only replaced (and kept as .previous)
    with ``force``, since every certificate it issued stops being accepted."""
    _check_days(days)
    files = CaFiles(directory / CA_CERTIFICATE, directory / CA_KEY)
    exists = files.certificate.exists() or files.key.exists()
    if exists and not force:
        raise PkiError(
            _(
                "a CA already exists in {directory}: replacing it would make every certificate "
                "it issued useless; pass force (--force) to replace it anyway"
            ).format(directory=directory)
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION), _cn(name)])
    start = _now() - CLOCK_SKEW
    builder = _builder(subject, key.public_key(), subject, key, start, start + timedelta(days))
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(_key_usage(ca=True), critical=True)
    certificate = builder.sign(key, hashes.SHA256())
    with _io_errors(_("cannot write the CA to {directory}").format(directory=directory)):
        directory.mkdir(parents=True, exist_ok=True)
        _write_pair(files.certificate, files.key, certificate, key, keep_previous=exists)
    return files


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    files = CaFiles(directory / CA_CERTIFICATE, directory / CA_KEY)
    if not files.certificate.exists() or not files.key.exists():
        raise PkiError(
            _("no CA in {directory} (ca.pem and ca.key): create one first (init)").format(
                directory=directory
            )
        )
    certificate = _read_certificate(files.certificate)
    try:
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise PkiError(
            _("cannot read the CA key {path}: {error}").format(path=files.key, error=error)
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(
            _("{path} is not an EC private key: not a key made by this PKI").format(path=files.key)
        )
    if key.public_key() != certificate.public_key():
        raise PkiError(
            _("{key} is not the key of {certificate}: restore the pair").format(
                key=files.key, certificate=files.certificate
            )
        )
    return certificate, key


# --- leaf certificates ---------------------------------------------------------------


def issue(
    directory: Path, role: Role, name: str, days: int = 825, hosts: Sequence[str] = ()
) -> IssuedFiles:
    """A new key and certificate for ``name`` in ``directory/<role>s/``; never overwrites."""
    _check_days(days)
    _check_name(role, name)
    _check_free(directory, role, name)
    alt_names = _alt_names(role, hosts)
    ca, ca_key = _load_ca(directory)
    certificate_path, key_path = _paths(directory, role, name)
    for path in (certificate_path, key_path):
        if path.exists():
            raise PkiError(
                _("{path} already exists: renew it instead of issuing it again").format(path=path)
            )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            _cn(name),
        ]
    )
    return _sign_leaf(ca, ca_key, role, subject, alt_names, days, (certificate_path, key_path))


def renew(directory: Path, role: Role, name: str, days: int = 825) -> IssuedFiles:
    """A new key and certificate with the same subject (and names) as the current one,
    replacing it atomically; the replaced pair is kept as ``<name>.pem.previous`` and
    ``<name>.key.previous``."""
    _check_days(days)
    _check_name(role, name)
    certificate_path, key_path = _paths(directory, role, name)
    if not certificate_path.exists():
        raise PkiError(
            _("no {role} certificate {path}: issue it first").format(
                role=role, path=certificate_path
            )
        )
    current = _read_certificate(certificate_path)
    ca, ca_key = _load_ca(directory)
    try:
        alt_names = list(
            current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        alt_names = []
    paths = (certificate_path, key_path)
    return _sign_leaf(ca, ca_key, role, current.subject, alt_names, days, paths, renewing=True)


def _sign_leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    role: Role,
    subject: x509.Name,
    alt_names: list[x509.GeneralName],
    days: int,
    paths: tuple[Path, Path],
    renewing: bool = False,
) -> IssuedFiles:
    start, end = _validity(ca, days)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(subject, key.public_key(), ca.subject, ca_key, start, end)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([USAGES[role]]), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    certificate_path, key_path = paths
    with _io_errors(
        _("cannot write the {role} certificate to {directory}").format(
            role=role, directory=certificate_path.parent
        )
    ):
        certificate_path.parent.mkdir(parents=True, exist_ok=True)
        _write_pair(certificate_path, key_path, certificate, key, keep_previous=renewing)
    previous = (_previous(certificate_path), _previous(key_path)) if renewing else (None, None)
    name = _common_name(certificate)
    return IssuedFiles(role, name, certificate_path, key_path, end, *previous)


def _validity(ca: x509.Certificate, days: int) -> tuple[datetime, datetime]:
    """From an hour ago to ``days`` from now, within the CA's own validity."""
    now = _now()
    if now + timedelta(days) > ca.not_valid_after_utc:
        left = (ca.not_valid_after_utc - now).days
        raise PkiError(
            _(
                "the CA expires on {day}, {left} days from now: "
                "ask for at most {left} days (--days), or create a new CA"
            ).format(day=f"{ca.not_valid_after_utc:%Y-%m-%d}", left=left)
        )
    return now - CLOCK_SKEW, now + timedelta(days)


def _check_name(role: Role, name: str) -> None:
    """Names become file names, MQTT user names and ACL lines: host-id characters only."""
    _role(role)
    if role == "agent":
        try:
            check_host_id(name)
        except TopicError as error:
            raise PkiError(
                _("{error} (an agent certificate is named by its host id)").format(error=error)
            ) from None
    elif not HOST_ID.fullmatch(name):
        raise PkiError(
            _(
                "{role} name {name} must be 1 to 64 letters, digits, dots, underscores or hyphens"
            ).format(role=role, name=repr(name))
        )


def _check_free(directory: Path, role: Role, name: str) -> None:
    """Agents and controllers share the broker's user names, so neither may take the
    other's: an agent named like the controller would get the controller's rights."""
    other = RIVALS.get(role)
    taken = other is not None and _paths(directory, other, name)[0].exists()
    if taken or (role == "agent" and name in (CONTROLLER_IDENTITY, COMMANDS_IDENTITY)):
        holder = _("an agent") if other == "agent" else _("the controller")
        raise PkiError(
            _(
                "{name} is already the name of {holder} on the broker: a certificate of the "
                "same name would get its rights; choose another name"
            ).format(name=repr(name), holder=holder)
        )


def _alt_names(role: Role, hosts: Sequence[str]) -> list[x509.GeneralName]:
    if role != "broker":
        if hosts:
            raise PkiError(_("host names (--host) are for broker certificates only"))
        return []
    if not hosts:
        raise PkiError(
            _(
                "a broker certificate needs the names clients reach it by: "
                "give at least one --host (DNS name or IP address)"
            )
        )
    return [_alt_name(host) for host in hosts]


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not all(HOST_ID.fullmatch(label) and "_" not in label for label in labels):
        raise PkiError(_("{host} is neither an IP address nor a DNS name").format(host=repr(host)))
    return x509.DNSName(host.rstrip("."))


# --- reading certificates --------------------------------------------------------------


def certificate_info(path: Path) -> CertificateInfo:
    """Name (CN), role, serial, validity and subjectAltNames of a PEM certificate."""
    certificate = _read_certificate(path)
    try:
        alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        hosts = [str(name.value) for name in alt_names.value]
    except x509.ExtensionNotFound:
        hosts = []
    not_after = certificate.not_valid_after_utc
    return CertificateInfo(
        path=str(path),
        name=_common_name(certificate),
        role=_role_of(certificate),
        serial=f"{certificate.serial_number:x}",
        not_before=certificate.not_valid_before_utc.isoformat(),
        not_after=not_after.isoformat(),
        days_left=(not_after - _now()).days,
        hosts=hosts,
    )


def list_certificates(directory: Path) -> list[CertificateInfo]:
    """The CA, then every agent, controller and broker certificate (not the .previous ones)."""
    if not directory.is_dir():
        raise PkiError(
            _("{directory} is not a directory: give the PKI directory (--dir)").format(
                directory=directory
            )
        )
    paths = [directory / CA_CERTIFICATE] if (directory / CA_CERTIFICATE).exists() else []
    for role in ROLES:
        paths += sorted((directory / f"{role}s").glob("*.pem"))
    return [certificate_info(path) for path in paths]


def _role_of(certificate: x509.Certificate) -> str:
    """``ca``, ``broker`` (serverAuth), or for clientAuth the role named in the OU."""
    extensions = certificate.extensions
    try:
        if extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca"
        usages = list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return "unknown"
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return "broker"
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return "unknown"
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    unit = str(units[0].value) if units else ""
    return unit if unit in ("agent", "controller") else "client"


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        raise PkiError(
            _("cannot read the certificate {path}: {error}").format(path=path, error=error)
        ) from None


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


# --- building blocks ------------------------------------------------------------------


def _builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    start: datetime,
    end: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _cn(name: str) -> x509.NameAttribute[str]:
    if not 1 <= len(name) <= 64:
        raise PkiError(
            _("name {name} must be 1 to 64 characters (a certificate's CN)").format(name=repr(name))
        )
    return x509.NameAttribute(NameOID.COMMON_NAME, name)


def _paths(directory: Path, role: Role, name: str) -> tuple[Path, Path]:
    folder = directory / f"{role}s"
    return folder / f"{name}.pem", folder / f"{name}.key"


def _role(role: str) -> Role:
    if role not in ROLE_NAMES:
        raise PkiError(
            _("role {role} must be one of {roles}").format(role=repr(role), roles=", ".join(ROLES))
        )
    return ROLE_NAMES[role]


def _check_days(days: int) -> None:
    if days < 1:
        raise PkiError(_("validity must be at least 1 day, not {days}").format(days=days))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _previous(path: Path) -> Path:
    return path.with_name(path.name + PREVIOUS)


# --- files ------------------------------------------------------------------------------


def _write_pair(
    certificate_path: Path,
    key_path: Path,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    keep_previous: bool,
) -> None:
    """Both files are written in full before either replaces its predecessor: the key
    first, so the pair on disk is mismatched only between two ``os.replace`` calls."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    staged = [(_stage(key_path, key_pem, KEY_MODE), key_path)]
    try:
        staged.append((_stage(certificate_path, pem, CERTIFICATE_MODE), certificate_path))
        for _, target in staged:
            if keep_previous and target.exists():
                mode = KEY_MODE if target == key_path else CERTIFICATE_MODE
                os.replace(_stage(target, target.read_bytes(), mode), _previous(target))
        for temporary, target in staged:
            os.replace(temporary, target)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)


def _stage(path: Path, data: bytes, mode: int) -> Path:
    """A complete temporary copy of ``data`` with ``mode`` beside ``path``, ready to replace it."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)  # exact, whatever the umask
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


@contextmanager
def _io_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise PkiError(_("{what}: {error}").format(what=what, error=error)) from None
