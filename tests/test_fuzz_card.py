"""A hostile card cannot crash or hold up the agent: bounded commands, then a problem entry.

The hostile cards here are in-memory stand-ins for a PC/SC connection: a file
system whose files, FCPs and answers hypothesis bends (wrong lengths, truncated
or garbage TLV, PKCS#15 paths that point back, 61xx and 6Cxx loops, random
status words), and plain noise. The targeted tests play the same faults on the
simulated card of ``cpsfleet.sim.cards``.

Examples per property: 500 in CI (this file takes about 7 s). For a deeper
search: ``CPSFLEET_FUZZ_EXAMPLES=20000 pytest --timeout=0 tests/test_fuzz_card.py``.
No example database: a failure prints its ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpsfleet.agent.apdu import CardError, CommandBudget, exchange
from cpsfleet.agent.cps import (
    CPS3,
    CPS4,
    MAX_CERTIFICATES,
    MAX_COMMANDS,
    MAX_FILE_SIZE,
    CardContents,
    CpsReader,
    Dialect,
)
from cpsfleet.sim import der, pkcs15
from cpsfleet.sim.cards import AID_CPS_CONTACT, LABEL_AUTH, LABEL_SIGN, build_card, ef_sn_icc
from cpsfleet.sim.iso import DF, EF, IsoCard
from cpsfleet.sim.profile import Profile

FUZZ = settings(
    max_examples=int(os.environ.get("CPSFLEET_FUZZ_EXAMPLES", "500")),
    deadline=timedelta(seconds=1),
    database=None,
    print_blob=True,
)

MF = bytes.fromhex("3F00")
APP = bytes.fromhex("3F000001")
SN, DIR = MF + bytes.fromhex("D003"), MF + bytes.fromhex("2F00")
ODF, CDF = APP + bytes.fromhex("5031"), APP + bytes.fromhex("5036")
AUTH, SIGN = APP + bytes.fromhex("C001"), APP + bytes.fromhex("C002")
CERT_SIZE = 1536  # a real CPS certificate is about 1.5 KB
SW_OK = 0x9000
Answer = tuple[bytes, int]


def genuine_files() -> dict[bytes, bytes]:
    """A CPS3 laid out as ``cpsfleet.sim.cards`` lays it out, certificates of 1.5 KB of filler."""
    return {
        SN: ef_sn_icc("99213845"),
        DIR: pkcs15.dir_record(AID_CPS_CONTACT, "CPS", APP),
        ODF: pkcs15.odf(CDF),
        CDF: pkcs15.cdf_entry(LABEL_AUTH, 1, AUTH) + pkcs15.cdf_entry(LABEL_SIGN, 2, SIGN),
        AUTH: bytes([0x30]) + bytes(range(256)) * 6,
        SIGN: bytes([0x30]) + bytes(range(255, -1, -1)) * 6,
    }


@dataclass(frozen=True)
class Quirk:
    """How the card bends one honest answer (to the instruction ``on`` only, if given)."""

    kind: str
    data: bytes = b""
    sw: int = SW_OK
    on: int | None = None

    def bend(self, ins: int, data: bytes, sw: int) -> Answer:
        if self.on not in (None, ins):
            return data, sw
        bent: dict[str, Answer] = {
            "honest": (data, sw),
            "short": (data[: len(data) // 2], sw),
            "trickle": (data[:1], sw),
            "empty": (b"", SW_OK),
            "long": (data + self.data, sw),
            "chain": (self.data[:8], 0x6100 | self.sw & 0xFF),
            "wrong_le": (b"", 0x6C00 | self.sw & 0xFF),
            "status": (self.data, self.sw),
        }
        return bent[self.kind]


HONEST = Quirk("honest")


@dataclass
class HostileCard:
    """A file system answering SELECT, READ BINARY and GET RESPONSE, bent by ``quirks``.

    The n-th APDU's answer is bent by ``quirks[n % len(quirks)]``; a path the
    card does not hold is found with ``anything`` as content, if given.
    """

    files: dict[bytes, bytes]
    dialect: Dialect = CPS3
    quirks: list[Quirk] = field(default_factory=lambda: [HONEST])
    fcps: dict[bytes, bytes] = field(default_factory=dict)
    anything: bytes | None = None
    sent: list[bytes] = field(default_factory=list)
    selected: bytes = b""
    pending: bytes = b""

    def transmit(self, apdu: bytes) -> Answer:
        self.sent.append(apdu)
        honest = self.honest(apdu)
        data, sw = self.quirks[(len(self.sent) - 1) % len(self.quirks)].bend(apdu[1], *honest)
        if sw >> 8 == 0x61:
            self.pending = honest[0]  # what GET RESPONSE gives next
        return data, sw

    def honest(self, apdu: bytes) -> Answer:
        ins, le = apdu[1], apdu[4] if len(apdu) == 5 else None
        if ins == 0xA4:
            return self.select(apdu[5:] if apdu[2] != 0x04 else None)
        if ins == 0xB0:
            offset = apdu[2] << 8 | apdu[3]
            return self.content()[offset : offset + (le or 256)], SW_OK
        if ins == 0xC0:
            data, self.pending = self.pending[: le or 256], self.pending[le or 256 :]
            return data, SW_OK
        return b"", 0x6D00

    def select(self, wire_path: bytes | None) -> Answer:
        if wire_path is None:
            return b"", SW_OK  # the CPS4 applet
        path = wire_path if self.dialect.path_keeps_mf else MF + wire_path
        if path not in self.files and self.anything is None:
            return b"", 0x6A82
        self.selected = path
        size = der.tlv(0x80, len(self.content()).to_bytes(2, "big"))
        return self.fcps.get(path, der.tlv(0x62, size, der.tlv(0x82, b"\x01"))), SW_OK

    def content(self) -> bytes:
        return self.files.get(self.selected, self.anything or b"")


def read(card: HostileCard | NoiseCard | CardTransport, dialect: Dialect = CPS3) -> CardContents:
    """Read the card and check what must hold whatever it answered."""
    contents = CpsReader(card, dialect).read()
    assert isinstance(contents, CardContents)
    assert len(card.sent) <= MAX_COMMANDS
    assert all(problem.where and problem.message for problem in contents.problems)
    assert len(contents.certificates) <= MAX_CERTIFICATES
    assert all(len(data) <= MAX_FILE_SIZE for _, data in contents.certificates)
    return contents


# --- strategies -------------------------------------------------------------------------------

STATUS_WORDS = st.one_of(
    st.sampled_from([SW_OK, 0x6A82, 0x6282, 0x6B00, 0x6700, 0x6986, 0x6D00, 0x6F00]),
    st.integers(0x6100, 0x61FF),
    st.integers(0x6C00, 0x6CFF),
    st.integers(0, 0xFFFF),
)
KINDS = ["honest", "short", "trickle", "empty", "long", "chain", "wrong_le", "status"]
INSTRUCTIONS = st.sampled_from([None, 0xA4, 0xB0, 0xC0])
QUIRKS = st.builds(
    Quirk, st.sampled_from(KINDS), st.binary(max_size=260), STATUS_WORDS, INSTRUCTIONS
)
KNOWN_PATHS = [SN, DIR, ODF, CDF, AUTH, SIGN, APP, MF, ODF[-2:], CDF[-2:], AUTH[-2:]]
PATHS = st.one_of(
    st.sampled_from(KNOWN_PATHS),
    st.sampled_from(KNOWN_PATHS),  # twice: paths to files the card holds make the loops
    st.binary(max_size=20),
    st.binary(min_size=250, max_size=300),
)
LABELS = st.text(max_size=40) | st.text(min_size=200, max_size=400)


def entries(entry: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A few entries, or one entry repeated around the limit of 16 a reading takes."""
    repeated = st.builds(lambda one, count: one * count, entry, st.integers(14, 40))
    return st.lists(entry, max_size=6).map(b"".join) | repeated


def odfs() -> st.SearchStrategy[bytes]:
    tags = st.sampled_from([0xA4, 0xA5, 0xA6, 0xA0, 0xA8])
    return entries(st.builds(lambda tag, path: der.tlv(tag, pkcs15.path_object(path)), tags, PATHS))


def cdfs() -> st.SearchStrategy[bytes]:
    return entries(st.builds(pkcs15.cdf_entry, LABELS, st.integers(0, 255), PATHS))


def ef_dirs() -> st.SearchStrategy[bytes]:
    record = st.builds(pkcs15.dir_record, st.just(AID_CPS_CONTACT), st.just("CPS"), PATHS)
    return st.lists(record, min_size=1, max_size=3).map(b"".join)


def sn_iccs() -> st.SearchStrategy[bytes]:
    return st.builds(lambda pan: der.tlv(0x5A, pan), st.binary(max_size=20))


def bent(genuine: bytes, shaped: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A hostile structure of the file's kind, or the genuine file cut or with a byte changed."""
    return st.one_of(
        shaped,
        st.integers(0, len(genuine)).map(lambda end: genuine[:end]),
        st.tuples(st.integers(0, len(genuine) - 1), st.integers(0, 255)).map(
            lambda change: genuine[: change[0]] + bytes([change[1]]) + genuine[change[0] + 1 :]
        ),
        st.binary(max_size=600),
    )


def fcps() -> st.SearchStrategy[bytes]:
    size = st.integers(0, 0xFFFFFF).map(lambda n: n.to_bytes(max(1, (n.bit_length() + 7) // 8)))
    template = st.builds(
        lambda outer, tag, value: der.tlv(outer, der.tlv(tag, value)),
        st.sampled_from([0x62, 0x6F, 0x64]),
        st.sampled_from([0x80, 0x81, 0x82]),
        size,
    )
    return template | st.binary(max_size=40)


SHAPES = {SN: sn_iccs(), DIR: ef_dirs(), ODF: odfs(), CDF: cdfs()}


@st.composite
def hostile_cards(draw: st.DrawFn) -> HostileCard:
    """A CPS3 or CPS4 with up to three files bent, and bursts of bent answers among honest ones."""
    files = genuine_files()
    for path in draw(st.sets(st.sampled_from(sorted(files)), max_size=3)):
        files[path] = draw(bent(files[path], SHAPES.get(path, st.binary(max_size=600))))
    quirks = draw(st.lists(QUIRKS, max_size=8))
    return HostileCard(
        files,
        draw(st.sampled_from([CPS3, CPS4])),
        quirks=quirks + [HONEST] * draw(st.integers(0 if quirks else 1, 40)),
        fcps=draw(st.dictionaries(st.sampled_from(sorted(files)), fcps(), max_size=2)),
        anything=draw(st.none() | st.binary(max_size=300)),
    )


@dataclass
class NoiseCard:
    """Answers each APDU with the next of ``answers``, over and over, whatever was asked."""

    answers: list[Answer]
    sent: list[bytes] = field(default_factory=list)

    def transmit(self, apdu: bytes) -> Answer:
        self.sent.append(apdu)
        return self.answers[(len(self.sent) - 1) % len(self.answers)]


# --- properties -------------------------------------------------------------------------------


def test_the_stand_in_card_reads_like_a_cps3_when_nothing_is_bent() -> None:
    card = HostileCard(genuine_files())
    contents = read(card)
    assert contents.serial == "99213845" and contents.problems == []
    assert contents.certificates == [
        (LABEL_AUTH, genuine_files()[AUTH]),
        (LABEL_SIGN, genuine_files()[SIGN]),
    ]


@FUZZ
@given(hostile_cards())
def test_a_hostile_card_costs_at_most_the_budget_and_never_raises(card: HostileCard) -> None:
    read(card, card.dialect)


@FUZZ
@given(
    st.lists(st.tuples(st.binary(max_size=260), STATUS_WORDS), min_size=1, max_size=30),
    st.sampled_from([CPS3, CPS4]),
)
def test_a_card_answering_noise_costs_at_most_the_budget_and_never_raises(
    answers: list[Answer], dialect: Dialect
) -> None:
    read(NoiseCard(answers), dialect)


# --- targeted: the simulated card with one fault ----------------------------------------------


class CardTransport:
    """Forwards every APDU to a simulated card, through ``bend`` if given."""

    def __init__(self, card: IsoCard, bend: Callable[[bytes, Answer], Answer] | None = None):
        self.card = card
        self.bend = bend
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> Answer:
        self.sent.append(apdu)
        response = self.card.process(apdu)
        answer = response[:-2], int.from_bytes(response[-2:], "big")
        return self.bend(apdu, answer) if self.bend else answer


def sim_cps3(certificate_size: int = CERT_SIZE) -> IsoCard:
    auth, sign = (bytes([0x30, n]) * (certificate_size // 2) for n in (1, 2))
    card = build_card(Profile("cps3", serial="99213845", auth_cert=auth, sign_cert=sign))
    assert isinstance(card, IsoCard)
    return card


def replace_file(card: IsoCard, path: bytes, content: bytes) -> None:
    node: DF | EF | None = card.mf
    for offset in range(2, len(path), 2):
        assert isinstance(node, DF)
        node = node.child(int.from_bytes(path[offset : offset + 2], "big"))
    assert isinstance(node, EF)
    node.data = content


def test_a_cps3_with_two_certificates_of_1_5_kb_takes_35_commands() -> None:
    """The figure behind MAX_COMMANDS: 7 files (SELECT + GET RESPONSE each) read in
    19 READ BINARY, then the MF's SELECT and one GET DATA for the PIN's tries."""
    transport = CardTransport(sim_cps3())
    contents = read(transport)
    assert contents.problems == [] and len(contents.certificates) == 2
    assert contents.pin is not None and contents.pin.tries_left == 3
    instructions = [apdu[1] for apdu in transport.sent]
    assert [instructions.count(ins) for ins in (0xA4, 0xC0, 0xB0, 0xCB)] == [8, 7, 19, 1]
    assert len(transport.sent) == 35 <= MAX_COMMANDS // 10


def test_an_odf_pointing_to_itself_is_a_loop_read_once() -> None:
    card = sim_cps3()
    replace_file(card, ODF, pkcs15.odf(ODF))
    transport = CardTransport(card)
    contents = read(transport)
    assert contents.serial == "99213845" and contents.certificates == []
    assert [p.where for p in contents.problems] == ["certificates"]
    assert "named a second time" in contents.problems[0].message
    assert len(transport.sent) < 20


def test_a_cdf_naming_the_odf_and_itself_reads_neither_again() -> None:
    card = sim_cps3()
    cdf = b"".join(pkcs15.cdf_entry(f"loop {n}", n, path) for n, path in enumerate([ODF, CDF]))
    replace_file(card, CDF, cdf + pkcs15.cdf_entry(LABEL_AUTH, 2, AUTH))
    contents = read(CardTransport(card))
    assert [label for label, _ in contents.certificates] == [LABEL_AUTH]
    assert [p.where for p in contents.problems] == ["certificate loop 0", "certificate loop 1"]
    assert all("named a second time" in p.message for p in contents.problems)


@pytest.mark.parametrize(
    ("entries", "message"),
    [(1000, "no usable size"), (17, "more than 16 certificates")],
    ids=["1000 entries, over the file size", "17 entries, over the count"],
)
def test_a_cdf_with_too_many_entries_reads_no_certificate(entries: int, message: str) -> None:
    card = sim_cps3()
    cdf = b"".join(pkcs15.cdf_entry("", 1, (0xC100 + n).to_bytes(2)) for n in range(entries))
    replace_file(card, CDF, cdf)
    transport = CardTransport(card)
    contents = read(transport)
    assert contents.certificates == [] and [p.where for p in contents.problems] == ["certificates"]
    assert message in contents.problems[0].message
    assert len(transport.sent) < 30


def test_a_card_answering_61xx_forever_gives_up_each_step() -> None:
    card = NoiseCard([(b"\x00", 0x6101)])
    contents = read(card)
    assert [p.where for p in contents.problems] == ["serial", "certificates"]
    assert all("GET RESPONSE" in p.message for p in contents.problems)
    assert len(card.sent) == 2 * 65


def test_a_card_answering_9000_without_data_to_every_read_binary_fails_each_file() -> None:
    def no_data(apdu: bytes, answer: Answer) -> Answer:
        return (b"", SW_OK) if apdu[1] == 0xB0 else answer

    transport = CardTransport(sim_cps3(), no_data)
    contents = read(transport)
    assert contents.serial is None and contents.certificates == []
    assert [p.where for p in contents.problems] == ["serial", "certificates"]
    assert all("gave 0 bytes for" in p.message for p in contents.problems)
    assert len(transport.sent) == 6


def test_a_card_giving_fewer_bytes_than_asked_is_read_on_from_where_it_stopped() -> None:
    def ten_bytes(apdu: bytes, answer: Answer) -> Answer:
        return (answer[0][:10], answer[1]) if apdu[1] == 0xB0 else answer

    transport = CardTransport(sim_cps3(certificate_size=600), ten_bytes)
    contents = read(transport)
    assert contents.problems == [] and [len(data) for _, data in contents.certificates] == [600] * 2
    offsets = [apdu[2] << 8 | apdu[3] for apdu in transport.sent if apdu[1] == 0xB0]
    aodf_size = len(pkcs15.aodf_pin_entry(pkcs15.PIN_LABEL, 1, 1))
    assert offsets[-65:] == [*range(0, 600, 10), *range(0, aodf_size, 10)]
    assert contents.pin is not None and contents.pin.tries_left == 3


def test_a_card_that_needs_more_commands_than_the_budget_is_stopped_with_one_problem() -> None:
    def one_byte(apdu: bytes, answer: Answer) -> Answer:
        return (answer[0][:1], answer[1]) if apdu[1] == 0xB0 else answer

    transport = CardTransport(sim_cps3(certificate_size=4000), one_byte)
    contents = read(transport)
    assert len(transport.sent) == MAX_COMMANDS and contents.stopped
    assert contents.serial == "99213845" and contents.certificates == []
    assert [p.where for p in contents.problems] == [f"certificate {LABEL_AUTH}"]
    assert f"more than {MAX_COMMANDS} commands" in contents.problems[0].message


def test_a_path_longer_than_a_select_can_carry_is_a_problem() -> None:
    card = sim_cps3()
    replace_file(card, CDF, pkcs15.cdf_entry(LABEL_AUTH, 1, MF + bytes(300)))
    contents = read(CardTransport(card))
    assert [p.where for p in contents.problems] == [f"certificate {LABEL_AUTH}"]
    assert "unusable file path" in contents.problems[0].message


# --- targeted: exchange -----------------------------------------------------------------------


def test_a_select_answered_6cxx_is_sent_again_with_its_path_whole_and_that_le() -> None:
    card = NoiseCard([(b"", 0x6C10), (b"", 0x9000)])
    select = bytes.fromhex("00A4090404 3F00D003")
    assert exchange(card, select) == (b"", 0x9000)
    assert card.sent == [select, select + b"\x10"]


def test_an_answer_longer_than_a_short_apdu_allows_is_a_card_error() -> None:
    with pytest.raises(CardError, match="257 bytes"):
        exchange(NoiseCard([(bytes(257), SW_OK)]), bytes.fromhex("00B0000000"))


def test_the_budget_refuses_the_command_past_its_limit_without_sending_it() -> None:
    card = NoiseCard([(b"", SW_OK)])
    budget = CommandBudget(card, 3)
    for _ in range(3):
        budget.transmit(bytes.fromhex("00B0000001"))
    with pytest.raises(CardError, match="more than 3 commands: reading stopped before 00B00000"):
        budget.transmit(bytes.fromhex("00B0000001"))
    assert len(card.sent) == 3
