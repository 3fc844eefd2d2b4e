"""Reading a CPS card: its serial (EF.SN.ICC), its certificates (the PKCS#15 walk) and its
PIN's tries left (``cpsfleet.agent.pin``).

The CPS3 and the CPS4 hold the same files but are addressed differently: a
``Dialect`` row says how (class byte, path form, largest read, applet to select).

Whatever the card answers, a reading is bounded: at most ``MAX_COMMANDS``
APDUs, files of at most ``MAX_FILE_SIZE`` bytes, ``MAX_CERTIFICATE_DIRECTORIES``
CDFs and ``MAX_CERTIFICATES`` certificates, and no file read twice (PKCS#15
paths that point back at a file already read form a loop). Past a bound, the
step becomes a problem entry, like any other card error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from cpsfleet.agent import pin, tlv
from cpsfleet.agent.apdu import (
    BudgetExhausted,
    CardError,
    CommandBudget,
    StatusWordError,
    Transport,
    command,
    exchange,
    file_info,
)
from cpsfleet.schemas.documents import Pin, Problem

MF = bytes.fromhex("3F00")
PATH_SN_ICC = MF + bytes.fromhex("D003")
PATH_DIR = MF + bytes.fromhex("2F00")
FID_ODF = bytes.fromhex("5031")
CPS_AID_PREFIX = bytes.fromhex("E828BD080F8025000001")
PAN_PREFIX = bytes.fromhex("8025000001")
ODF_CERTIFICATE_TAGS = (0xA4, 0xA5, 0xA6)
MAX_FILE_SIZE = 16 * 1024
# A CPS3 with two certificates of 1.5 KB takes 35 APDUs (tests/test_fuzz_card.py counts
# them on the simulated card): a SELECT and its GET RESPONSE for each of the 7 files,
# 19 READ BINARY of at most E7 bytes, then the MF's SELECT and GET DATA for the PIN's
# tries. 400 leaves room for a third certificate,
# certificates of several KB and cards that chain their answers in small 61xx pieces,
# and stops a hostile card after a few seconds of a scan.
MAX_COMMANDS = 400
MAX_CERTIFICATE_DIRECTORIES = 16  # a CPS has one CDF
MAX_CERTIFICATES = 16  # a CPS has two or three
MAX_PATH_BYTES = 16  # eight file ids; a CPS path has three
MAX_LABEL_CHARS = 128  # the CPS labels have about 35
SHOWN_BYTES = 32  # of a file quoted in a problem message

T = TypeVar("T")


@dataclass(frozen=True)
class Dialect:
    cla: int
    path_p1: int
    path_keeps_mf: bool
    chunk: int
    applet: bytes | None = None
    # P2 of a path SELECT: 04 asks the FCP (CPS3), 00 the FCI (the CPS4, as Cryptolib asks it).
    path_p2: int = 0x04
    # The CPS3 tells its PIN tries to GET DATA; the CPS4 to a VERIFY without data, which
    # spends no try (Cryptolib's card-cps4.c asks it so).
    pin_by_verify: bool = False


CPS3 = Dialect(cla=0x00, path_p1=0x09, path_keeps_mf=True, chunk=0xE7)
CPS4 = Dialect(
    cla=0x01,
    path_p1=0x08,
    path_keeps_mf=False,
    chunk=256,
    applet=bytes.fromhex("8025000001FF0100"),
    path_p2=0x00,
    pin_by_verify=True,
)
DIALECTS = {"cps3": CPS3, "cps3-contactless": CPS3, "cps4": CPS4}


@dataclass
class CardContents:
    serial: str | None = None
    certificates: list[tuple[str | None, bytes]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stopped: bool = False  # the card used up its commands: the remaining steps are skipped
    pin: Pin | None = None

    def attempt(self, where: str, step: Callable[[], T]) -> T | None:
        """Run one reading step; a card error becomes a problem and the reading goes on."""
        if self.stopped:
            return None
        try:
            return step()
        except (CardError, tlv.TlvError) as error:
            self.problems.append(Problem(where, str(error) or type(error).__name__))
            self.stopped = isinstance(error, BudgetExhausted)
            return None


class CpsReader:
    """Reads one CPS card through ``transport`` in the given ``dialect``."""

    def __init__(self, transport: Transport, dialect: Dialect) -> None:
        self.transport = transport
        self.dialect = dialect
        self.card = CommandBudget(transport, MAX_COMMANDS)
        self.files_read: set[bytes] = set()
        self.pkcs15: tuple[bytes, bytes] | None = None  # (application path, ODF) once read

    def read(self) -> CardContents:
        """Serial, certificates and PIN state; each step the card fails becomes one of
        ``problems``, except the PIN's, whose error is told in ``pin``."""
        self.card = CommandBudget(self.transport, MAX_COMMANDS)  # each reading has its own
        self.files_read = set()
        self.pkcs15 = None
        contents = CardContents()
        if self.dialect.applet and contents.attempt("card", self.select_applet) is None:
            return contents
        contents.serial = contents.attempt("serial", self.serial)
        for label, path in contents.attempt("certificates", self.certificate_paths) or []:
            data = contents.attempt(f"certificate {label}", partial(self.read_file, path))
            if data is not None:
                contents.certificates.append((label, data))
        contents.pin = self.pin_state(contents.stopped)
        return contents

    def pin_state(self, stopped: bool) -> Pin:
        """The PIN's tries, or why they could not be read."""
        if stopped:
            return Pin(error=pin.NOT_READ + "the card used up the commands of this reading")
        if self.pkcs15 is None:
            return Pin(error=pin.NOT_READ + "the card's PKCS#15 directory (ODF) is unreadable")
        try:
            return self.read_pin(*self.pkcs15)
        except (CardError, tlv.TlvError) as error:
            return Pin(error=pin.NOT_READ + (str(error) or type(error).__name__))

    def read_pin(self, app: bytes, odf: bytes) -> Pin:
        """The tries of the PIN named in the AODF, asked as Cryptolib asks this card kind."""
        reference = pin.pin_reference(self.read_file(absolute(pin.aodf_path(odf), app)))
        if self.dialect.pin_by_verify:
            return self.read_pin_by_verify(reference)
        return self.read_pin_by_get_data(reference)

    def read_pin_by_verify(self, reference: int) -> Pin:
        """VERIFY without data (``01 20 00 <ref>``): the card tells the tries left, none spent."""
        _, sw = exchange(self.card, command(self.dialect.cla, 0x20, 0x00, reference))
        return pin.pin_from_verify_status(sw, reference)

    def read_pin_by_get_data(self, reference: int) -> Pin:
        """GET DATA on the PIN's security data object, the MF selected first as Cryptolib does."""
        cla = self.dialect.cla
        _, sw = exchange(self.card, command(cla, 0xA4, self.dialect.path_p1, 0x0C, MF))
        if sw != 0x9000:
            raise StatusWordError("selecting the MF", sw)
        request = pin.security_data_request(reference)
        data, sw = exchange(self.card, command(cla, 0xCB, 0x3F, 0xFF, request, le=0))
        if sw != 0x9000:
            raise StatusWordError(f"GET DATA of PIN {reference:02X}'s tries", sw)
        return pin.pin_from_security_data(data, reference)

    def select_applet(self) -> bool:
        assert self.dialect.applet is not None
        apdu = command(self.dialect.cla, 0xA4, 0x04, 0x0C, self.dialect.applet)
        _, sw = exchange(self.card, apdu)
        if sw != 0x9000:
            raise StatusWordError("selecting the CPS4 applet", sw)
        return True

    def select(self, path: bytes) -> int | None:
        """Select a file by its absolute path; return its size from the FCP or FCI."""
        check_path(path)
        wire_path = path if self.dialect.path_keeps_mf else path.removeprefix(MF)
        dialect = self.dialect
        apdu = command(dialect.cla, 0xA4, dialect.path_p1, dialect.path_p2, wire_path)
        control, sw = exchange(self.card, apdu)
        if sw != 0x9000:
            raise StatusWordError(f"selecting {path.hex().upper()}", sw)
        return file_info(control).size

    def read_file(self, path: bytes) -> bytes:
        """The content of the file at ``path``; each file is read once per reading."""
        if path in self.files_read:
            raise CardError(
                f"file {path.hex().upper()} is named a second time: the card's PKCS#15 paths loop"
            )
        self.files_read.add(path)
        size = self.select(path)
        if size is None or size > MAX_FILE_SIZE:
            raise CardError(f"file {path.hex().upper()} has no usable size ({size})")
        content = bytearray()
        while len(content) < size:
            content += self._read_chunk(len(content), min(self.dialect.chunk, size - len(content)))
        return bytes(content)

    def _read_chunk(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; a card may give fewer, the caller goes on."""
        apdu = command(self.dialect.cla, 0xB0, offset >> 8, offset & 0xFF, le=length)
        data, sw = exchange(self.card, apdu)
        if sw != 0x9000:
            raise StatusWordError(f"reading at offset {offset}", sw)
        if not data or len(data) > length:
            raise CardError(
                f"reading at offset {offset}: the card gave {len(data)} bytes for {length} asked"
            )
        return data

    def serial(self) -> str:
        return serial_from_sn_icc(self.read_file(PATH_SN_ICC))

    def certificate_paths(self) -> list[tuple[str | None, bytes]]:
        app = application_path(self.read_file(PATH_DIR))
        odf = self.read_file(app + FID_ODF)
        self.pkcs15 = (app, odf)
        entries: list[tuple[str | None, bytes]] = []
        for cdf_path in certificate_directories(odf, app):
            entries += certificate_entries(self.read_file(cdf_path), app)
            if len(entries) > MAX_CERTIFICATES:
                raise CardError(f"the card lists more than {MAX_CERTIFICATES} certificates")
        return entries


def serial_from_sn_icc(content: bytes) -> str:
    """The serial users see: the PAN after 80 25 00 00 01, without its Luhn/pad byte."""
    pan = tlv.first(tlv.parse(content), "EF.SN.ICC")
    if pan.tag != 0x5A or not pan.value.startswith(PAN_PREFIX) or len(pan.value) < 7:
        raise CardError(f"EF.SN.ICC is not a CPS serial: {shown(content)}")
    return pan.value[len(PAN_PREFIX) : -1].hex().upper()


def application_path(ef_dir: bytes) -> bytes:
    """The path of the CPS PKCS#15 application named in EF.DIR."""
    for record in tlv.iterate(ef_dir):
        aid, path = record.find(0x4F), record.find(0x51)
        if record.tag == 0x61 and aid and path and aid.value.startswith(CPS_AID_PREFIX):
            return path.value
    raise CardError("EF.DIR names no CPS application with a path")


def absolute(path: bytes, app: bytes) -> bytes:
    """PKCS#15 paths are absolute from 3F00, or a bare file id inside the application."""
    return path if path.startswith(MF) else app + path


def check_path(path: bytes) -> None:
    """Paths come from the card: a SELECT takes only a short, whole sequence of file ids."""
    if not path or len(path) % 2 or len(path) > MAX_PATH_BYTES:
        raise CardError(f"the card names an unusable file path: {shown(path)}")


def shown(content: bytes) -> str:
    """``content`` in hex for a problem message, cut after ``SHOWN_BYTES``."""
    cut = "..." if len(content) > SHOWN_BYTES else ""
    return (content[:SHOWN_BYTES].hex().upper() or "(empty)") + cut


def _path_of(path_object: tlv.Tlv) -> bytes:
    """The octet string of a PKCS#15 Path: SEQUENCE { OCTET STRING path, ... }."""
    inner = path_object.find(0x04) if path_object.tag == 0x30 else None
    if inner is None:
        raise CardError("a PKCS#15 path is malformed")
    return inner.value


def certificate_directories(odf: bytes, app: bytes) -> list[bytes]:
    entries = [entry for entry in tlv.iterate(odf) if entry.tag in ODF_CERTIFICATE_TAGS]
    if len(entries) > MAX_CERTIFICATE_DIRECTORIES:
        raise CardError(
            f"the ODF lists {len(entries)} certificate directories, "
            f"more than the {MAX_CERTIFICATE_DIRECTORIES} a reading accepts"
        )
    return [
        absolute(_path_of(tlv.first(entry.children(), "an ODF entry")), app) for entry in entries
    ]


def certificate_entries(cdf: bytes, app: bytes) -> list[tuple[str | None, bytes]]:
    """(label, path) of each X.509 certificate object of a CDF."""
    entries = []
    for entry in tlv.iterate(cdf):
        parts = entry.children()
        if entry.tag != 0x30 or len(parts) < 3 or parts[-1].tag != 0xA1:
            continue
        label = parts[0].find(0x0C)
        typed = tlv.first(parts[-1].children(), "a certificate's attributes")
        path = _path_of(tlv.first(typed.children(), "a certificate's path"))
        entries.append((_label(label), absolute(path, app)))
        if len(entries) > MAX_CERTIFICATES:
            raise CardError(f"the CDF lists more than {MAX_CERTIFICATES} certificates")
    return entries


def _label(label: tlv.Tlv | None) -> str | None:
    return label.value.decode("utf-8", "replace")[:MAX_LABEL_CHARS] if label else None
