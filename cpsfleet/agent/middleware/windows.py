"""Cryptolib CPS on Windows: the MSI's registry keys and the files it installs.

The facts come from ANS's functional specification of its MSI (annex A: files, annex B:
registry, annex D: what older installers left) and the 5.2.2 release note's component
table; docs/cryptolib.md names them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PureWindowsPath
from typing import Protocol

from cpsfleet.agent.middleware.base import (
    REINSTALL,
    Files,
    Findings,
    MarkerError,
    RegistryError,
    conclude,
    dotted_version,
)
from cpsfleet.schemas.documents import Cryptolib

SYSTEM_DRIVE = "C:"  # the drive the detector's root stands for
PROGRAM_FILES = PureWindowsPath("C:/Program Files/santesocial/CPS")
PROGRAM_FILES_X86 = PureWindowsPath("C:/Program Files (x86)/santesocial/CPS")
CSP = "ASIP Sante Cryptographic Provider"
CPS3_CARD = "Carte de Professionnel de Sante CPS3"


@dataclass(frozen=True)
class MsiInstall:
    """Where one of ANS's two MSIs writes, seen from a 64-bit Windows.

    The x64 MSI writes the 64-bit registry view; the 32-bit MSI, run on a 64-bit Windows,
    is redirected by WOW64 to the WOW6432Node twins (and to System32 on a 32-bit Windows,
    where ``HKLM\\SOFTWARE`` is its own view).
    """

    name: str
    key: str
    cps_gestion_exe: str
    software: str  # the registry root the CSP and the card are registered under

    @property
    def csp_key(self) -> str:
        return f"{self.software}\\Microsoft\\Cryptography\\Defaults\\Provider\\{CSP}"

    @property
    def card_key(self) -> str:
        return f"{self.software}\\Microsoft\\Cryptography\\Calais\\SmartCards\\{CPS3_CARD}"


MSI_INSTALLS = (
    MsiInstall("x64", "HKLM\\SOFTWARE\\ASIP\\Cryptolib CPS", "cpgesw64.exe", "HKLM\\SOFTWARE"),
    MsiInstall(
        "32-bit",
        "HKLM\\SOFTWARE\\WOW6432Node\\ASIP\\Cryptolib CPS",
        "cpgesw32.exe",
        "HKLM\\SOFTWARE\\WOW6432Node",
    ),
)
KEY = MSI_INSTALLS[0].key
# Older installers (setup 3.x, before the MSI) left one subkey per version here; the MSI
# removes them, so one still there is an install the MSI did not clean up.
OLD_INSTALL_KEYS = (
    "HKLM\\SOFTWARE\\ASIP SANTE\\Cryptolib CPS",
    "HKLM\\SOFTWARE\\WOW6432Node\\ASIP SANTE\\Cryptolib CPS",
)
FILES = Files(
    libraries=(
        PureWindowsPath("C:/Windows/System32/cps3_pkcs11_w64.dll"),
        PureWindowsPath("C:/Windows/SysWOW64/cps3_pkcs11_w32.dll"),
        PureWindowsPath("C:/Windows/System32/cps3_pkcs11_w32.dll"),  # 32-bit Windows
    ),
    cps_gestion=(
        PROGRAM_FILES / "cpgesw64.exe",
        PROGRAM_FILES_X86 / "cpgesw32.exe",
        PROGRAM_FILES / "cpgesw32.exe",  # 32-bit Windows
    ),
    version_markers=f"registry {KEY} Version",
)


class RegistryReader(Protocol):
    def read_value(self, key: str, name: str) -> str | None:
        """The value as text, None when the key or the value does not exist.

        Raises RegistryError when the registry cannot be read.
        """
        ...

    def subkeys(self, key: str) -> list[str]:
        """The names of the key's subkeys, empty when the key does not exist."""
        ...


class DictRegistry:
    """A registry recorded as ``{key: {name: value}}``, for tests and replays.

    Key names are compared without case, as Windows does (``ASIP Sante`` is ``ASIP SANTE``).
    """

    def __init__(self, values: Mapping[str, Mapping[str, str]]) -> None:
        self.values = {key.casefold(): dict(names) for key, names in values.items()}
        self.names = {key.casefold(): key for key in values}

    def read_value(self, key: str, name: str) -> str | None:
        return self.values.get(key.casefold(), {}).get(name)

    def subkeys(self, key: str) -> list[str]:
        prefix = key.casefold() + "\\"
        found = (self.names[k][len(prefix) :] for k in self.names if k.startswith(prefix))
        return sorted({child.split("\\", 1)[0] for child in found})


class WinregReader:
    """The live registry; only usable on Windows."""

    def read_value(self, key: str, name: str) -> str | None:
        if sys.platform == "win32":
            return _read_winreg(key, name)
        raise RegistryError(f"cannot read {key}: the registry exists only on Windows")

    def subkeys(self, key: str) -> list[str]:
        if sys.platform == "win32":
            return _winreg_subkeys(key)
        raise RegistryError(f"cannot read {key}: the registry exists only on Windows")


if sys.platform == "win32":
    import winreg

    # Ask for the 64-bit view even from a 32-bit Python: the WOW6432Node keys are then
    # read by their own names, as the tables write them.
    _ACCESS = winreg.KEY_READ | winreg.KEY_WOW64_64KEY

    def _open(key: str) -> winreg.HKEYType:
        hive_name, _, subkey = key.partition("\\")
        hives = {"HKLM": winreg.HKEY_LOCAL_MACHINE, "HKCU": winreg.HKEY_CURRENT_USER}
        if hive_name not in hives:
            raise RegistryError(f"unknown registry hive in {key}")
        return winreg.OpenKey(hives[hive_name], subkey, 0, _ACCESS)

    def _read_winreg(key: str, name: str) -> str | None:
        try:
            with _open(key) as handle:
                value, _kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise RegistryError(f"cannot read {key}\\{name}: {error}") from error
        return str(value)

    def _winreg_subkeys(key: str) -> list[str]:
        try:
            with _open(key) as handle:
                count = winreg.QueryInfoKey(handle)[0]
                return [winreg.EnumKey(handle, index) for index in range(count)]
        except FileNotFoundError:
            return []
        except OSError as error:
            raise RegistryError(f"cannot list {key}: {error}") from error


class WindowsCryptolibDetector:
    def __init__(self, root: Path = Path("/"), registry: RegistryReader | None = None) -> None:
        self.root = root
        self.registry: RegistryReader = registry if registry is not None else WinregReader()

    def detect(self) -> Cryptolib:
        findings = Findings()
        try:
            install_dirs = [self._collect_install(msi, findings) for msi in MSI_INSTALLS]
            self._collect_old_installs(findings)
        except RegistryError as error:
            findings.problem(str(error))
            return conclude(self.root, FILES, findings)
        return conclude(self.root, _files(install_dirs), findings)

    def _collect_install(self, msi: MsiInstall, findings: Findings) -> PureWindowsPath | None:
        """Record the Version value and the registrations; return CPS Gestion by InstallDir."""
        version = self.registry.read_value(msi.key, "Version")
        install_dir = self.registry.read_value(msi.key, "InstallDir")
        if version is not None:
            _record_version(msi.key, version, findings)
            self._check_registrations(msi, findings)
        if install_dir is None:
            return None
        findings.evidence.append(f"registry {msi.key} InstallDir={install_dir}")
        return _on_system_drive(install_dir, msi.cps_gestion_exe)

    def _check_registrations(self, msi: MsiInstall, findings: Findings) -> None:
        """The CSP and the CPS3 card the MSI registers with Windows (annex B)."""
        image = self.registry.read_value(msi.csp_key, "Image Path")
        provider = self.registry.read_value(msi.card_key, "Crypto Provider")
        if image is not None:
            findings.evidence.append(f"CSP {CSP}: {image}")
        if provider is not None:
            findings.evidence.append(f"card {CPS3_CARD}: {provider}")
        if image is None or provider != CSP:
            findings.problem(
                f"the {msi.name} Cryptolib CPS install did not register its CSP and the CPS3 "
                f"card with Windows ({msi.csp_key}, {msi.card_key}): {REINSTALL}"
            )

    def _collect_old_installs(self, findings: Findings) -> None:
        for key in OLD_INSTALL_KEYS:
            for version in self.registry.subkeys(key):
                findings.evidence.append(f"registry {key}\\{version}")
                findings.problem(
                    f"an older Cryptolib CPS install ({version}) left {key}\\{version}: "
                    f"{REINSTALL} with ANS's MSI, which removes it"
                )


def _record_version(key: str, value: str, findings: Findings) -> None:
    version = dotted_version(value.strip())
    if version is None:
        message = f"registry {key} Version={value!r} is not a version like 05.02.02"
        findings.broken_marker(MarkerError(message))
        return
    findings.add_version(f"registry {key}", version, f"registry {key} Version={value}")


def _on_system_drive(install_dir: str, exe: str) -> PureWindowsPath | None:
    directory = PureWindowsPath(install_dir)
    if directory.drive.upper() != SYSTEM_DRIVE or not directory.is_absolute():
        return None
    return directory / exe


def _files(install_dirs: list[PureWindowsPath | None]) -> Files:
    """The files to look for; CPS Gestion may live where an InstallDir says."""
    tools = [tool for tool in install_dirs if tool is not None]
    return replace(FILES, cps_gestion=tuple(dict.fromkeys([*tools, *FILES.cps_gestion])))
