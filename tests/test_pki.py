"""``cpsfleet pki``: the fleet CA, agent / controller / broker certificates, renewal, refusals."""

from __future__ import annotations

import ipaddress
import json
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from typer.testing import CliRunner, Result

from cpsfleet.controller.cli.pki import app
from cpsfleet.controller.pki import ca as pki
from cpsfleet.controller.pki.ca import CONTROLLER_IDENTITY, PkiError

BROKER_HOSTS = ["127.0.0.1", "localhost", "broker.ssti.example"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    certificates = x509.load_pem_x509_certificates(path.read_bytes())
    assert len(certificates) == 1, f"{path} must hold the leaf certificate only"
    return certificates[0]


def cn(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def usages(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def store(directory: Path) -> Store:
    return Store([load(directory / "ca.pem")])


def client_verifier(directory: Path) -> ClientVerifier:
    """The Web PKI profile (chain, validity, key usage, clientAuth), except that an
    MQTT client certificate is known by its CN and needs no subjectAltName."""
    leaf = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    builder = PolicyBuilder().store(store(directory))
    builder = builder.extension_policies(
        ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf
    )
    return builder.build_client_verifier()


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    pki.create_ca(directory)
    return directory


# --- the CA ----------------------------------------------------------------------


def test_the_ca_is_a_self_signed_p256_ca_with_a_private_key(tmp_path: Path) -> None:
    files = pki.create_ca(tmp_path / "pki", name="SSTI Lyon CA", days=3650)
    assert (mode(files.certificate), mode(files.key)) == (0o644, 0o600)
    certificate = load(files.certificate)
    certificate.verify_directly_issued_by(certificate)
    assert cn(certificate) == "SSTI Lyon CA"
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == 3650
    key = load_pem_private_key(files.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == certificate.public_key()


def test_an_existing_ca_is_replaced_only_with_force(ca: Path) -> None:
    before = (ca / "ca.pem").read_bytes(), (ca / "ca.key").read_bytes()
    with pytest.raises(PkiError, match="a CA already exists.*force"):
        pki.create_ca(ca)
    assert ((ca / "ca.pem").read_bytes(), (ca / "ca.key").read_bytes()) == before
    pki.create_ca(ca, force=True)
    assert (ca / "ca.key").read_bytes() != before[1]
    previous = (ca / "ca.pem.previous").read_bytes(), (ca / "ca.key.previous").read_bytes()
    assert previous == before
    assert mode(ca / "ca.key.previous") == 0o600


# --- issuing ---------------------------------------------------------------------


def test_an_agent_certificate_is_a_client_certificate_named_by_its_host_id(ca: Path) -> None:
    files = pki.issue(ca, "agent", "ws-lyon-07")
    assert files.certificate == ca / "agents" / "ws-lyon-07.pem"
    assert files.key == ca / "agents" / "ws-lyon-07.key"
    assert (mode(files.certificate), mode(files.key)) == (0o644, 0o600)
    certificate = load(files.certificate)
    assert cn(certificate) == "ws-lyon-07"
    assert usages(certificate) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    client_verifier(ca).verify(certificate, [])
    server = PolicyBuilder().store(store(ca)).build_server_verifier(x509.DNSName("ws-lyon-07"))
    with pytest.raises(VerificationError):
        server.verify(certificate, [])  # clientAuth only: it cannot act as the broker
    key = load_pem_private_key(files.key.read_bytes(), password=None)
    assert key.public_key() == certificate.public_key()


def test_the_controller_certificate_is_a_client_certificate_of_its_own_role(ca: Path) -> None:
    files = pki.issue(ca, "controller", CONTROLLER_IDENTITY)
    assert files.certificate == ca / "controllers" / "cpsfleet-controller.pem"
    certificate = load(files.certificate)
    assert cn(certificate) == CONTROLLER_IDENTITY
    assert usages(certificate) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    client_verifier(ca).verify(certificate, [])
    assert pki.certificate_info(files.certificate)["role"] == "controller"


def test_a_broker_certificate_is_a_server_certificate_for_each_host(ca: Path) -> None:
    files = pki.issue(ca, "broker", "broker.ssti.example", hosts=BROKER_HOSTS)
    certificate = load(files.certificate)
    assert usages(certificate) == [ExtendedKeyUsageOID.SERVER_AUTH]
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "broker.ssti.example"]
    for subject in (
        x509.DNSName("broker.ssti.example"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        PolicyBuilder().store(store(ca)).build_server_verifier(subject).verify(certificate, [])
    other = PolicyBuilder().store(store(ca)).build_server_verifier(x509.DNSName("evil.example"))
    with pytest.raises(VerificationError):
        other.verify(certificate, [])
    with pytest.raises(VerificationError):
        client_verifier(ca).verify(certificate, [])  # serverAuth only: no client of the broker


def test_a_certificate_signed_by_another_ca_does_not_verify(ca: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    pki.create_ca(other)
    stranger = load(pki.issue(other, "agent", "ws-lyon-07").certificate)
    with pytest.raises(VerificationError):
        client_verifier(ca).verify(stranger, [])


@pytest.mark.parametrize(
    ("role", "name", "hosts", "message"),
    [
        ("agent", "ws/07", [], "host id 'ws/07' must be 1 to 64 letters"),
        ("agent", "a+b", [], "host id 'a\\+b' must be"),
        ("agent", "x" * 65, [], "must be 1 to 64"),
        ("agent", "../../etc/passwd", [], "must be 1 to 64 letters"),
        ("controller", "ctl one", [], "controller name 'ctl one' must be"),
        (
            "agent",
            CONTROLLER_IDENTITY,
            [],
            "already the name of the controller.*choose another name",
        ),
        ("agent", "ws-07", ["10.0.0.1"], "--host.*broker certificates only"),
        ("broker", "broker", [], "at least one --host"),
        ("broker", "broker", ["not a host"], "'not a host' is neither an IP address nor"),
    ],
)
def test_bad_names_are_refused(
    ca: Path, role: pki.Role, name: str, hosts: list[str], message: str
) -> None:
    with pytest.raises(PkiError, match=message):
        pki.issue(ca, role, name, hosts=hosts)
    assert {path.name for path in ca.rglob("*") if path.is_file()} == {"ca.pem", "ca.key"}


def test_agents_and_controllers_cannot_share_a_name(ca: Path) -> None:
    pki.issue(ca, "controller", "ctl-lyon")
    with pytest.raises(PkiError, match="'ctl-lyon' is already the name of the controller"):
        pki.issue(ca, "agent", "ctl-lyon")
    pki.issue(ca, "agent", "ws-07")
    with pytest.raises(PkiError, match="'ws-07' is already the name of an agent"):
        pki.issue(ca, "controller", "ws-07")


def test_an_issued_certificate_is_never_overwritten(ca: Path) -> None:
    files = pki.issue(ca, "agent", "ws-07")
    before = files.certificate.read_bytes(), files.key.read_bytes()
    with pytest.raises(PkiError, match="ws-07.pem already exists: renew it"):
        pki.issue(ca, "agent", "ws-07")
    assert (files.certificate.read_bytes(), files.key.read_bytes()) == before


def test_issuing_needs_a_readable_ca(tmp_path: Path, ca: Path) -> None:
    with pytest.raises(PkiError, match="no CA in .*create one first"):
        pki.issue(tmp_path / "empty", "agent", "ws-07")
    (ca / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(PkiError, match="cannot read the CA key .*ca.key"):
        pki.issue(ca, "agent", "ws-07")
    other = tmp_path / "other"
    pki.create_ca(other)
    (ca / "ca.key").write_bytes((other / "ca.key").read_bytes())
    with pytest.raises(PkiError, match="ca.key is not the key of .*ca.pem"):
        pki.issue(ca, "agent", "ws-07")


def test_validity_is_positive_and_within_the_cas(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    pki.create_ca(directory, days=100)
    with pytest.raises(PkiError, match="at least 1 day"):
        pki.issue(directory, "agent", "ws-07", days=0)
    with pytest.raises(PkiError, match="the CA expires on .* ask for at most 99 days"):
        pki.issue(directory, "agent", "ws-07", days=825)
    assert pki.certificate_info(pki.issue(directory, "agent", "ws-07", days=30).certificate)[
        "days_left"
    ] in (29, 30)


# --- renewal ---------------------------------------------------------------------


def test_renewal_keeps_the_subject_and_names_with_a_new_key_and_serial(ca: Path) -> None:
    issued = pki.issue(ca, "broker", "broker", hosts=BROKER_HOSTS)
    old_pem, old_key = issued.certificate.read_bytes(), issued.key.read_bytes()
    old = load(issued.certificate)
    renewed = pki.renew(ca, "broker", "broker", days=400)
    new = load(renewed.certificate)
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
    assert new.public_key() != old.public_key()
    san = x509.SubjectAlternativeName
    assert new.extensions.get_extension_for_class(san) == old.extensions.get_extension_for_class(
        san
    )
    assert usages(new) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (new.not_valid_after_utc - datetime.now(UTC)).days in (399, 400)
    assert renewed.previous_certificate == ca / "brokers" / "broker.pem.previous"
    assert renewed.previous_key == ca / "brokers" / "broker.key.previous"
    assert (renewed.previous_certificate.read_bytes(), renewed.previous_key.read_bytes()) == (
        old_pem,
        old_key,
    )
    assert (mode(renewed.key), mode(renewed.previous_key), mode(renewed.certificate)) == (
        0o600,
        0o600,
        0o644,
    )
    key = load_pem_private_key(renewed.key.read_bytes(), password=None)
    assert key.public_key() == new.public_key()
    PolicyBuilder().store(store(ca)).build_server_verifier(x509.DNSName("localhost")).verify(
        new, []
    )


def test_a_reader_never_sees_a_half_written_certificate(ca: Path) -> None:
    pki.issue(ca, "agent", "ws-07")
    path = ca / "agents" / "ws-07.pem"
    done, failures = threading.Event(), []

    def read_continuously() -> None:
        while not done.is_set():
            try:
                load(path)
            except (ValueError, AssertionError, OSError) as error:
                failures.append(error)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(30):
            pki.renew(ca, "agent", "ws-07")
    finally:
        done.set()
        reader.join(timeout=10)
    assert failures == []
    assert sorted(p.name for p in (ca / "agents").iterdir()) == [
        "ws-07.key",
        "ws-07.key.previous",
        "ws-07.pem",
        "ws-07.pem.previous",
    ]


def test_renewing_needs_an_issued_certificate(ca: Path) -> None:
    with pytest.raises(PkiError, match="no agent certificate .*ws-07.pem: issue it first"):
        pki.renew(ca, "agent", "ws-07")
    with pytest.raises(PkiError, match="host id '../ws-07' must be"):
        pki.renew(ca, "agent", "../ws-07")


# --- listing -----------------------------------------------------------------------


def test_the_listing_shows_each_certificate_once_with_its_role(ca: Path) -> None:
    pki.issue(ca, "agent", "ws-b")
    pki.issue(ca, "agent", "ws-a", days=10)
    pki.issue(ca, "controller", CONTROLLER_IDENTITY)
    pki.issue(ca, "broker", "broker", hosts=["127.0.0.1"])
    pki.renew(ca, "agent", "ws-b")
    rows = pki.list_certificates(ca)
    assert [(row["role"], row["name"]) for row in rows] == [
        ("ca", "cpsfleet fleet CA"),
        ("agent", "ws-a"),
        ("agent", "ws-b"),
        ("controller", CONTROLLER_IDENTITY),
        ("broker", "broker"),
    ]
    assert rows[1]["days_left"] in (9, 10)
    assert rows[4]["hosts"] == ["127.0.0.1"]
    with pytest.raises(PkiError, match="is not a directory"):
        pki.list_certificates(ca / "nowhere")


# --- the command line ----------------------------------------------------------------


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def refused(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_every_command_has_help() -> None:
    for command in ("init", "issue", "renew", "list"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "--dir" in result.output


def test_the_cli_creates_issues_renews_and_lists(tmp_path: Path) -> None:
    directory = str(tmp_path / "pki")
    assert cli("init", "--dir", directory).exit_code == 0
    assert cli("issue", "agent", "ws-a", "--dir", directory, "--days", "90").exit_code == 0
    assert cli("issue", "controller", "--dir", directory).exit_code == 0
    result = cli(
        "issue",
        "broker",
        "broker",
        "--dir",
        directory,
        "--host",
        "127.0.0.1",
        "--host",
        "localhost",
    )
    assert result.exit_code == 0 and "brokers/broker.pem" in result.output
    before = load(tmp_path / "pki" / "agents" / "ws-a.pem")
    result = cli("renew", "agent", "ws-a", "--dir", directory)
    assert result.exit_code == 0 and "ws-a.pem.previous" in result.output
    assert load(tmp_path / "pki" / "agents" / "ws-a.pem").serial_number != before.serial_number
    assert mode(tmp_path / "pki" / "agents" / "ws-a.key") == 0o600
    rows = json.loads(cli("list", "--dir", directory, "--json").output)
    assert [(row["role"], row["name"]) for row in rows] == [
        ("ca", "cpsfleet fleet CA"),
        ("agent", "ws-a"),
        ("controller", CONTROLLER_IDENTITY),
        ("broker", "broker"),
    ]
    assert rows[3]["hosts"] == ["127.0.0.1", "localhost"]
    table = cli("list", "--dir", directory).output
    assert "ws-a" in table and "days left" in table


def test_the_cli_refuses_with_one_line(tmp_path: Path) -> None:
    directory = str(tmp_path / "pki")
    assert "no CA in" in refused("issue", "agent", "ws-a", "--dir", directory)
    cli("init", "--dir", directory)
    assert "--force" in refused("init", "--dir", directory)
    assert "host id 'ws a'" in refused("issue", "agent", "ws a", "--dir", directory)
    assert "NAME is required" in refused("issue", "agent", "--dir", directory)
    assert "at least one --host" in refused("issue", "broker", "b", "--dir", directory)
    assert "issue it first" in refused("renew", "agent", "ws-a", "--dir", directory)
    assert "not a directory" in refused("list", "--dir", str(tmp_path / "nowhere"))
