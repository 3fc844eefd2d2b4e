"""The simulated cards' APDU engine: what each card kind answers, byte for byte.

The CPS bytes below are those of real traces (opensc #2275) and of the layout
ANS's Cryptolib accepted; a change in them would make the simulator lie.
"""

from __future__ import annotations

import pytest

from cpsfleet.sim.cards import build_card
from cpsfleet.sim.faults import CardPulled, Faults, FaultyCard
from cpsfleet.sim.iso import IsoCard
from cpsfleet.sim.profile import Profile

SERIAL = "99213845"
SN_ICC = "5A 0A 80 25 00 00 01 99 21 38 45 0F"
FCP_SN_ICC = "62 0B 80 02 00 0C 82 01 01 83 02 D0 03"
SELECT_SN_ICC = "00 A4 09 04 04 3F00 D003"
SELECT_AUTH_CERT = "00 A4 09 04 06 3F00 0001 C001"
SELECT_CHIPDOC = "01 A4 04 0C 08 8025000001FF0100"
OK = "90 00"
NO_FAULTS = Faults()

Card = IsoCard | FaultyCard


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def card_of(kind: str, auth_der: bytes, sign_der: bytes, faults: Faults = NO_FAULTS) -> Card:
    profile = Profile(kind, serial=SERIAL, auth_cert=auth_der, sign_cert=sign_der, faults=faults)
    return build_card(profile)


@pytest.fixture
def cps3(auth_der: bytes, sign_der: bytes) -> Card:
    return card_of("cps3", auth_der, sign_der)


@pytest.fixture
def cps4(auth_der: bytes, sign_der: bytes) -> Card:
    return card_of("cps4", auth_der, sign_der)


def read_file(card: Card, select: str, cla: int = 0x00, chunk: int = 0xE7) -> bytes:
    """Select with Le (FCP at once), then READ BINARY the size the FCP gives."""
    answer = card.process(h(select + " 00"))
    assert answer[-2:] == h(OK) and answer[2:4] == h("80 02"), answer.hex()
    size = int.from_bytes(answer[4:6], "big")
    content = b""
    while len(content) < size:
        offset, length = len(content), min(chunk, size - len(content))
        answer = card.process(bytes([cla, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF]))
        assert answer[-2:] == h(OK), answer.hex()
        content += answer[:-2]
    return content


# --- CPS3: SELECT, GET RESPONSE, READ BINARY as in the real trace ------------------------


def test_cps3_select_by_path_without_le_asks_for_get_response(cps3: Card) -> None:
    assert cps3.process(h(SELECT_SN_ICC)) == bytes([0x61, len(h(FCP_SN_ICC))])
    assert cps3.process(h("00 C0 00 00 0D")) == h(FCP_SN_ICC + OK)


def test_cps3_serial_file_is_the_pan_with_the_luhn_digit_and_an_f_pad(cps3: Card) -> None:
    cps3.process(h(SELECT_SN_ICC))
    cps3.process(h("00 C0 00 00 0D"))
    assert cps3.process(h("00 B0 00 00 0C")) == h(SN_ICC + OK)


@pytest.mark.parametrize(
    ("serial", "last_byte"),
    [("99213845", 0x0F), ("10452278", 0x1F), ("20991234", 0x1F), ("00000000", 0x7F)],
)
def test_luhn_digit_of_the_whole_pan_sits_in_the_high_nibble_of_the_last_byte(
    serial: str, last_byte: int
) -> None:
    card = build_card(Profile(kind="cps3", serial=serial))
    assert read_file(card, SELECT_SN_ICC) == h("5A 0A 8025000001" + serial) + bytes([last_byte])


def test_select_with_le_answers_the_fcp_at_once(cps3: Card) -> None:
    assert cps3.process(h(SELECT_SN_ICC + " 00")) == h(FCP_SN_ICC + OK)


def test_select_with_p2_0c_answers_no_data_but_selects_the_file(cps3: Card) -> None:
    assert cps3.process(h("00 A4 09 0C 04 3F00 D003")) == h(OK)
    assert cps3.process(h("00 B0 00 00 0C")) == h(SN_ICC + OK)


def test_cps3_selects_its_application_by_aid_only_with_p2_0c(cps3: Card) -> None:
    aid = "0D E828BD080F8025000001FF0010"
    assert cps3.process(h("00 A4 04 00 " + aid)) == h("6A 86")
    assert cps3.process(h("00 A4 04 04 " + aid)) == h("6A 86")
    assert cps3.process(h("00 A4 04 0C " + aid)) == h(OK)
    # A path without 3F00 now starts from the application: this is its ODF.
    assert cps3.process(h("00 A4 09 0C 02 5031")) == h(OK)
    assert cps3.process(h("00 B0 00 00 02")) == h("A8 0A" + OK)


@pytest.mark.parametrize(
    "select",
    [
        "00 A4 09 04 04 3F00 D00F",
        "00 A4 09 04 06 3F00 0001 C00F",
        "00 A4 04 0C 0D E828BD080F8025000001FF0099",
        "00 A4 02 04 02 D00F",
    ],
)
def test_select_of_a_missing_file_answers_6a82(cps3: Card, select: str) -> None:
    assert cps3.process(h(select)) == h("6A 82")


@pytest.mark.parametrize(
    ("read", "start", "end"),
    [("00 B0 00 00 10", 0, 0x10), ("00 B0 00 10 20", 0x10, 0x30), ("00 B0 01 00 E7", 0x100, 0x1E7)],
)
def test_read_binary_returns_the_slice_at_the_offset_in_p1_p2(
    cps3: Card, auth_der: bytes, read: str, start: int, end: int
) -> None:
    assert len(auth_der) > end
    cps3.process(h(SELECT_AUTH_CERT + " 00"))
    assert cps3.process(h(read)) == auth_der[start:end] + h(OK)


@pytest.mark.parametrize("le", ["E8", "FF", "00"])
def test_cps3_refuses_reads_longer_than_e7(cps3: Card, le: str) -> None:
    cps3.process(h(SELECT_AUTH_CERT + " 00"))
    assert cps3.process(h("00 B0 00 00 " + le)) == h("67 00")


def test_read_binary_past_the_end_of_the_file_answers_the_rest_with_6282(cps3: Card) -> None:
    cps3.process(h(SELECT_SN_ICC + " 00"))
    assert cps3.process(h("00 B0 00 08 08")) == h(SN_ICC)[8:] + h("62 82")


@pytest.mark.parametrize("offset", ["00 0C", "00 20", "7F FF"])
def test_read_binary_at_an_offset_beyond_the_file_answers_6b00(cps3: Card, offset: str) -> None:
    cps3.process(h(SELECT_SN_ICC + " 00"))
    assert cps3.process(h(f"00 B0 {offset} 01")) == h("6B 00")


def test_read_binary_without_a_selected_file_answers_6986(cps3: Card) -> None:
    assert cps3.process(h("00 B0 00 00 0C")) == h("69 86")
    cps3.process(h("00 A4 09 0C 02 3F00"))
    assert cps3.process(h("00 B0 00 00 0C")) == h("69 86")


def test_get_response_hands_out_a_long_answer_in_pieces(cps3: Card) -> None:
    fcp = h(FCP_SN_ICC)
    assert cps3.process(h(SELECT_SN_ICC)) == h("61 0D")
    assert cps3.process(h("00 C0 00 00 05")) == fcp[:5] + h("61 08")
    assert cps3.process(h("00 C0 00 00 03")) == fcp[5:8] + h("61 05")
    assert cps3.process(h("00 C0 00 00 05")) == fcp[8:] + h(OK)
    assert cps3.process(h("00 C0 00 00 05")) == h("69 85")


def test_any_other_command_drops_the_pending_response(cps3: Card) -> None:
    cps3.process(h(SELECT_SN_ICC))
    cps3.process(h("00 B0 00 00 0C"))
    assert cps3.process(h("00 C0 00 00 0D")) == h("69 85")


def test_cps3_has_only_the_basic_channel(cps3: Card) -> None:
    assert cps3.process(h("01 A4 09 04 04 3F00 D003")) == h("68 81")


# --- CPS4: the ChipDoc applet on logical channel 1 ----------------------------------------


def test_cps4_basic_channel_mf_holds_no_serial(cps4: Card) -> None:
    assert cps4.process(h(SELECT_SN_ICC)) == h("6A 82")


def test_cps4_serial_is_read_on_channel_1_after_selecting_the_applet(cps4: Card) -> None:
    assert cps4.process(h(SELECT_CHIPDOC)) == h(OK)
    assert cps4.process(h("01 A4 08 04 02 D003")) == h("61 0D")
    assert cps4.process(h("01 B0 00 00 00")) == h(SN_ICC + OK)


def test_cps4_applet_selected_on_channel_1_leaves_channel_0_alone(cps4: Card) -> None:
    cps4.process(h(SELECT_CHIPDOC))
    assert cps4.process(h(SELECT_SN_ICC)) == h("6A 82")


def test_cps4_reads_256_bytes_at_once(cps4: Card, auth_der: bytes) -> None:
    cps4.process(h(SELECT_CHIPDOC))
    cps4.process(h("01 A4 08 0C 04 0001 C001"))
    assert cps4.process(h("01 B0 00 00 00")) == auth_der[:256] + h(OK)
    assert read_file(cps4, "01 A4 08 04 04 0001 C001", cla=0x01, chunk=256) == auth_der


FCI_SN_ICC = "6F 0B 80 02 00 0C 82 01 01 83 02 D003"


def test_cps4_answers_cryptolibs_iso_select_with_an_fci_and_its_size(cps4: Card) -> None:
    """P1 08, the path without 3F00, P2 00: the FCI (6F), not the FCP Cryptolib refuses."""
    assert cps4.process(h(SELECT_CHIPDOC)) == h(OK)
    assert cps4.process(h("01 A4 08 00 02 D003 00")) == h(FCI_SN_ICC + OK)
    assert cps4.process(h("01 B0 00 00 0C")) == h(SN_ICC + OK)


def test_cps4_under_t0_gives_the_fci_through_get_response(cps4: Card) -> None:
    cps4.process(h(SELECT_CHIPDOC))
    assert cps4.process(h("01 A4 08 00 02 D003")) == h("61 0D")
    assert cps4.process(h("01 C0 00 00 0D")) == h(FCI_SN_ICC + OK)


def test_cps4_ef_dir_fci_says_working_ef_and_its_record_names_the_application(
    cps4: Card,
) -> None:
    cps4.process(h(SELECT_CHIPDOC))
    answer = cps4.process(h("01 A4 08 00 02 2F00 00"))
    assert answer == h("6F 0B 80 02 00 1C 82 01 01 83 02 2F00" + OK)
    assert cps4.process(h("01 B0 00 00 1C"))[-8:] == h("51 04 3F000001" + OK)


def test_cps4_application_df_fci_and_its_files_by_path_without_3f00(cps4: Card) -> None:
    cps4.process(h(SELECT_CHIPDOC))
    chipdoc_app = "E828BD080F8025000001FF0010"
    assert cps4.process(h("01 A4 08 00 02 0001 00")) == h(
        f"6F 16 82 01 38 83 02 0001 84 0D {chipdoc_app}" + OK
    )
    assert cps4.process(h("01 A4 08 00 02 0001")) == h("61 18")  # case 3: no Le
    answer = cps4.process(h("01 A4 08 00 04 0001 5031 00"))
    assert answer[:6] == h("6F 0B 80 02 00 18") and answer[-2:] == h(OK)


@pytest.mark.parametrize("cla", ["00", "02"])
def test_cps4_files_are_only_on_channel_1(cps4: Card, cla: str) -> None:
    cps4.process(h(SELECT_CHIPDOC))
    assert cps4.process(h(cla + " A4 08 00 02 D003 00")) in (h("6A 82"), h("68 81"))


@pytest.mark.parametrize("cla", ["02", "03"])
def test_cps4_answers_6881_on_other_channels(cps4: Card, cla: str) -> None:
    assert cps4.process(h(cla + SELECT_CHIPDOC[2:])) == h("68 81")


# --- the PKCS#15 structure, as Cryptolib accepted it ------------------------------------


def test_cps3_ef_dir_names_the_cps_application_at_3f00_0001(cps3: Card) -> None:
    assert read_file(cps3, "00 A4 09 04 04 3F00 2F00") == h(
        "61 1A 4F 0D E828BD080F8025000001FF0010 50 03" + b"CPS".hex() + "51 04 3F000001"
    )


def test_cps3_odf_points_to_the_aodf_then_the_cdf(cps3: Card) -> None:
    assert read_file(cps3, "00 A4 09 04 06 3F00 0001 5031") == h(
        "A8 0A 30 08 04 06 3F0000015034 A4 0A 30 08 04 06 3F0000015036"
    )


def test_cps3_cdf_gives_each_certificate_its_label_id_and_file(cps3: Card) -> None:
    auth = b"Certificat d'Authentification CPS".hex()
    sign = b"Certificat de Signature CPS".hex()
    assert read_file(cps3, "00 A4 09 04 06 3F00 0001 5036") == h(
        f"30 38 30 23 0C 21 {auth} 30 03 04 01 01 A1 0C 30 0A 30 08 04 06 3F000001C001"
        f"30 32 30 1D 0C 1B {sign} 30 03 04 01 02 A1 0C 30 0A 30 08 04 06 3F000001C002"
    )


def test_certificate_files_hold_the_der_unchanged(
    cps3: Card, auth_der: bytes, sign_der: bytes
) -> None:
    assert read_file(cps3, SELECT_AUTH_CERT) == auth_der
    assert read_file(cps3, "00 A4 09 04 06 3F00 0001 C002") == sign_der


def test_contactless_cps3_has_its_own_aid_and_the_technical_certificate(auth_der: bytes) -> None:
    card = build_card(Profile(kind="cps3-contactless", serial=SERIAL, tech_cert=auth_der))
    assert read_file(card, "00 A4 09 04 04 3F00 2F00")[2:17] == h(
        "4F 0D E828BD080F8025000001FF0020"
    )
    assert b"Certificat Technique CPS" in read_file(card, "00 A4 09 04 06 3F00 0001 5036")
    assert card.process(h("00 A4 04 0C 0D E828BD080F8025000001FF0020")) == h(OK)


# --- generic ISO card and Vitale ------------------------------------------------------------


def test_generic_card_answers_a_plain_iso_select_with_the_fcp(
    auth_der: bytes, sign_der: bytes
) -> None:
    card = card_of("generic", auth_der, sign_der)
    answer = card.process(h("00 A4 08 00 02 2F00 00"))
    assert answer[:6] == h("62 0B 80 02 00 1E") and answer[-2:] == h(OK)
    assert read_file(card, "00 A4 08 00 02 2F00", chunk=256)[-6:] == h("51 04 3F005015")


def test_generic_card_has_its_pkcs15_application_at_3f00_5015(
    auth_der: bytes, sign_der: bytes
) -> None:
    card = card_of("generic", auth_der, sign_der)
    pkcs15_aid = "A000000063504B43532D3135"
    assert card.process(h("00 A4 08 00 02 5015 00")) == h(
        "62 15 82 01 38 83 02 5015 84 0C" + pkcs15_aid + OK
    )
    assert card.process(h("00 A4 04 00 0C" + pkcs15_aid)) == h("61 17")
    assert read_file(card, "00 A4 08 00 04 5015 C001", chunk=256) == auth_der


@pytest.mark.parametrize(
    "select",
    [
        SELECT_SN_ICC,
        "00 A4 09 04 04 3F00 2F00",
        "00 A4 08 04 02 2F00",
        "00 A4 04 0C 0D E828BD080F8025000001FF0010",
        "00 A4 04 0C 08 8025000001FF0100",
        "00 A4 04 00 0C A000000063504B43532D3135",
    ],
)
def test_vitale_card_has_none_of_the_files_or_applications(
    auth_der: bytes, sign_der: bytes, select: str
) -> None:
    assert card_of("vitale", auth_der, sign_der).process(h(select)) == h("6A 82")


# --- faults -------------------------------------------------------------------------------------


def test_garbage_card_answers_deadbeef_to_everything(auth_der: bytes, sign_der: bytes) -> None:
    card = card_of("cps3", auth_der, sign_der, faults=Faults(garbage=True))
    for command in (SELECT_SN_ICC, "00 B0 00 00 0C", "00"):
        assert card.process(h(command)) == h("DEADBEEF" + OK)


def test_card_is_pulled_out_after_n_apdus(auth_der: bytes, sign_der: bytes) -> None:
    card = card_of("cps3", auth_der, sign_der, faults=Faults(remove_after_apdus=3))
    assert card.process(h(SELECT_SN_ICC + " 00")) == h(FCP_SN_ICC + OK)
    assert card.process(h("00 B0 00 00 0C")) == h(SN_ICC + OK)
    assert card.process(h("00 B0 00 00 0C")) == h(SN_ICC + OK)
    with pytest.raises(CardPulled, match="after 3 APDUs"):
        card.process(h("00 B0 00 00 0C"))


def test_corrupt_certificates_are_truncated_and_the_rest_is_intact(
    auth_der: bytes, sign_der: bytes
) -> None:
    card = card_of("cps3", auth_der, sign_der, faults=Faults(corrupt_certificates=True))
    assert read_file(card, SELECT_AUTH_CERT) == auth_der[: len(auth_der) // 2]
    assert read_file(card, "00 A4 09 04 06 3F00 0001 C002") == sign_der[: len(sign_der) // 2]
    assert read_file(card, SELECT_SN_ICC) == h(SN_ICC)


# --- malformed commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["", "00", "00 A4 09", "00 A4 09 04 05 3F00 D003", "00 A4 09 04 02 3F00 D003"],
    ids=["empty", "one byte", "three bytes", "lc too long", "lc too short"],
)
def test_malformed_apdu_answers_6700(cps3: Card, command: str) -> None:
    assert cps3.process(h(command)) == h("67 00")


@pytest.mark.parametrize("command", ["00 84 00 00 08", "00 24 00 01 00", "00 CA 9F 7F 00"])
def test_unknown_instruction_answers_6d00(cps3: Card, command: str) -> None:
    assert cps3.process(h(command)) == h("6D 00")
