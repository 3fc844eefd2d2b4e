"""The simulator's test PKI: IGC-Santé-like chain, card certificates, and the agent reading them."""

from __future__ import annotations

import dataclasses
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cpsfleet.agent.certificates import read_certificate
from cpsfleet.sim import pki

ROOT_DN = "CN=AC RACINE IGC-SANTE FORT,OU=IGC-SANTE,OU=0002 187512751,O=ASIP-SANTE,C=FR"
INTERMEDIATE_DN = "CN=AC IGC-SANTE FORT PERSONNES,OU=IGC-SANTE,OU=0002 187512751,O=ASIP-SANTE,C=FR"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

DOCTOR = pki.Holder(
    id_nat="810002813839",
    surname="DONNAT-GADY",
    given_name="ISABELLE",
    profession="Médecin",
    not_before=datetime(2023, 11, 27, tzinfo=UTC),
    not_after=datetime(2026, 11, 27, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca")


@pytest.fixture(scope="module")
def ca(ca_dir: Path) -> pki.TestCA:
    return pki.load_or_create_ca(ca_dir)


@pytest.fixture(scope="module")
def card(ca: pki.TestCA, tmp_path_factory: pytest.TempPathFactory) -> pki.CardCertificates:
    return pki.issue_card_certificates(ca, DOCTOR, tmp_path_factory.mktemp("card"))


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the CA ---------------------------------------------------------------------


def test_ca_names_copy_the_igc_sante(ca: pki.TestCA) -> None:
    assert ca.root.subject.rfc4514_string() == ROOT_DN
    assert ca.root.issuer.rfc4514_string() == ROOT_DN
    assert ca.intermediate.subject.rfc4514_string() == INTERMEDIATE_DN
    assert ca.intermediate.issuer.rfc4514_string() == ROOT_DN


def test_ca_is_marked_as_test_material(ca: pki.TestCA) -> None:
    for cert in (ca.root, ca.intermediate):
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        notices = [q for p in policies for q in p.policy_qualifiers or []]
        assert any(
            isinstance(q, x509.UserNotice) and "TEST" in (q.explicit_text or "") for q in notices
        )
        assert cert.not_valid_after_utc - cert.not_valid_before_utc < timedelta(days=6 * 365)


def test_ca_chain_verifies(ca: pki.TestCA) -> None:
    ca.root.verify_directly_issued_by(ca.root)
    ca.intermediate.verify_directly_issued_by(ca.root)
    assert ca.intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_files_are_written_with_private_keys_0600(ca: pki.TestCA, ca_dir: Path) -> None:
    assert {p.name for p in ca_dir.iterdir()} == {
        "root-ca.pem",
        "root-ca.key",
        "intermediate-ca.pem",
        "intermediate-ca.key",
    }
    assert mode(ca_dir / "root-ca.key") == 0o600
    assert mode(ca_dir / "intermediate-ca.key") == 0o600
    assert ca.root_path == ca_dir / "root-ca.pem"
    assert ca.intermediate_path == ca_dir / "intermediate-ca.pem"


def test_ca_is_reused_on_the_next_call(ca: pki.TestCA, ca_dir: Path) -> None:
    again = pki.load_or_create_ca(ca_dir)
    assert (again.root, again.intermediate) == (ca.root, ca.intermediate)
    assert again.intermediate_key.private_numbers() == ca.intermediate_key.private_numbers()


def test_incomplete_ca_directory_is_an_error(tmp_path: Path) -> None:
    pki.load_or_create_ca(tmp_path)
    (tmp_path / "intermediate-ca.key").unlink()
    with pytest.raises(pki.PkiError, match="intermediate-ca.key"):
        pki.load_or_create_ca(tmp_path)


def test_unreadable_ca_file_is_an_error(tmp_path: Path) -> None:
    pki.load_or_create_ca(tmp_path)
    (tmp_path / "root-ca.pem").write_text("not a certificate")
    with pytest.raises(pki.PkiError, match="cannot read the test CA"):
        pki.load_or_create_ca(tmp_path)


# --- card certificates ----------------------------------------------------------------


def test_card_certificates_chain_to_the_intermediate_and_root(
    ca: pki.TestCA, card: pki.CardCertificates
) -> None:
    for path in (card.authentication, card.signature):
        cert = load(path)
        cert.verify_directly_issued_by(ca.intermediate)
        assert cert.issuer == ca.intermediate.subject
        with pytest.raises(ValueError):
            cert.verify_directly_issued_by(ca.root)  # issued by the intermediate, not the root
    ca.intermediate.verify_directly_issued_by(ca.root)


def test_card_subject_is_multi_valued_like_real_cards(card: pki.CardCertificates) -> None:
    rdns = list(load(card.authentication).subject.rdns)
    assert [{(a.oid, a.value) for a in rdn} for rdn in rdns] == [
        {(NameOID.COUNTRY_NAME, "FR")},
        {(NameOID.TITLE, "Médecin")},
        {
            (NameOID.COMMON_NAME, "810002813839"),
            (NameOID.SURNAME, "DONNAT-GADY"),
            (NameOID.GIVEN_NAME, "ISABELLE"),
        },
    ]


def test_card_key_usages(card: pki.CardCertificates) -> None:
    auth = load(card.authentication).extensions.get_extension_for_class(x509.KeyUsage).value
    sign = load(card.signature).extensions.get_extension_for_class(x509.KeyUsage).value
    assert (auth.digital_signature, auth.content_commitment) == (True, False)
    assert (sign.digital_signature, sign.content_commitment) == (False, True)


def test_card_keys_are_rsa_2048_matching_their_certificates_0600(
    card: pki.CardCertificates,
) -> None:
    pairs = ((card.authentication, card.authentication_key), (card.signature, card.signature_key))
    names = [(c.name, k.name) for c, k in pairs]
    assert names == [("auth.pem", "auth.key"), ("sign.pem", "sign.key")]
    for cert_path, key_path in pairs:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert key.public_key() == load(cert_path).public_key()
        assert mode(key_path) == 0o600


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id_nat": ""}, "id_nat"),
        ({"id_nat": "81 0002"}, "id_nat"),
        ({"id_nat": "8100/0281"}, "id_nat"),
        ({"id_nat": "8" * 65}, "id_nat"),
        ({"id_nat": "81000281é"}, "id_nat"),
        ({"surname": " "}, "surname"),
        ({"given_name": ""}, "given_name"),
        ({"profession": ""}, "profession"),
        ({"not_after": DOCTOR.not_before}, "not_after"),
        ({"not_after": DOCTOR.not_before - timedelta(days=1)}, "not_after"),
    ],
)
def test_bad_holder_is_refused(
    ca: pki.TestCA, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    holder = dataclasses.replace(DOCTOR, **change)
    with pytest.raises(pki.PkiError, match=field) as raised:
        pki.issue_card_certificates(ca, holder, tmp_path)
    assert isinstance(raised.value, ValueError)
    assert list(tmp_path.iterdir()) == []


# --- the agent reads them back -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["PEM", "DER"])
def test_agent_reads_the_holder_back(card: pki.CardCertificates, encoding: str) -> None:
    data = card.authentication.read_bytes()
    if encoding == "DER":
        data = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    cert = read_certificate(data, label=None, now=NOW)
    assert cert.error is None
    assert (cert.id_nat, cert.id_type) == ("810002813839", "rpps")
    assert (cert.surname, cert.given_name) == ("DONNAT-GADY", "ISABELLE")
    assert cert.profession == "Médecin"
    assert (cert.not_before, cert.not_after) == ("2023-11-27T00:00:00Z", "2026-11-27T00:00:00Z")
    assert (cert.days_left, cert.expired) == (329, False)
    assert (cert.role, cert.issuer_cn) == ("authentication", "AC IGC-SANTE FORT PERSONNES")


def test_agent_reads_the_signature_role(card: pki.CardCertificates) -> None:
    cert = read_certificate(card.signature.read_bytes(), label=None, now=NOW)
    assert cert.role == "signature"


def test_agent_sees_an_expired_card(ca: pki.TestCA, tmp_path: Path) -> None:
    expired = pki.Holder(
        id_nat="00B7010446",
        surname="MASSEUR1044",
        given_name="HONORE",
        profession="Masseur-Kinésithérapeute",
        not_before=datetime(2020, 1, 1),  # naive: UTC
        not_after=datetime(2023, 1, 1),
    )
    paths = pki.issue_card_certificates(ca, expired, tmp_path)
    cert = read_certificate(paths.signature.read_bytes(), label=None, now=NOW)
    assert (cert.id_nat, cert.id_type, cert.expired) == ("00B7010446", "adeli", True)
    assert cert.not_after == "2023-01-01T00:00:00Z"
    assert cert.days_left == -1097  # expired 1096 days and 12 hours before NOW, rounded down


def test_agent_reports_garbage_without_raising() -> None:
    cert = read_certificate(b"\x30\x03garbage", label="Certificat d'Authentification CPS", now=NOW)
    assert cert.error
    assert (cert.role, cert.id_nat, cert.sha256) == ("authentication", None, None)


def test_file_system_errors_are_pki_errors(ca: pki.TestCA, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(pki.PkiError, match="cannot create the test CA"):
        pki.load_or_create_ca(not_a_directory)
    with pytest.raises(pki.PkiError, match="cannot write the card certificates"):
        pki.issue_card_certificates(ca, DOCTOR, not_a_directory)
