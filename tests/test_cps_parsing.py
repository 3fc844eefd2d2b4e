"""Reading a CPS without pcscd: BER-TLV, the PKCS#15 walk, GET RESPONSE, the reader end to end.

The transports here are in-memory stand-ins for a PC/SC connection; the round
trips forward to the simulator's card so both sides agree byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from cpsfleet.agent import tlv
from cpsfleet.agent.apdu import CardError, FileInfo, exchange, file_info
from cpsfleet.agent.cps import (
    CPS3,
    CPS4,
    CpsReader,
    application_path,
    certificate_directories,
    certificate_entries,
    serial_from_sn_icc,
)
from cpsfleet.sim.cards import LABEL_AUTH, LABEL_SIGN, build_card
from cpsfleet.sim.faults import FaultyCard
from cpsfleet.sim.iso import EF, IsoCard
from cpsfleet.sim.profile import Profile

APP = bytes.fromhex("3F000001")
SN_ICC = bytes.fromhex("5A0A 8025000001 99213845 0F")
EF_DIR = (
    bytes.fromhex("611A4F0DE828BD080F8025000001FF0010")
    + b"\x50\x03CPS"
    + bytes.fromhex("51043F000001")
)
ODF = bytes.fromhex("A40A3008 04063F0000015036")
AUTH_ENTRY = (
    bytes.fromhex("3038 3023 0C21")
    + LABEL_AUTH.encode()
    + bytes.fromhex("3003040101 A10C 300A 3008 0406 3F000001C001")
)
SIGN_ENTRY = (
    bytes.fromhex("3032 301D 0C1B")
    + LABEL_SIGN.encode()
    + bytes.fromhex("3003040102 A10C 300A 3008 0406 3F000001C002")
)


class ScriptedTransport:
    """Answers from a script, in order, and keeps the APDUs it was sent."""

    def __init__(self, answers: Iterable[tuple[str, int]]) -> None:
        self.answers = [(bytes.fromhex(data), sw) for data, sw in answers]
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return self.answers.pop(0)


class CardTransport:
    """Forwards every APDU to a simulated card and keeps what it sent."""

    def __init__(self, card: IsoCard | FaultyCard) -> None:
        self.card = card
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        response = self.card.process(apdu)
        return response[:-2], int.from_bytes(response[-2:], "big")


def cps_card(kind: str, auth_der: bytes, sign_der: bytes) -> IsoCard | FaultyCard:
    return build_card(Profile(kind, serial="99213845", auth_cert=auth_der, sign_cert=sign_der))


# --- BER-TLV ----------------------------------------------------------------------------------


def test_tlv_short_length() -> None:
    assert tlv.parse(bytes.fromhex("5A 02 0102 50 00")) == [
        tlv.Tlv(0x5A, b"\x01\x02"),
        tlv.Tlv(0x50, b""),
    ]


@pytest.mark.parametrize(("header", "size"), [("81 80", 0x80), ("81 FF", 0xFF), ("82 0100", 256)])
def test_tlv_long_lengths(header: str, size: int) -> None:
    value = bytes(range(256)) * 2
    data = bytes.fromhex("04" + header) + value[:size] + bytes.fromhex("0500")
    assert tlv.parse(data) == [tlv.Tlv(0x04, value[:size]), tlv.Tlv(0x05, b"")]


@pytest.mark.parametrize(("data", "tag"), [("5F20 01 41", 0x5F20), ("BF8101 01 41", 0xBF8101)])
def test_tlv_multi_byte_tags(data: str, tag: int) -> None:
    assert tlv.parse(bytes.fromhex(data)) == [tlv.Tlv(tag, b"A")]


def test_tlv_padding_00_and_ff_between_objects_is_skipped() -> None:
    data = bytes.fromhex("00 FF 5A 01 01 FF FF 00 50 01 02 00 00")
    assert tlv.parse(data) == [tlv.Tlv(0x5A, b"\x01"), tlv.Tlv(0x50, b"\x02")]


def test_tlv_constructed_objects_give_their_children() -> None:
    (template,) = tlv.parse(bytes.fromhex("62 07 80 02 000C 88 01 E0"))
    assert template.constructed and not template.children()[0].constructed
    assert template.find(0x80) == tlv.Tlv(0x80, b"\x00\x0c")
    assert template.find(0x83) is None


@pytest.mark.parametrize(
    "data",
    ["5A 05 0102", "5A", "5F", "5F 81", "04 81", "04 82 01", "04 80", "04 84 00000001 00"],
    ids=[
        "value cut",
        "no length",
        "tag cut",
        "long tag cut",
        "long length cut",
        "two-byte length cut",
        "indefinite length",
        "four-byte length",
    ],
)
def test_tlv_truncated_or_unsupported_input_raises(data: str) -> None:
    with pytest.raises(tlv.TlvError):
        tlv.parse(bytes.fromhex(data))


# --- the CPS files --------------------------------------------------------------------------


def test_serial_is_the_pan_without_prefix_and_luhn_byte() -> None:
    assert serial_from_sn_icc(SN_ICC) == "99213845"


@pytest.mark.parametrize(
    "content",
    ["4F0A 8025000001 99213845 0F", "5A0A 8025000002 992138450F", "5A05 8025000001"],
    ids=["wrong tag", "wrong prefix", "no serial"],
)
def test_serial_of_something_else_is_a_card_error(content: str) -> None:
    with pytest.raises(CardError, match="not a CPS serial"):
        serial_from_sn_icc(bytes.fromhex(content))


def test_application_path_comes_from_the_cps_record_of_ef_dir() -> None:
    assert application_path(EF_DIR) == APP


def test_application_path_skips_records_of_other_applications() -> None:
    other = bytes.fromhex("611C 4F0C A000000063504B43532D3135 5006") + b"PKCS15"
    other += bytes.fromhex("5104 3F005015")
    assert application_path(other + b"\x00\x00" + EF_DIR) == APP
    with pytest.raises(CardError, match="no CPS application"):
        application_path(other)


def test_certificate_directories_from_the_odf() -> None:
    assert certificate_directories(ODF, APP) == [APP + bytes.fromhex("5036")]


def test_certificate_directories_take_relative_paths_inside_the_application() -> None:
    private_keys = bytes.fromhex("A0 06 3004 0402 5034")
    trusted = bytes.fromhex("A5 06 3004 0402 5037")
    assert certificate_directories(private_keys + ODF + trusted, APP) == [
        APP + bytes.fromhex("5036"),
        APP + bytes.fromhex("5037"),
    ]


def test_certificate_entries_give_label_and_absolute_path() -> None:
    assert certificate_entries(AUTH_ENTRY + SIGN_ENTRY, APP) == [
        (LABEL_AUTH, APP + bytes.fromhex("C001")),
        (LABEL_SIGN, APP + bytes.fromhex("C002")),
    ]


def test_certificate_entry_with_a_relative_path_is_inside_the_application() -> None:
    relative = (
        bytes.fromhex("3034 3023 0C21")
        + LABEL_AUTH.encode()
        + bytes.fromhex("3003040101 A108 3006 3004 0402 C001")
    )
    assert certificate_entries(relative, APP) == [(LABEL_AUTH, APP + bytes.fromhex("C001"))]


@pytest.mark.parametrize(
    ("parse", "content"),
    [
        pytest.param(serial_from_sn_icc, "FF" * 12, id="blank EF.SN.ICC"),
        pytest.param(
            lambda data: certificate_directories(data, APP),
            "A400",
            id="ODF entry without path",
        ),
        pytest.param(
            lambda data: certificate_entries(data, APP),
            "3006 3000 3000 A100",
            id="CDF entry without path",
        ),
    ],
)
def test_hollow_files_are_a_card_error(parse: Callable[[bytes], object], content: str) -> None:
    with pytest.raises((CardError, tlv.TlvError)):
        parse(bytes.fromhex(content))


# --- exchange: 61xx and 6Cxx -----------------------------------------------------------------


def test_exchange_follows_61xx_with_get_response() -> None:
    transport = ScriptedTransport([("", 0x610D), ("620B8002000C8201018302D003", 0x9000)])
    select = bytes.fromhex("00A4090404 3F00D003")
    assert exchange(transport, select) == (bytes.fromhex("620B8002000C8201018302D003"), 0x9000)
    assert transport.sent == [select, bytes.fromhex("00C000000D")]


def test_exchange_joins_the_pieces_of_a_chained_answer_on_the_same_channel() -> None:
    transport = ScriptedTransport([("", 0x6105), ("0102030405", 0x6103), ("060708", 0x9000)])
    assert exchange(transport, bytes.fromhex("01A4080402D003")) == (bytes(range(1, 9)), 0x9000)
    assert transport.sent[1:] == [bytes.fromhex("01C0000005"), bytes.fromhex("01C0000003")]


def test_exchange_resends_with_the_le_of_6cxx() -> None:
    transport = ScriptedTransport([("", 0x6C0C), (SN_ICC.hex(), 0x9000)])
    assert exchange(transport, bytes.fromhex("00B0000000")) == (SN_ICC, 0x9000)
    assert transport.sent == [bytes.fromhex("00B0000000"), bytes.fromhex("00B000000C")]


def test_exchange_returns_an_error_status_as_is() -> None:
    transport = ScriptedTransport([("", 0x6A82)])
    assert exchange(transport, bytes.fromhex("00A4090404 3F00D00F")) == (b"", 0x6A82)
    assert len(transport.sent) == 1


def test_exchange_gives_up_on_a_card_that_always_says_61xx() -> None:
    transport = ScriptedTransport([("", 0x6101)] + [("00", 0x6101)] * 100)
    with pytest.raises(CardError, match="GET RESPONSE"):
        exchange(transport, bytes.fromhex("00A4090404 3F00D003"))


@pytest.mark.parametrize(
    ("fcp", "size"),
    [
        ("620B 8002000C 820101 8302D003", 12),
        ("6F07 8102029A 8801E0", 666),
        ("6207 820138 83023F00", None),
        ("", None),
    ],
    ids=["tag 80", "tag 81 in FCI", "DF without size", "no FCP"],
)
def test_file_info_reads_the_size_from_the_fcp(fcp: str, size: int | None) -> None:
    assert file_info(bytes.fromhex(fcp)) == FileInfo(size)


def test_file_info_of_garbage_is_a_card_error() -> None:
    with pytest.raises(CardError, match="unreadable FCP"):
        file_info(bytes.fromhex("DEADBEEF"))


# --- the reader against the simulated cards --------------------------------------------------


def test_cps3_reader_gets_serial_labels_and_certificates_unchanged(
    auth_der: bytes, sign_der: bytes
) -> None:
    contents = CpsReader(CardTransport(cps_card("cps3", auth_der, sign_der)), CPS3).read()
    assert contents.serial == "99213845"
    assert contents.certificates == [(LABEL_AUTH, auth_der), (LABEL_SIGN, sign_der)]
    assert contents.problems == []


def test_cps4_reader_gets_serial_labels_and_certificates_unchanged(
    auth_der: bytes, sign_der: bytes
) -> None:
    transport = CardTransport(cps_card("cps4", auth_der, sign_der))
    contents = CpsReader(transport, CPS4).read()
    assert contents.serial == "99213845"
    assert contents.certificates == [(LABEL_AUTH, auth_der), (LABEL_SIGN, sign_der)]
    assert contents.problems == []
    assert {apdu[0] for apdu in transport.sent} == {0x01}
    assert 0x00 in {apdu[-1] for apdu in transport.sent if apdu[1] == 0xB0}


def test_cps3_reader_never_reads_more_than_e7_bytes_at_once(
    auth_der: bytes, sign_der: bytes
) -> None:
    transport = CardTransport(cps_card("cps3", auth_der, sign_der))
    CpsReader(transport, CPS3).read()
    lengths = [apdu[-1] for apdu in transport.sent if apdu[1] == 0xB0]
    assert 0xE7 in lengths and all(0 < le <= 0xE7 for le in lengths)


def test_cps4_card_is_not_readable_as_a_cps3(auth_der: bytes, sign_der: bytes) -> None:
    contents = CpsReader(CardTransport(cps_card("cps4", auth_der, sign_der)), CPS3).read()
    assert contents.serial is None and contents.certificates == []
    assert [p.where for p in contents.problems] == ["serial", "certificates"]
    assert "6A82" in contents.problems[0].message


def test_blank_serial_file_becomes_a_problem_and_certificates_are_still_read(
    auth_der: bytes, sign_der: bytes
) -> None:
    card = cps_card("cps3", auth_der, sign_der)
    assert isinstance(card, IsoCard)
    sn_icc = card.mf.child(0xD003)
    assert isinstance(sn_icc, EF)
    sn_icc.data = b"\xff" * 12
    contents = CpsReader(CardTransport(card), CPS3).read()
    assert contents.serial is None and [p.where for p in contents.problems] == ["serial"]
    assert contents.certificates == [(LABEL_AUTH, auth_der), (LABEL_SIGN, sign_der)]
