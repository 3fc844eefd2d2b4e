"""Detecting Cryptolib CPS, ANS's PKCS#11 middleware for CPS cards, on the workstation.

``detect_cryptolib()`` picks the detector for the running OS; each detector reads the
target's files from a ``root`` so it can also inspect a recorded or mounted layout.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cpsfleet.agent.middleware.base import WHERE, CryptolibDetector
from cpsfleet.schemas.documents import Cryptolib, Problem

if TYPE_CHECKING:
    from cpsfleet.agent.middleware.windows import RegistryReader

__all__ = [
    "CryptolibDetector",
    "detect_cryptolib",
    "detector_for",
]

DetectorFactory = Callable[[Path, "RegistryReader | None"], CryptolibDetector]

# Each OS's detector is imported when it is asked for, so that the daemon keeps only its
# own OS's in memory (the macOS one brings plistlib and the expat XML parser).


def _linux(root: Path, _registry: RegistryReader | None) -> CryptolibDetector:
    from cpsfleet.agent.middleware.linux import LinuxCryptolibDetector

    return LinuxCryptolibDetector(root)


def _windows(root: Path, registry: RegistryReader | None) -> CryptolibDetector:
    from cpsfleet.agent.middleware.windows import WindowsCryptolibDetector

    return WindowsCryptolibDetector(root, registry)


def _macos(root: Path, _registry: RegistryReader | None) -> CryptolibDetector:
    from cpsfleet.agent.middleware.macos import MacosCryptolibDetector

    return MacosCryptolibDetector(root)


# Keyed by platform.system().
DETECTORS: dict[str, DetectorFactory] = {"Linux": _linux, "Windows": _windows, "Darwin": _macos}


class UnsupportedSystem:
    """The detector for an OS Cryptolib CPS is not published for."""

    def __init__(self, system: str) -> None:
        self.system = system

    def detect(self) -> Cryptolib:
        message = f"cannot look for Cryptolib CPS on {self.system!r}: only {', '.join(DETECTORS)}"
        return Cryptolib(installed=False, problems=(Problem(where=WHERE, message=message),))


def detector_for(
    system: str | None = None, root: Path = Path("/"), registry: RegistryReader | None = None
) -> CryptolibDetector:
    """The detector for ``system`` (default: this machine's ``platform.system()``)."""
    name = system if system is not None else platform.system()
    factory = DETECTORS.get(name)
    return factory(root, registry) if factory is not None else UnsupportedSystem(name)


def detect_cryptolib(
    system: str | None = None, root: Path = Path("/"), registry: RegistryReader | None = None
) -> Cryptolib:
    """Inventory Cryptolib CPS; never raises, what went wrong is in ``problems``."""
    return detector_for(system, root, registry).detect()
