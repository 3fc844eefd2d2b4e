"""Detecting Cryptolib CPS on Linux, Windows and macOS from recorded file layouts.

Each ``tests/layouts/cryptolib/*.json`` is a manifest: the files (relative to the root
standing for ``/`` or ``C:\\``), the registry values or the rpm answer, and the inventory
entry expected. Problems are matched by a fragment of their message, in order.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.agent.middleware import detect_cryptolib, detector_for
from cpsfleet.agent.middleware.base import RpmError, adm_version, dotted_version
from cpsfleet.agent.middleware.linux import LinuxCryptolibDetector, query_rpm
from cpsfleet.agent.middleware.macos import MacosCryptolibDetector
from cpsfleet.agent.middleware.windows import DictRegistry, WindowsCryptolibDetector, WinregReader
from cpsfleet.schemas.documents import Cryptolib

LAYOUTS = Path(__file__).parent / "layouts" / "cryptolib"
LAYOUT_FILES = sorted(LAYOUTS.glob("*.json"))

Manifest = dict[str, Any]


def _linux(root: Path, manifest: Manifest) -> LinuxCryptolibDetector:
    def rpm(queried_root: Path) -> str | None:
        assert queried_root == root
        answer: str | None = manifest["rpm"]
        return answer

    return LinuxCryptolibDetector(root, rpm=rpm)


def _windows(root: Path, manifest: Manifest) -> WindowsCryptolibDetector:
    return WindowsCryptolibDetector(root, DictRegistry(manifest["registry"]))


def _macos(root: Path, manifest: Manifest) -> MacosCryptolibDetector:
    return MacosCryptolibDetector(root)


DETECTOR_FOR_OS: dict[str, Callable[[Path, Manifest], Any]] = {
    "linux": _linux,
    "windows": _windows,
    "macos": _macos,
}


def materialise(files: dict[str, str], root: Path) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def assert_matches(result: Cryptolib, expected: Manifest) -> None:
    fields = ("installed", "version", "pkcs11_library", "pkcs11_library_present", "cps_gestion")
    assert {name: getattr(result, name) for name in fields} == {
        name: expected[name] for name in fields
    }
    assert list(result.evidence) == expected["evidence"]
    messages = [problem.message for problem in result.problems]
    assert len(messages) == len(expected["problems"]), messages
    for message, fragment in zip(messages, expected["problems"], strict=True):
        assert fragment in message
    assert all(problem.where == "cryptolib" for problem in result.problems)


@pytest.mark.parametrize("layout", LAYOUT_FILES, ids=lambda path: path.stem)
def test_recorded_layout_gives_expected_inventory(layout: Path, tmp_path: Path) -> None:
    manifest = json.loads(layout.read_text(encoding="utf-8"))
    materialise(manifest["files"], tmp_path)
    detector = DETECTOR_FOR_OS[manifest["os"]](tmp_path, manifest)
    assert_matches(detector.detect(), manifest["expected"])


def test_layouts_cover_each_os_present_absent_partial_and_garbled() -> None:
    stems = {path.stem for path in LAYOUT_FILES}
    for os_name in DETECTOR_FOR_OS:
        cases = {stem.removeprefix(f"{os_name}-") for stem in stems if stem.startswith(os_name)}
        assert {"present", "absent"} <= cases
        assert any("without-library" in case for case in cases)
        assert any("library-without-version" in case for case in cases)
        assert any("garbled" in case for case in cases)


@pytest.mark.parametrize(
    ("raw", "version"), [("050202", "5.2.2"), ("030100", "3.1.0"), ("022000", "2.20.0")]
)
def test_adm_version_reads_two_digits_per_part(raw: str, version: str) -> None:
    assert adm_version(raw) == version


@pytest.mark.parametrize(
    ("text", "version"),
    [("05.02.02", "5.2.2"), ("5.2.2", "5.2.2"), ("5.2", None), ("v5.2.2", None), ("", None)],
)
def test_dotted_version_accepts_padded_and_plain_forms(text: str, version: str | None) -> None:
    assert dotted_version(text) == version


def test_unreadable_adm_file_becomes_a_problem(tmp_path: Path) -> None:
    (tmp_path / "var/opt/santesocial/commun/adm/155.adm").mkdir(parents=True)
    result = LinuxCryptolibDetector(tmp_path, rpm=lambda _root: None).detect()
    assert not result.installed
    messages = [problem.message for problem in result.problems]
    assert len(messages) == 2
    assert "cannot read 155.adm" in messages[0]
    # Something of Cryptolib was there, so the missing library is worth a word too.
    assert "PKCS#11 library" in messages[1] and "is missing" in messages[1]


def test_failing_rpm_query_becomes_a_problem(tmp_path: Path) -> None:
    def broken_rpm(_root: Path) -> str | None:
        raise RpmError("rpm -q CryptolibCPS failed: database locked")

    result = LinuxCryptolibDetector(tmp_path, rpm=broken_rpm).detect()
    assert not result.installed
    assert [problem.message for problem in result.problems] == [
        "rpm -q CryptolibCPS failed: database locked"
    ]


def test_rpm_query_without_rpm_binary_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cpsfleet.agent.middleware.linux.shutil.which", lambda _name: None)
    assert query_rpm(Path("/")) is None


@pytest.mark.skipif(sys.platform == "win32", reason="the live registry is readable there")
def test_live_registry_off_windows_becomes_a_problem(tmp_path: Path) -> None:
    result = WindowsCryptolibDetector(tmp_path, WinregReader()).detect()
    assert not result.installed
    assert len(result.problems) == 1
    assert "registry exists only on Windows" in result.problems[0].message


@pytest.mark.parametrize(
    ("system", "detector_class"),
    [
        ("Linux", LinuxCryptolibDetector),
        ("Windows", WindowsCryptolibDetector),
        ("Darwin", MacosCryptolibDetector),
    ],
)
def test_detector_is_picked_by_platform_system(system: str, detector_class: type) -> None:
    assert isinstance(detector_for(system, registry=DictRegistry({})), detector_class)


def test_detect_cryptolib_reads_the_given_root_and_registry(tmp_path: Path) -> None:
    manifest = json.loads((LAYOUTS / "windows-present.json").read_text(encoding="utf-8"))
    materialise(manifest["files"], tmp_path)
    registry = DictRegistry(manifest["registry"])
    result = detect_cryptolib(system="Windows", root=tmp_path, registry=registry)
    assert_matches(result, manifest["expected"])


def test_unsupported_system_is_not_installed_with_a_problem() -> None:
    result = detect_cryptolib(system="FreeBSD")
    assert not result.installed
    assert len(result.problems) == 1
    assert "'FreeBSD'" in result.problems[0].message


LIBRARY = Path("/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so")
INSTALLER_ADM = Path("/var/opt/santesocial/commun/adm/155.adm")


@pytest.mark.skipif(platform.system() != "Linux", reason="looks at this Linux machine")
def test_this_machine_agrees_with_its_own_files() -> None:
    """On the reference machine Cryptolib 5.2.2 is installed; a CI runner may lack it."""
    result = detect_cryptolib()
    assert result.pkcs11_library == str(LIBRARY)
    assert result.pkcs11_library_present == LIBRARY.exists()
    if not LIBRARY.exists():
        assert result.installed == INSTALLER_ADM.exists()
        return
    assert result.installed
    if INSTALLER_ADM.exists():
        raw = INSTALLER_ADM.read_text(encoding="latin-1").splitlines()[0]
        assert result.version == ".".join(str(int(raw[i : i + 2])) for i in (0, 2, 4))
        assert f"ADM 155.adm: {raw} INSTALLEUR_CRYPTOLIB_CPS_64B" in result.evidence


def test_recorded_registry_compares_key_names_without_case_as_windows_does() -> None:
    registry = DictRegistry({"HKLM\\SOFTWARE\\ASIP SANTE\\Cryptolib CPS\\3.06.000": {"x": "1"}})
    assert registry.subkeys("HKLM\\SOFTWARE\\ASIP Sante\\Cryptolib CPS") == ["3.06.000"]
    assert registry.read_value("hklm\\software\\asip sante\\cryptolib cps\\3.06.000", "x") == "1"
    assert registry.subkeys("HKLM\\SOFTWARE\\ASIP\\Cryptolib CPS") == []
