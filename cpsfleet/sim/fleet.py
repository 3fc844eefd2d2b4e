"""A synthetic fleet: many workstations, their readers, cards and Cryptolib, played on a broker.

``generate_fleet`` draws N hosts from a seed: the same seed gives the same fleet (host ids,
sites, readers, cards, holders, faults); only the certificate dates move with ``now``. The
documents (``status_document``, ``presence_document``, ``event_document``) are built with the
agent's own types (``cpsfleet.schemas.documents``), valid against ``schemas/``.

``FleetConnection`` is one MQTT 5 connection that plays every agent: it publishes to every
host's topics, which a broker whose ACL confines each agent to its own subtree (the fleet's
mutual TLS set-up) refuses. The fleet generator is for plain test brokers.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any, Protocol, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cpsfleet.schemas.broker import BrokerUrl
from cpsfleet.schemas.documents import (
    Card,
    Certificate,
    CertificateRole,
    Cryptolib,
    Event,
    EventCard,
    Host,
    Pcsc,
    Pin,
    Presence,
    PresenceReason,
    PresenceState,
    Reader,
    Status,
)
from cpsfleet.schemas.times import format_utc, format_utc_micro
from cpsfleet.schemas.topics import topic

DEFAULT_SITES = ("Lyon Part-Dieu", "Villeurbanne", "Grenoble", "Saint-Étienne", "Annecy")
AGENT_VERSION = version("cpsfleet")
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
# (The agent reads no CPS4's PIN: ``CPS4_PIN_NOT_READ``.)
PIN_TRIES = 3
PIN_SHARES = {0: 0.02, 1: 0.03, 2: 0.05}
PIN_STATES_FROM = 5
CPS4_PIN_NOT_READ = (
    "not read: a CPS4 tells its PIN tries only in answer to VERIFY, which the agent never sends"
)
CARD_SWAP_CHANCE = 0.05  # per periodic report: a card taken out of its reader, or put back
STALL_S = 30.0  # seconds without an acknowledgement before giving up
MAX_INTERVAL_S = 30 * 86400  # the status schema's bound on scan_interval_s
QOS = 1
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


class FleetError(Exception):
    """The fleet cannot be generated or played; the message says what to change."""


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


def host_status(
    host: SimHost,
    now: datetime,
    interval_s: int | None = 900,
    removed: frozenset[str] = frozenset(),
) -> Status:
    """The host's inventory at ``now``; readers named in ``removed`` have had their card taken."""
    readers = tuple(_reader_status(r, now, r.name in removed) for r in host.readers)
    system = host.system
    return Status(
        host=Host(host.id, host.hostname, system.os, system.os_version, AGENT_VERSION, host.site),
        scanned_at=format_utc(now),
        duration_ms=9 + sum(30 if r.card else 4 for r in readers),
        pcsc=Pcsc(host.pcsc_error is None, host.pcsc_error),
        readers=readers,
        cryptolib=_cryptolib(host),
        scan_interval_s=interval_s,
    )


def status_document(
    host: SimHost,
    seq: int,
    now: datetime,
    interval_s: int | None = 900,
    removed: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``host_status`` as the agent publishes it, numbered ``seq`` as its outbox does."""
    return {**host_status(host, now, interval_s, removed).document(), "seq": seq}


def _reader_status(reader: SimReader, now: datetime, removed: bool) -> Reader:
    card = None if removed or reader.card is None else _card_status(reader.card, now)
    return Reader(reader.name, "card_present" if card else "empty", card)


def _card_status(card: SimCard, now: datetime) -> Card:
    kind = card.kind
    certificates = tuple(_certificate(card, c, now) for c in card.certificates)
    return Card(
        kind.atr, kind.kind, kind.label, kind.is_cps, card.serial, certificates, (), _pin(card)
    )


def _pin(card: SimCard) -> Pin | None:
    """What the agent reports: the tries of a CPS3, why not of a CPS4, nothing otherwise."""
    if card.kind.kind == "cps4":
        return Pin(error=CPS4_PIN_NOT_READ)
    if not card.kind.is_cps:
        return None
    return Pin(card.pin_tries_left, PIN_TRIES)


def _certificate(card: SimCard, cert: SimCertificate, now: datetime) -> Certificate:
    assert card.holder and card.not_before and card.not_after, "a CPS card has all three"
    holder = card.holder
    return Certificate(
        role=cert.role,
        label=CERTIFICATE_LABELS[cert.role],
        subject=holder.subject,
        id_nat=holder.id_nat,
        id_type="rpps",
        surname=holder.surname,
        given_name=holder.given_name,
        profession=holder.profession,
        issuer_cn="AC IGC-SANTE FORT PERSONNES",
        serial_number=cert.serial_number,
        not_before=format_utc(card.not_before),
        not_after=format_utc(card.not_after),
        days_left=(card.not_after - now).days,
        expired=now > card.not_after,
        sha256=cert.sha256,
    )


def _cryptolib(host: SimHost) -> Cryptolib:
    system, found = host.system, host.cryptolib
    parts = [int(part) for part in (found or "0").split(".")]
    spelt = {
        "version": found,
        "adm": "".join(f"{part:02d}" for part in parts),
        "registry": ".".join(f"{part:02d}" for part in parts),
    }
    return Cryptolib(
        installed=found is not None,
        version=found,
        pkcs11_library=system.pkcs11_library,
        pkcs11_library_present=found is not None,
        cps_gestion=found is not None,
        evidence=tuple(line.format(**spelt) for line in system.evidence) if found else (),
    )


def presence_document(
    host: SimHost, state: PresenceState, now: datetime, reason: PresenceReason | None = None
) -> dict[str, Any]:
    """``online`` (reason ``connected``) or ``offline`` (reason ``shutdown`` unless told)."""
    reason = reason or ("connected" if state == "online" else "shutdown")
    return Presence(host.id, state, format_utc(now), reason, AGENT_VERSION).document()


def card_event(host: SimHost, reader: SimReader, inserted: bool, now: datetime) -> Event:
    """``card_inserted`` or ``card_removed`` for the card that belongs in ``reader``."""
    assert reader.card is not None, "only a reader with a card has card events"
    kind = reader.card.kind
    change = "card_inserted" if inserted else "card_removed"
    card = EventCard(kind.atr, kind.kind, kind.is_cps)
    return Event(host.id, format_utc_micro(now), change, reader.name, card)


def event_document(
    host: SimHost, reader: SimReader, inserted: bool, seq: int, now: datetime
) -> dict[str, Any]:
    """``card_event`` as the agent publishes it, numbered ``seq`` as its outbox does."""
    return {**card_event(host, reader, inserted, now).document(), "seq": seq}


class Sink(Protocol):
    """Where the played agents' documents go: the broker, or a list in tests."""

    def publish(self, topic: str, document: dict[str, Any], retain: bool) -> None: ...


@dataclass
class PlayedHost:
    """One agent's running state: its last ``seq`` and the readers whose card is out."""

    host: SimHost
    seq: int
    removed: set[str] = field(default_factory=set)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class FleetPlayer:
    """Plays every host's agent into a sink: birth, periodic reports with the odd card
    taken out or put back (an event, then a fresh status), goodbye.

    ``seq`` starts after ``seq_start`` (default: the time in milliseconds), so a controller
    that stores each (host, seq) once takes a rerun's documents as new."""

    def __init__(
        self,
        hosts: Sequence[SimHost],
        sink: Sink,
        interval_s: int,
        seed: int = 1,
        seq_start: int | None = None,
    ) -> None:
        start = int(time.time() * 1000) if seq_start is None else seq_start
        self.played = [PlayedHost(host, start) for host in hosts]
        self.sink, self.interval_s = sink, interval_s
        self.rng = random.Random(seed)

    def announce(self) -> None:
        """Every host comes online and publishes its status."""
        for played in self.played:
            self._presence(played.host, "online")
            self._status(played)

    def report(self, index: int) -> None:
        played = self.played[index]
        with_card = [r for r in played.host.readers if r.card is not None]
        if with_card and self.rng.random() < CARD_SWAP_CHANCE:
            self._swap(played, self.rng.choice(with_card))
        self._status(played)

    def goodbye(self) -> None:
        for played in self.played:
            self._presence(played.host, "offline")

    def _swap(self, played: PlayedHost, reader: SimReader) -> None:
        inserted = reader.name in played.removed
        (played.removed.discard if inserted else played.removed.add)(reader.name)
        event = event_document(played.host, reader, inserted, played.next_seq(), _now())
        self.sink.publish(topic(played.host.id, "events"), event, False)

    def _status(self, played: PlayedHost) -> None:
        status = status_document(
            played.host, played.next_seq(), _now(), self.interval_s, frozenset(played.removed)
        )
        self.sink.publish(topic(played.host.id, "status"), status, True)

    def _presence(self, host: SimHost, state: PresenceState) -> None:
        self.sink.publish(topic(host.id, "presence"), presence_document(host, state, _now()), True)

    def schedule(self, start: float) -> list[tuple[float, int]]:
        """Each host's next report after ``start``, at its own jittered phase of the interval,
        so the reports spread evenly over the interval instead of coming all at once."""
        slot = self.interval_s / len(self.played)
        return [
            (start + (index + self.rng.random()) * slot, index) for index in range(len(self.played))
        ]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Counts:
    """What the connection published and what the broker answered (PUBACK) so far."""

    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    connected: bool = False
    refusal: str | None = None  # the broker's reason for the first refused message or connection

    @property
    def answered(self) -> int:
        return self.acknowledged + self.refused


Progress = Callable[[Counts], None]


class FleetConnection:
    """One MQTT 5 connection publishing, with QoS 1, for every played agent."""

    def __init__(self, broker: BrokerUrl) -> None:
        if broker.tls:
            raise FleetError(
                f"{broker} is a TLS broker: the fleet generator plays every agent over one "
                "connection, which the fleet's per-host ACL refuses; use a plain mqtt:// broker"
            )
        self.broker = broker
        self.lock = threading.Lock()
        self.counts = Counts()
        self.answered = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cpsfleet-sim-fleet-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def connect(self, timeout: float = 10) -> None:
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ValueError) as error:
            raise FleetError(f"cannot reach the broker at {self.broker}: {error}") from None
        self.client.loop_start()
        if not self.answered.wait(timeout) or not self.counts.connected:
            self.close()
            reason = self.counts.refusal or f"no answer within {timeout:g} s"
            raise FleetError(f"the broker at {self.broker} refused the connection: {reason}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, document: dict[str, Any], retain: bool) -> None:
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        self._update(lambda c: replace(c, published=c.published + 1))
        self.client.publish(topic, payload, qos=QOS, retain=retain)

    def wait_answered(self, progress: Progress, stop: threading.Event | None = None) -> Counts:
        """Wait until the broker answered every message, calling ``progress`` each second;
        FleetError when ``stop`` is set or the broker answers nothing for ``STALL_S``."""
        stop = stop or threading.Event()
        tick = moved = time.monotonic()
        answered = self.counts.answered
        while (counts := self.counts).answered < counts.published:
            if stop.wait(0.05):
                raise FleetError(f"interrupted: {_answered(counts)}")
            if counts.answered > answered:
                answered, moved = counts.answered, time.monotonic()
            elif time.monotonic() - moved > STALL_S:
                raise FleetError(f"the broker stopped answering: {_answered(counts)}")
            if time.monotonic() - tick >= 1:
                tick = time.monotonic()
                progress(counts)
        return counts

    def _update(self, change: Callable[[Counts], Counts]) -> None:
        with self.lock:
            self.counts = change(self.counts)

    def _on_connect(self, client: mqtt.Client, data: Any, flags: Any, code: Any, p: Any) -> None:
        failed = code.is_failure
        self._update(
            lambda c: replace(c, connected=not failed, refusal=str(code) if failed else c.refusal)
        )
        self.answered.set()

    def _on_disconnect(self, client: mqtt.Client, data: Any, flags: Any, code: Any, p: Any) -> None:
        self._update(lambda c: replace(c, connected=False))

    def _on_publish(self, client: mqtt.Client, data: Any, mid: int, code: Any, p: Any) -> None:
        if code.is_failure:
            self._update(
                lambda c: replace(c, refused=c.refused + 1, refusal=c.refusal or str(code))
            )
        else:
            self._update(lambda c: replace(c, acknowledged=c.acknowledged + 1))


def _answered(counts: Counts) -> str:
    return f"the broker acknowledged {counts.acknowledged} of {counts.published} messages"


@dataclass(frozen=True)
class FleetRun:
    """What a run did: the fleet's size, the messages, how long it took."""

    hosts: int
    sites: int
    counts: Counts
    seconds: float


def play_fleet(
    broker: BrokerUrl,
    hosts: Sequence[SimHost],
    interval_s: int,
    stop: threading.Event,
    progress: Progress,
    once: bool = False,
    seed: int = 1,
) -> FleetRun:
    """Bring every host online with its status; then, unless ``once``, report every
    ``interval_s`` until ``stop`` and say offline. Returns once the broker acknowledged all."""
    if not 1 <= interval_s <= MAX_INTERVAL_S:
        raise FleetError(f"the interval must be 1 to {MAX_INTERVAL_S} seconds, not {interval_s}")
    started = time.monotonic()
    connection = FleetConnection(broker)
    connection.connect()
    try:
        player = FleetPlayer(hosts, connection, interval_s, seed)
        player.announce()
        if not once:
            _report_until(player, connection, stop, progress)
            player.goodbye()
        counts = connection.wait_answered(progress, stop if once else None)
    finally:
        connection.close()
    if counts.refused:
        raise FleetError(
            f"the broker refused {counts.refused} of {counts.published} messages "
            f"({counts.refusal}): its ACL must let one client write every host's topics"
        )
    sites = len({host.site for host in hosts})
    return FleetRun(len(hosts), sites, counts, time.monotonic() - started)


def _report_until(
    player: FleetPlayer, connection: FleetConnection, stop: threading.Event, progress: Progress
) -> None:
    due = player.schedule(time.monotonic())
    heapq.heapify(due)
    tick = time.monotonic() + 1
    while not stop.is_set():
        while due[0][0] <= time.monotonic() and not stop.is_set():
            at, index = heapq.heappop(due)
            player.report(index)
            heapq.heappush(due, (at + player.interval_s, index))
        if time.monotonic() >= tick:
            tick = time.monotonic() + 1
            progress(connection.counts)
        stop.wait(max(0.0, min(due[0][0], tick) - time.monotonic()))
