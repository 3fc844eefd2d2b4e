"""Reading a CPS card: its serial (EF.SN.ICC) and its certificates (the PKCS#15 walk).

The CPS3 and the CPS4 hold the same files but are addressed differently: a
``Dialect`` row says how (class byte, path form, largest read, applet to select).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from agent import tlv
from agent.apdu import CardError, StatusWordError, Transport, command, exchange, file_info
from agent.inventory import Problem

MF = bytes.fromhex("3F00")
PATH_SN_ICC = MF + bytes.fromhex("D003")
PATH_DIR = MF + bytes.fromhex("2F00")
FID_ODF = bytes.fromhex("5031")
CPS_AID_PREFIX = bytes.fromhex("E828BD080F8025000001")
PAN_PREFIX = bytes.fromhex("8025000001")
ODF_CERTIFICATE_TAGS = (0xA4, 0xA5, 0xA6)
MAX_FILE_SIZE = 16 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Dialect:
    cla: int
    path_p1: int
    path_keeps_mf: bool
    chunk: int
    applet: bytes | None = None


CPS3 = Dialect(cla=0x00, path_p1=0x09, path_keeps_mf=True, chunk=0xE7)
CPS4 = Dialect(
    cla=0x01,
    path_p1=0x08,
    path_keeps_mf=False,
    chunk=256,
    applet=bytes.fromhex("8025000001FF0100"),
)
DIALECTS = {"cps3": CPS3, "cps3-contactless": CPS3, "cps4": CPS4}


@dataclass
class CardContents:
    serial: str | None = None
    certificates: list[tuple[str | None, bytes]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def attempt(self, where: str, step: Callable[[], T]) -> T | None:
        """Run one reading step; a card error becomes a problem and the reading goes on."""
        try:
            return step()
        except (CardError, tlv.TlvError) as error:
            self.problems.append(Problem(where, str(error)))
            return None


class CpsReader:
    """Reads one CPS card through ``transport`` in the given ``dialect``."""

    def __init__(self, transport: Transport, dialect: Dialect) -> None:
        self.transport = transport
        self.dialect = dialect

    def read(self) -> CardContents:
        contents = CardContents()
        if self.dialect.applet and contents.attempt("card", self.select_applet) is None:
            return contents
        contents.serial = contents.attempt("serial", self.serial)
        for label, path in contents.attempt("certificates", self.certificate_paths) or []:
            data = contents.attempt(f"certificate {label}", partial(self.read_file, path))
            if data is not None:
                contents.certificates.append((label, data))
        return contents

    def select_applet(self) -> bool:
        assert self.dialect.applet is not None
        apdu = command(self.dialect.cla, 0xA4, 0x04, 0x0C, self.dialect.applet)
        _, sw = exchange(self.transport, apdu)
        if sw != 0x9000:
            raise StatusWordError("selecting the CPS4 applet", sw)
        return True

    def select(self, path: bytes) -> int | None:
        """Select a file by its absolute path; return its size from the FCP."""
        wire_path = path if self.dialect.path_keeps_mf else path.removeprefix(MF)
        apdu = command(self.dialect.cla, 0xA4, self.dialect.path_p1, 0x04, wire_path)
        fcp, sw = exchange(self.transport, apdu)
        if sw != 0x9000:
            raise StatusWordError(f"selecting {path.hex().upper()}", sw)
        return file_info(fcp).size

    def read_file(self, path: bytes) -> bytes:
        size = self.select(path)
        if size is None or size > MAX_FILE_SIZE:
            raise CardError(f"file {path.hex().upper()} has no usable size ({size})")
        content = bytearray()
        while len(content) < size:
            content += self._read_chunk(len(content), min(self.dialect.chunk, size - len(content)))
        return bytes(content)

    def _read_chunk(self, offset: int, length: int) -> bytes:
        apdu = command(self.dialect.cla, 0xB0, offset >> 8, offset & 0xFF, le=length)
        data, sw = exchange(self.transport, apdu)
        if sw != 0x9000 or not data:
            raise StatusWordError(f"reading at offset {offset}", sw)
        return data

    def serial(self) -> str:
        return serial_from_sn_icc(self.read_file(PATH_SN_ICC))

    def certificate_paths(self) -> list[tuple[str | None, bytes]]:
        app = application_path(self.read_file(PATH_DIR))
        odf = self.read_file(app + FID_ODF)
        entries: list[tuple[str | None, bytes]] = []
        for cdf_path in certificate_directories(odf, app):
            entries += certificate_entries(self.read_file(cdf_path), app)
        return entries


def serial_from_sn_icc(content: bytes) -> str:
    """The serial users see: the PAN after 80 25 00 00 01, without its Luhn/pad byte."""
    pan = tlv.first(tlv.parse(content), "EF.SN.ICC")
    if pan.tag != 0x5A or not pan.value.startswith(PAN_PREFIX) or len(pan.value) < 7:
        raise CardError(f"EF.SN.ICC is not a CPS serial: {content.hex().upper()}")
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


def _path_of(path_object: tlv.Tlv) -> bytes:
    """The octet string of a PKCS#15 Path: SEQUENCE { OCTET STRING path, ... }."""
    inner = path_object.find(0x04) if path_object.tag == 0x30 else None
    if inner is None:
        raise CardError("a PKCS#15 path is malformed")
    return inner.value


def certificate_directories(odf: bytes, app: bytes) -> list[bytes]:
    return [
        absolute(_path_of(tlv.first(entry.children(), "an ODF entry")), app)
        for entry in tlv.iterate(odf)
        if entry.tag in ODF_CERTIFICATE_TAGS
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
        entries.append(
            (label.value.decode("utf-8", "replace") if label else None, absolute(path, app))
        )
    return entries
