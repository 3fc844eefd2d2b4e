"""What the three Cryptolib CPS detectors share.

A detector looks at a filesystem ``root`` standing for the target's ``/`` (or ``C:\\``),
so tests can point it at a recorded layout. Paths in the tables of facts are written as
the target OS spells them (``PurePosixPath`` / ``PureWindowsPath``) and reported that way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Protocol

from cpsfleet.schemas.documents import Cryptolib, Problem

WHERE = "cryptolib"
REINSTALL = "reinstall Cryptolib CPS"

# ADM files of the SESAM-Vitale fleet scheme, as ANS's install scripts write them (RPM
# scriptlet, pkg postinstall): first line the version (two digits per part), second line a
# label, no newline after it. A 64-bit install writes 155 (installer,
# INSTALLEUR_CRYPTOLIB_CPS_64B) and 174 (PKCS#11 library); a 32-bit one 154 (installer,
# INSTALLEUR_CRYPTOLIB_CPS) and 157; both 170 (PKCS#11 interface). In the older FSV folders
# the scripts write the version alone, without a label. Only the installer's version is
# the product's.
ADM_FILES = ("155.adm", "154.adm", "157.adm", "174.adm", "170.adm")
INSTALLER_ADM_FILES = frozenset({"155.adm", "154.adm"})
INSTALLER_LABEL_PREFIX = "INSTALLEUR_CRYPTOLIB_CPS"
_ADM_VERSION = re.compile(r"[0-9]{6}")
_DOTTED_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


class CryptolibDetectionError(Exception):
    """A source of facts about Cryptolib CPS could not be read; becomes a Problem."""


class MarkerError(CryptolibDetectionError):
    """A version marker exists but cannot be read or understood."""


class RegistryError(CryptolibDetectionError):
    """The Windows registry could not be read."""


class RpmError(CryptolibDetectionError):
    """The RPM database could not be queried."""


class CryptolibDetector(Protocol):
    def detect(self) -> Cryptolib:
        """Inventory Cryptolib CPS; never raises, problems go into the result."""
        ...


@dataclass(frozen=True)
class AdmMarker:
    name: str
    raw_version: str
    label: str

    @property
    def version(self) -> str:
        return adm_version(self.raw_version)

    @property
    def is_installer(self) -> bool:
        if self.name not in INSTALLER_ADM_FILES:
            return False
        return not self.label or self.label.startswith(INSTALLER_LABEL_PREFIX)


@dataclass
class Findings:
    """What the sources said, collected while a detector walks them."""

    versions: list[tuple[str, str]] = field(default_factory=list)
    markers_seen: bool = False
    evidence: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add_version(self, source: str, version: str, evidence: str) -> None:
        self.versions.append((source, version))
        self.markers_seen = True
        self.evidence.append(evidence)

    def broken_marker(self, error: CryptolibDetectionError) -> None:
        # A marker that exists but is garbled still shows Cryptolib CPS was put there.
        self.markers_seen = True
        self.problem(str(error))

    def problem(self, message: str) -> None:
        self.problems.append(Problem(where=WHERE, message=message))


@dataclass(frozen=True)
class Files:
    """The target paths a detector looks for, as the target OS spells them."""

    libraries: tuple[PurePath, ...]
    cps_gestion: tuple[PurePath, ...]
    version_markers: str  # names the markers in the "no version marker" problem


def adm_version(raw: str) -> str:
    """``050202`` -> ``5.2.2``."""
    return ".".join(str(int(raw[i : i + 2])) for i in range(0, len(raw), 2))


def dotted_version(text: str) -> str | None:
    """``05.02.02`` or ``5.2.2`` -> ``5.2.2``; None when it is neither."""
    if not _DOTTED_VERSION.fullmatch(text):
        return None
    return ".".join(str(int(part)) for part in text.split("."))


def on_root(root: Path, target: PurePath) -> Path:
    """Where the target path ``/x/y`` or ``C:\\x\\y`` lies under ``root``."""
    return root.joinpath(*target.parts[1:])


def present(root: Path, target: PurePath) -> bool:
    # os.path.exists swallows permission errors, which Path.exists does not.
    return os.path.exists(on_root(root, target))


def read_adm(path: Path) -> AdmMarker:
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as error:
        raise MarkerError(f"cannot read {path.name}: {error.strerror}") from error
    first = lines[0].strip() if lines else ""
    if not _ADM_VERSION.fullmatch(first):
        raise MarkerError(f"ADM {path.name}: first line {first!r} is not a 6-digit version")
    label = lines[1].strip() if len(lines) > 1 else ""
    return AdmMarker(path.name, first, label)


def collect_adm(root: Path, directories: Iterable[PurePath], findings: Findings) -> None:
    """Record every ADM file of the tables; installers give the product version."""
    for directory in directories:
        for name in ADM_FILES:
            path = on_root(root, directory / name)
            if os.path.lexists(path):
                _record_adm(path, findings)


def _record_adm(path: Path, findings: Findings) -> None:
    try:
        marker = read_adm(path)
    except MarkerError as error:
        findings.broken_marker(error)
        return
    evidence = f"ADM {marker.name}: {marker.raw_version} {marker.label}".rstrip()
    if marker.is_installer:
        findings.add_version(f"ADM {marker.name}", marker.version, evidence)
    else:
        findings.evidence.append(evidence)


def conclude(root: Path, files: Files, findings: Findings) -> Cryptolib:
    """Turn the findings and the files present into the inventory entry."""
    libraries = [target for target in files.libraries if present(root, target)]
    tools = [target for target in files.cps_gestion if present(root, target)]
    findings.evidence.extend(f"PKCS#11 library {target}" for target in libraries)
    findings.evidence.extend(f"CPS Gestion {target}" for target in tools[:1])
    library = str(libraries[0] if libraries else files.libraries[0])
    _check_consistency(findings, files, library, bool(libraries))
    version = findings.versions[0][1] if findings.versions else None
    return Cryptolib(
        installed=bool(libraries) or version is not None,
        version=version,
        pkcs11_library=library,
        pkcs11_library_present=bool(libraries),
        cps_gestion=bool(tools),
        evidence=tuple(findings.evidence),
        problems=tuple(findings.problems),
    )


def _check_consistency(findings: Findings, files: Files, library: str, found: bool) -> None:
    if findings.markers_seen and not found:
        findings.problem(
            f"a Cryptolib CPS version marker is there but the PKCS#11 library "
            f"{library} is missing: {REINSTALL}"
        )
    if found and not findings.markers_seen:
        findings.problem(
            f"the PKCS#11 library {library} is there but no version marker "
            f"({files.version_markers}) was found: {REINSTALL}"
        )
    _check_versions_agree(findings)


def _check_versions_agree(findings: Findings) -> None:
    first_source, first = findings.versions[0] if findings.versions else ("", "")
    for source, version in findings.versions[1:]:
        if version != first:
            findings.problem(
                f"{first_source} says {first} but {source} says {version}: {REINSTALL}"
            )
