"""Cryptolib CPS on Linux: ADM version files, the RPM database and the installed files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from cpsfleet.agent.middleware.base import (
    Files,
    Findings,
    MarkerError,
    RpmError,
    collect_adm,
    conclude,
    dotted_version,
    present,
)
from cpsfleet.schemas.documents import Cryptolib

RPM_PACKAGE = "CryptolibCPS"
RPM_TIMEOUT_S = 20
ADM_DIRECTORIES = (
    PurePosixPath("/var/opt/santesocial/commun/adm"),
    PurePosixPath("/usr/local/sesam/etc/adm"),
)
CONFIG = PurePosixPath("/etc/opt/santesocial/CPS/cps3_pkcs11.conf")
FILES = Files(
    libraries=(
        PurePosixPath("/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so"),
        PurePosixPath("/usr/lib64/libcps3_pkcs11_lux.so"),
    ),
    cps_gestion=(
        PurePosixPath("/opt/santesocial/CPS/bin/cpgeslux"),
        PurePosixPath("/usr/bin/cpgeslux"),
    ),
    version_markers=f"ADM 155.adm or rpm {RPM_PACKAGE}",
)

RpmQuery = Callable[[Path], str | None]
"""Given the root, the ``VERSION-RELEASE`` of the installed package, or None if it is not."""


def query_rpm(root: Path) -> str | None:
    """Ask rpm for the package; no rpm binary or not installed both give None."""
    rpm = shutil.which("rpm")
    if rpm is None:
        return None
    command = [rpm, "-q", "--qf", "%{VERSION}-%{RELEASE}", RPM_PACKAGE]
    if root != Path("/"):
        command[1:1] = ["--root", str(root)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RPM_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as error:
        raise RpmError(f"rpm -q {RPM_PACKAGE} failed: {error}") from error
    # rpm exits non-zero for "package ... is not installed", and for a root without a database.
    return done.stdout.strip() if done.returncode == 0 else None


class LinuxCryptolibDetector:
    def __init__(self, root: Path = Path("/"), rpm: RpmQuery = query_rpm) -> None:
        self.root = root
        self.rpm = rpm

    def detect(self) -> Cryptolib:
        findings = Findings()
        collect_adm(self.root, ADM_DIRECTORIES, findings)
        self._collect_rpm(findings)
        if present(self.root, CONFIG):
            findings.evidence.append(f"config {CONFIG}")
        return conclude(self.root, FILES, findings)

    def _collect_rpm(self, findings: Findings) -> None:
        try:
            answer = self.rpm(self.root)
        except RpmError as error:
            findings.problem(str(error))
            return
        if answer is None:
            return
        version = dotted_version(answer.split("-", 1)[0])
        if version is None:
            findings.broken_marker(MarkerError(f"rpm {RPM_PACKAGE}: unexpected version {answer!r}"))
            return
        findings.add_version(f"rpm {RPM_PACKAGE}", version, f"rpm {RPM_PACKAGE} {answer}")
