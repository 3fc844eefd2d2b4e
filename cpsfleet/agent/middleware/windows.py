"""Cryptolib CPS on Windows: the MSI's registry key and the installed files."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path, PureWindowsPath
from typing import Protocol

from cpsfleet.agent.middleware.base import (
    Files,
    Findings,
    MarkerError,
    RegistryError,
    conclude,
    dotted_version,
)
from cpsfleet.schemas.documents import Cryptolib

KEY = "HKLM\\SOFTWARE\\ASIP\\Cryptolib CPS"
CPS_GESTION_EXE = "cpgesw64.exe"
SYSTEM_DRIVE = "C:"  # the drive the detector's root stands for
FILES = Files(
    libraries=(
        PureWindowsPath("C:/Windows/System32/cps3_pkcs11_w64.dll"),
        PureWindowsPath("C:/Windows/SysWOW64/cps3_pkcs11_w32.dll"),
    ),
    cps_gestion=(PureWindowsPath("C:/Program Files/santesocial/CPS") / CPS_GESTION_EXE,),
    version_markers=f"registry {KEY} Version",
)


class RegistryReader(Protocol):
    def read_value(self, key: str, name: str) -> str | None:
        """The value as text, None when the key or the value does not exist.

        Raises RegistryError when the registry cannot be read.
        """
        ...


class DictRegistry:
    """A registry recorded as ``{key: {name: value}}``, for tests and replays."""

    def __init__(self, values: Mapping[str, Mapping[str, str]]) -> None:
        self.values = values

    def read_value(self, key: str, name: str) -> str | None:
        return self.values.get(key, {}).get(name)


class WinregReader:
    """The live registry; only usable on Windows."""

    def read_value(self, key: str, name: str) -> str | None:
        if sys.platform == "win32":
            return _read_winreg(key, name)
        raise RegistryError(f"cannot read {key}: the registry exists only on Windows")


if sys.platform == "win32":

    def _read_winreg(key: str, name: str) -> str | None:
        import winreg

        hive_name, _, subkey = key.partition("\\")
        hives = {"HKLM": winreg.HKEY_LOCAL_MACHINE, "HKCU": winreg.HKEY_CURRENT_USER}
        if hive_name not in hives:
            raise RegistryError(f"unknown registry hive in {key}")
        # The x64 MSI writes to the 64-bit view; ask for it even from a 32-bit Python.
        access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        try:
            with winreg.OpenKey(hives[hive_name], subkey, 0, access) as handle:
                value, _kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise RegistryError(f"cannot read {key}\\{name}: {error}") from error
        return str(value)


class WindowsCryptolibDetector:
    def __init__(self, root: Path = Path("/"), registry: RegistryReader | None = None) -> None:
        self.root = root
        self.registry: RegistryReader = registry if registry is not None else WinregReader()

    def detect(self) -> Cryptolib:
        findings = Findings()
        install_dir = self._collect_registry(findings)
        return conclude(self.root, _files(install_dir), findings)

    def _collect_registry(self, findings: Findings) -> str | None:
        """Record the Version value; return InstallDir."""
        try:
            version = self.registry.read_value(KEY, "Version")
            install_dir = self.registry.read_value(KEY, "InstallDir")
        except RegistryError as error:
            findings.problem(str(error))
            return None
        if version is not None:
            _record_version(version, findings)
        if install_dir is not None:
            findings.evidence.append(f"registry {KEY} InstallDir={install_dir}")
        return install_dir


def _record_version(value: str, findings: Findings) -> None:
    version = dotted_version(value.strip())
    if version is None:
        message = f"registry {KEY} Version={value!r} is not a version like 05.02.02"
        findings.broken_marker(MarkerError(message))
        return
    findings.add_version(f"registry {KEY}", version, f"registry {KEY} Version={value}")


def _files(install_dir: str | None) -> Files:
    """The files to look for; CPS Gestion may live where InstallDir says."""
    if install_dir is None:
        return FILES
    directory = PureWindowsPath(install_dir)
    if directory.drive.upper() != SYSTEM_DRIVE or not directory.is_absolute():
        return FILES
    tools = (directory / CPS_GESTION_EXE, *FILES.cps_gestion)
    return replace(FILES, cps_gestion=tuple(dict.fromkeys(tools)))
