"""Cryptolib CPS on macOS: ADM version files, the pkg receipt and the installed files.

The facts come from ANS's ``CryptolibCPS-5.2.1.pkg``: its PackageInfo (package id, version,
installed at ``/``), its payload's file list and its postinstall script (the ADM files);
docs/cryptolib.md names them.
"""

from __future__ import annotations

import os
import plistlib
from pathlib import Path, PurePosixPath
from xml.parsers.expat import ExpatError

from cpsfleet.agent.middleware.base import (
    Files,
    Findings,
    MarkerError,
    collect_adm,
    conclude,
    dotted_version,
    on_root,
    present,
)
from cpsfleet.schemas.documents import Cryptolib

PKG_ID = "fr.asipsante.pkg.cryptolibCPS"
RECEIPTS = PurePosixPath("/var/db/receipts")
RECEIPT = RECEIPTS / f"{PKG_ID}.plist"
RECEIPT_BOM = RECEIPTS / f"{PKG_ID}.bom"  # the installed files' list, kept beside the plist
ADM_DIRECTORIES = (PurePosixPath("/Library/Application Support/santesocial/commun/adm"),)
CONFIG = PurePosixPath("/Library/Preferences/santesocial/CPS/cps3_pkcs11.conf")
FILES = Files(
    libraries=(PurePosixPath("/usr/local/lib/libcps3_pkcs11_osx.dylib"),),
    cps_gestion=(PurePosixPath("/Applications/cpgesosx.app"),),
    version_markers=f"pkg receipt {PKG_ID} or ADM 155.adm",
)


class MacosCryptolibDetector:
    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def detect(self) -> Cryptolib:
        findings = Findings()
        collect_adm(self.root, ADM_DIRECTORIES, findings)
        self._collect_receipt(findings)
        if present(self.root, CONFIG):
            findings.evidence.append(f"config {CONFIG}")
        return conclude(self.root, FILES, findings)

    def _collect_receipt(self, findings: Findings) -> None:
        path = on_root(self.root, RECEIPT)
        bom = present(self.root, RECEIPT_BOM)
        if not os.path.lexists(path):
            if bom:
                message = f"pkg receipt {PKG_ID}: {RECEIPT_BOM} is there but not {RECEIPT}"
                findings.broken_marker(MarkerError(message))
            return
        try:
            raw = read_receipt_version(path)
        except MarkerError as error:
            findings.broken_marker(error)
            return
        source = f"pkg receipt {PKG_ID}"
        version = dotted_version(raw)
        if version is None:
            findings.broken_marker(MarkerError(f"{source}: odd PkgVersion {raw!r}"))
            return
        findings.add_version(source, version, f"{source} PkgVersion={raw}")
        if bom:
            findings.evidence.append(f"pkg receipt {RECEIPT_BOM}")


def read_receipt_version(path: Path) -> str:
    """The ``PkgVersion`` of a receipt plist (XML or binary)."""
    try:
        with path.open("rb") as stream:
            receipt = plistlib.load(stream)
    except OSError as error:
        raise MarkerError(f"cannot read {path.name}: {error.strerror}") from error
    except (ValueError, ExpatError) as error:
        raise MarkerError(f"pkg receipt {PKG_ID} is not a plist: {error}") from error
    version = receipt.get("PkgVersion") if isinstance(receipt, dict) else None
    if not isinstance(version, str):
        raise MarkerError(f"pkg receipt {PKG_ID} has no PkgVersion")
    return version
