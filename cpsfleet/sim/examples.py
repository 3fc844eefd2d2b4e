"""A ready-made set of simulated cards for the demo and the tests.

``write_examples`` issues test certificates for a few professionals and writes
one profile per card, so a fleet of readers can be filled without writing TOML.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cpsfleet.sim.pki import Holder, TestCA, issue_card_certificates, load_or_create_ca


@dataclass(frozen=True)
class ExampleCard:
    name: str
    kind: str
    serial: str | None
    holder: Holder | None


def _holder(id_nat: str, surname: str, given: str, profession: str, days: int) -> Holder:
    """Certificates that end in ``days`` days (an hour later, so "10 days" still reads 10)."""
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    return Holder(
        id_nat,
        surname,
        given,
        profession,
        now - timedelta(days=3 * 365 - days),
        now + timedelta(days=days),
    )


def example_cards() -> list[ExampleCard]:
    """A doctor's valid CPS3, a nurse's CPS4 expiring in 10 days, an expired CPS3, a Vitale card."""
    return [
        ExampleCard(
            "doctor-cps3",
            "cps3",
            "99213845",
            _holder("810002813839", "DONNAT-GADY", "ISABELLE", "Médecin", 400),
        ),
        ExampleCard(
            "nurse-cps4",
            "cps4",
            "10452278",
            _holder("810100452278", "MARTIN", "CLAIRE", "Infirmier", 10),
        ),
        ExampleCard(
            "expired-cps3",
            "cps3",
            "20991234",
            _holder("00B7010446", "MASSEUR1044", "HONORE", "Masseur-Kinésithérapeute", -10),
        ),
        ExampleCard("vitale", "vitale", None, None),
    ]


def write_examples(directory: Path) -> list[Path]:
    """Certificates and one profile per example card in ``directory``; returns the profiles."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = load_or_create_ca(directory / "ca")
    return [_write_card(directory, card, ca) for card in example_cards()]


def _write_card(directory: Path, card: ExampleCard, ca: TestCA) -> Path:
    lines = [f'kind = "{card.kind}"']
    if card.serial:
        lines.append(f'serial = "{card.serial}"')
    if card.holder:
        issued = issue_card_certificates(ca, card.holder, directory / card.name)
        lines += [
            f'auth_cert = "{issued.authentication.relative_to(directory)}"',
            f'sign_cert = "{issued.signature.relative_to(directory)}"',
        ]
    profile = directory / f"{card.name}.toml"
    profile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return profile
