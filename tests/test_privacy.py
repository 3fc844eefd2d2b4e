"""Pseudonymisation: agents publish no names and a keyed hash of the idNat; the controller,
holding the key, still matches cards to its roster."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cpsfleet.agent.privacy import pseudonymise
from cpsfleet.controller.db.store import Store
from cpsfleet.schemas import validate
from cpsfleet.schemas.documents import (
    Card,
    Certificate,
    Cryptolib,
    Host,
    Pcsc,
    Reader,
    Status,
)
from cpsfleet.schemas.privacy import PseudonymKeyError, load_key, pseudonym
from tests.test_readiness_cli import imported, lyon, run

KEY = b"0123456789abcdef0123456789abcdef"


def test_pseudonyms_are_stable_keyed_and_not_the_id() -> None:
    assert pseudonym(KEY, "810002813839") == pseudonym(KEY, "810002813839")
    assert pseudonym(KEY, "810002813839") != pseudonym(KEY + b"x", "810002813839")
    assert pseudonym(KEY, "810002813839").startswith("p:")
    assert "810002813839" not in pseudonym(KEY, "810002813839")


def test_short_or_missing_key_files_are_explained(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("secret")
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        load_key(short)
    with pytest.raises(PseudonymKeyError, match="No such file"):
        load_key(tmp_path / "none.key")


def status_with_holder() -> Status:
    cert = Certificate(
        role="authentication",
        label="Certificat d'Authentification CPS",
        subject="GN=ISABELLE+SN=DONNAT-GADY+CN=810002813839,title=Médecin,C=FR",
        id_nat="810002813839",
        id_type="rpps",
        surname="DONNAT-GADY",
        given_name="ISABELLE",
        profession="Médecin",
    )
    card = Card("3BAC", "cps3", "CPS3", True, "99213845", [cert])
    host = Host("ws-1", "ws", "Linux", "12", "0.1.0")
    return Status(
        host,
        "2026-11-27T10:00:00Z",
        1,
        Pcsc(True),
        [Reader("R", "card_present", card)],
        Cryptolib(False),
    )


def test_the_agent_publishes_no_name_and_a_pseudonymous_id() -> None:
    document = validate(pseudonymise(status_with_holder(), KEY).document())
    text = json.dumps(document, ensure_ascii=False)
    for personal in ("810002813839", "DONNAT-GADY", "ISABELLE"):
        assert personal not in text
    cert = document["readers"][0]["card"]["certificates"][0]
    assert cert["id_nat"] == pseudonym(KEY, "810002813839")
    assert (cert["profession"], cert["id_type"]) == ("Médecin", "rpps")


def test_the_controller_matches_pseudonymous_cards_to_its_roster_with_the_key(
    tmp_path: Path,
    database: str,
) -> None:
    document = lyon()
    for reader in document["readers"]:
        for cert in (reader["card"] or {}).get("certificates", []):
            cert |= {
                "id_nat": pseudonym(KEY, cert["id_nat"]),
                "surname": None,
                "given_name": None,
                "subject": None,
            }
    with Store(database) as store:
        store.record_status(validate(document), datetime.now(UTC))
    imported(database)
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(KEY)
    config = tmp_path / "controller.toml"
    config.write_text(f'database = "{database}"\npseudonym_key_file = "{key_file}"\n')

    def doctor(*options: str) -> tuple[str, str | None]:
        result = run("readiness", "--json", *options)
        assert result.exit_code == 0, result.output
        row = {r["surname"]: r for r in json.loads(result.stdout)}["DONNAT-GADY"]
        return row["state"], row["card_serial"]

    assert doctor("--config", str(config)) == ("ready", "99213845")
    # Without the key her card is not hers; her e-CPS (per the roster) still stands in.
    assert doctor("--database", database) == ("ready_ecps", None)
