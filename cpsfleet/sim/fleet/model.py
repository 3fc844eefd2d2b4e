"""The synthetic fleet's hosts, drawn from a seed.

``generate_fleet`` draws N hosts: the same seed gives the same fleet (host ids, sites, readers,
cards, holders, faults); only the certificate dates move with ``now``.
"""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cpsfleet.schemas.documents import CertificateRole
from cpsfleet.sim.fleet import FleetError

DEFAULT_SITES = ("Lyon Part-Dieu", "Villeurbanne", "Grenoble", "Saint-Étienne", "Annecy")
CURRENT_CRYPTOLIB = "5.2.2"
OUTDATED_CRYPTOLIBS = ("5.0.33", "5.0.44", "5.1.4")
CRYPTOLIB_BY_FAULT: dict[str, tuple[str | None, ...]] = {
    "no_cryptolib": (None,),
    "old_cryptolib": OUTDATED_CRYPTOLIBS,
}
# Shares of hosts with each fault, drawn as exact counts so that even 50 hosts show them.
FAULT_SHARES = {"pcscd_down": 0.03, "no_cryptolib": 0.04, "old_cryptolib": 0.05}
PCSC_DOWN_ERROR = "SCardEstablishContext: Service not available (0x8010001D)"
READER_COUNT_WEIGHTS = {0: 8, 1: 50, 2: 25, 3: 10, 4: 7}
READER_CONTENT_WEIGHTS = {"cps3": 40, "cps4": 30, "vitale2": 7, "vitale1": 3, None: 20}
READER_MODELS = (
    "Gemalto PC Twin Reader",
    "Identiv uTrust 2700 R Smart Card Reader",
    "HID Global OMNIKEY 3x21 Smart Card Reader",
    "Cherry SmartTerminal ST-1144",
)
# A CPS card lives three years; ending from 45 days ago to three years ahead puts ~4 % of
# the cards expired and ~a third expiring within the next twelve months.
CARD_LIFETIME = timedelta(days=3 * 365)
EXPIRY_SPREAD_S = (-45 * 86400, 3 * 365 * 86400)
# Shares of CPS3 cards whose PIN is blocked, on its last try, or one wrong try down; at least
# one of each once the fleet has PIN_STATES_FROM cards, so the demo's dozen hosts show them.
# (The CPS4 cards keep all their tries: the states are drawn among the CPS3 cards, so a seed
# gives the fleet it gave before the agent read a CPS4's tries.)
PIN_TRIES = 3
PIN_SHARES = {0: 0.02, 1: 0.03, 2: 0.05}
PIN_STATES_FROM = 5
SURNAMES = (
    "MARTIN BERNARD THOMAS PETIT ROBERT RICHARD DURAND DUBOIS MOREAU LAURENT SIMON MICHEL "
    "LEFEBVRE LEROY ROUX DAVID BERTRAND MOREL FOURNIER GIRARD BONNET DUPONT LAMBERT FONTAINE "
    "ROUSSEAU VINCENT MULLER FAURE ANDRE MERCIER BLANC GUERIN BOYER GARNIER CHEVALIER "
    "LEGRAND GAUTHIER PERRIN ROBIN CLEMENT MORIN MASSON DONNAT-GADY BRUN-MOULIN"
).split()
GIVEN_NAMES = (
    "ISABELLE CLAIRE MARIE NATHALIE SOPHIE CATHERINE ANNE CHRISTINE SYLVIE CAMILLE JULIE "
    "JEAN PIERRE MICHEL PHILIPPE ALAIN NICOLAS FRANCOIS LAURENT OLIVIER THOMAS ANTOINE"
).split()
T = TypeVar("T")
PROFESSION_WEIGHTS = {"Médecin": 45, "Infirmier": 45, "Pharmacien": 5, "Chirurgien-Dentiste": 5}


@dataclass(frozen=True)
class CardKind:
    """A card kind as the agent's ATR table names it (``agent/atr.py``)."""

    kind: str
    label: str
    atr: str
    is_cps: bool


CARD_KINDS = {
    "cps3": CardKind("cps3", "CPS3 (contact, IAS-ECC)", "3BAC00402A001225006480000310009000", True),
    "cps4": CardKind("cps4", "CPS4", "3B9B188001001225006480040100009044", True),
    "vitale2": CardKind("vitale2", "Carte Vitale 2", "3B751300004509EA9000", False),
    "vitale1": CardKind("vitale1", "Carte Vitale 1", "3F6525002209F99000", False),
}
CERTIFICATE_LABELS: dict[CertificateRole, str] = {
    "authentication": "Certificat d'Authentification CPS",
    "signature": "Certificat de Signature CPS",
}


@dataclass(frozen=True)
class OsProfile:
    """An operating system and where Cryptolib CPS sits on it; ``{adm}``, ``{registry}``
    and ``{version}`` in the evidence are the version as ADM file, registry and text."""

    os: str
    os_version: str
    weight: int
    pkcs11_library: str
    evidence: tuple[str, ...]


_LINUX_EVIDENCE = (
    "ADM 155.adm: {adm} INSTALLEUR_CRYPTOLIB_CPS_64B",
    "rpm CryptolibCPS {version}-1",
    "PKCS#11 library /opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so",
    "CPS Gestion /opt/santesocial/CPS/bin/cpgeslux",
)
_WINDOWS_EVIDENCE = (
    "registry HKLM\\SOFTWARE\\ASIP\\Cryptolib CPS Version={registry}",
    "PKCS#11 library C:\\Windows\\System32\\cps3_pkcs11_w64.dll",
    "CPS Gestion C:\\Program Files\\santesocial\\CPS\\cpgesw64.exe",
)
_LINUX_LIBRARY = "/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so"
_WINDOWS_LIBRARY = "C:\\Windows\\System32\\cps3_pkcs11_w64.dll"
OS_PROFILES = (
    OsProfile("Windows", "10.0.22631", 45, _WINDOWS_LIBRARY, _WINDOWS_EVIDENCE),
    OsProfile("Windows", "10.0.19045", 30, _WINDOWS_LIBRARY, _WINDOWS_EVIDENCE),
    OsProfile("Linux", "Debian GNU/Linux 12 (bookworm)", 12, _LINUX_LIBRARY, _LINUX_EVIDENCE),
    OsProfile("Linux", "Ubuntu 22.04.4 LTS", 8, _LINUX_LIBRARY, _LINUX_EVIDENCE),
    OsProfile(
        "Darwin",
        "Darwin Kernel Version 23.6.0",
        5,
        "/usr/local/lib/libcps3_pkcs11_osx.dylib",
        (
            "ADM 155.adm: {adm} INSTALLEUR_CRYPTOLIB_CPS_64B",
            "pkg receipt fr.asipsante.pkg.cryptolibCPS PkgVersion={version}",
            "PKCS#11 library /usr/local/lib/libcps3_pkcs11_osx.dylib",
            "CPS Gestion /Applications/cpgesosx.app",
        ),
    ),
)


@dataclass(frozen=True)
class Holder:
    """A health professional identified by RPPS (idNat ``8`` + the 11 RPPS digits)."""

    surname: str
    given_name: str
    profession: str
    rpps: str

    @property
    def id_nat(self) -> str:
        return f"8{self.rpps}"

    @property
    def subject(self) -> str:
        return (
            f"SN={self.surname}+GN={self.given_name}+CN={self.id_nat},title={self.profession},C=FR"
        )


@dataclass(frozen=True)
class SimCertificate:
    role: CertificateRole
    serial_number: str
    sha256: str


@dataclass(frozen=True)
class SimCard:
    """A card in a reader; only CPS cards have a serial, a holder and certificates."""

    kind: CardKind
    serial: str | None = None
    holder: Holder | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    certificates: tuple[SimCertificate, ...] = ()
    pin_tries_left: int = PIN_TRIES


@dataclass(frozen=True)
class SimReader:
    name: str
    card: SimCard | None


@dataclass(frozen=True)
class SimHost:
    id: str
    hostname: str
    site: str
    system: OsProfile
    readers: tuple[SimReader, ...]
    cryptolib: str | None  # its version; None when it is not installed
    pcsc_error: str | None = None  # set when pcscd is down (then no reader is seen)


class _Draws:
    """The seeded random draws, with the serials and RPPS numbers kept unique in the fleet."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: set[str] = set()

    def weighted(self, weights: Mapping[T, int]) -> T:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def unique_digits(self, prefix: str, digits: int) -> str:
        while (drawn := f"{prefix}{self.rng.randrange(10**digits):0{digits}d}") in self.used:
            pass
        self.used.add(drawn)
        return drawn


def generate_fleet(
    count: int, seed: int = 1, sites: Sequence[str] = DEFAULT_SITES, now: datetime | None = None
) -> list[SimHost]:
    """``count`` hosts ``sim-0001``… spread over ``sites``, with certificates dated from ``now``."""
    if count < 1:
        raise FleetError(f"the fleet needs at least 1 agent, not {count}")
    if not sites:
        raise FleetError("the fleet needs at least one site")
    draws = _Draws(seed)
    faults = _assign_faults(draws.rng, count)
    start = (now or datetime.now(UTC)).replace(microsecond=0)
    per_site: Counter[str] = Counter()
    hosts = [
        _host(draws, index, faults.get(index), sites, per_site, start) for index in range(count)
    ]
    return _with_pin_states(hosts, random.Random(f"{seed} PIN"))


def _with_pin_states(hosts: list[SimHost], rng: random.Random) -> list[SimHost]:
    """Some CPS3 PINs blocked or low on tries; drawn apart from the rest, which stays as the
    same seed gave it before PIN states existed."""
    slots = [
        (h, r)
        for h, host in enumerate(hosts)
        for r, reader in enumerate(host.readers)
        if reader.card is not None and reader.card.kind.kind == "cps3"
    ]
    order = rng.sample(slots, len(slots))
    tries: dict[tuple[int, int], int] = {}
    for left, share in PIN_SHARES.items():
        wanted = max(round(len(slots) * share), 1 if len(slots) >= PIN_STATES_FROM else 0)
        for slot in order[len(tries) : len(tries) + wanted]:
            tries[slot] = left
    return [
        replace(
            host,
            readers=tuple(
                _pin_tries(reader, tries.get((h, r))) for r, reader in enumerate(host.readers)
            ),
        )
        for h, host in enumerate(hosts)
    ]


def _pin_tries(reader: SimReader, left: int | None) -> SimReader:
    if left is None or reader.card is None:
        return reader
    return replace(reader, card=replace(reader.card, pin_tries_left=left))


def _assign_faults(rng: random.Random, count: int) -> dict[int, str]:
    order = rng.sample(range(count), count)
    faults: dict[int, str] = {}
    for fault, share in FAULT_SHARES.items():
        for index in order[len(faults) : len(faults) + round(count * share)]:
            faults[index] = fault
    return faults


def _host(
    draws: _Draws,
    index: int,
    fault: str | None,
    sites: Sequence[str],
    per_site: Counter[str],
    now: datetime,
) -> SimHost:
    site = draws.rng.choice(sites)
    per_site[site] += 1
    system = draws.rng.choices(OS_PROFILES, weights=[p.weight for p in OS_PROFILES])[0]
    readers = tuple(
        _reader(draws, slot, now) for slot in range(draws.weighted(READER_COUNT_WEIGHTS))
    )
    cryptolib = draws.rng.choice(CRYPTOLIB_BY_FAULT.get(fault or "", (CURRENT_CRYPTOLIB,)))
    down = fault == "pcscd_down"
    return SimHost(
        id=f"sim-{index + 1:04d}",
        hostname=f"ws-{_slug(site)}-{per_site[site]:02d}",
        site=site,
        system=system,
        readers=() if down else readers,
        cryptolib=cryptolib,
        pcsc_error=PCSC_DOWN_ERROR if down else None,
    )


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_text.lower()).split())


def _reader(draws: _Draws, slot: int, now: datetime) -> SimReader:
    model = draws.rng.choice(READER_MODELS)
    content = draws.weighted(READER_CONTENT_WEIGHTS)
    card = None if content is None else _card(draws, CARD_KINDS[content], now)
    return SimReader(f"{model} {slot:02d} 00", card)


def _card(draws: _Draws, kind: CardKind, now: datetime) -> SimCard:
    if not kind.is_cps:
        return SimCard(kind)
    rng = draws.rng
    not_after = now + timedelta(seconds=rng.randrange(*EXPIRY_SPREAD_S))
    certificates = tuple(
        SimCertificate(role, f"{rng.getrandbits(156):x}", rng.randbytes(32).hex())
        for role in CERTIFICATE_LABELS
    )
    return SimCard(
        kind,
        draws.unique_digits("", 8),
        _holder(draws),
        not_after - CARD_LIFETIME,
        not_after,
        certificates,
    )


def _holder(draws: _Draws) -> Holder:
    return Holder(
        draws.rng.choice(SURNAMES),
        draws.rng.choice(GIVEN_NAMES),
        draws.weighted(PROFESSION_WEIGHTS),
        draws.unique_digits("10", 9),
    )
