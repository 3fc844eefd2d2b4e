"""The detectors' tables of facts checked against ANS's own installers, when they are here.

ANS's installers may not be redistributed, so none is in the repository: point
``CPSFLEET_CRYPTOLIB_RPM`` at ``CryptolibCPS-5.2.2-1.x86_64.rpm`` and ``CPSFLEET_CRYPTOLIB_PKG``
at ``CryptolibCPS-5.2.1.pkg`` (from ANS's ansforge/dops-cryptolib repository) to run these.
The Windows MSIs cannot be read here: the detector follows ANS's MSI specification instead.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

import pytest

from cpsfleet.agent.middleware import linux, macos
from cpsfleet.agent.middleware.base import adm_version

LAYOUTS = Path(__file__).parent / "layouts" / "cryptolib"


def installer(variable: str, *tools: str) -> Path:
    value = os.environ.get(variable, "")
    if not value or not Path(value).is_file():
        pytest.skip(f"{variable} does not name ANS's installer (it is not redistributable)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"reading the installer needs {', '.join(missing)}")
    return Path(value)


def output(*command: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, check=True, timeout=60)
    return done.stdout.decode("utf-8", "replace")


def test_rpm_holds_the_files_the_linux_detector_looks_for() -> None:
    rpm = installer("CPSFLEET_CRYPTOLIB_RPM", "rpm")
    name = output("rpm", "-qp", "--qf", "%{NAME}", str(rpm))
    listed = {PurePosixPath(line) for line in output("rpm", "-qpl", str(rpm)).splitlines()}
    assert name == linux.RPM_PACKAGE
    wanted = {*linux.FILES.libraries, *linux.FILES.cps_gestion, linux.CONFIG}
    assert wanted <= listed
    assert linux.ADM_DIRECTORIES[0] in listed


def test_rpm_scriptlet_writes_the_installer_adm_of_its_version() -> None:
    rpm = installer("CPSFLEET_CRYPTOLIB_RPM", "rpm", "rpm2cpio", "cpio")
    version = output("rpm", "-qp", "--qf", "%{VERSION}", str(rpm))
    archive = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    versions = output(
        "cpio", "-i", "--quiet", "--to-stdout", "./tmp/CPS/adm_versions", stdin=archive
    )
    raw = re.search(r"INS_ADM_VERSION=([0-9]{6})", versions)
    assert raw is not None
    assert adm_version(raw.group(1)) == version
    scripts = output("rpm", "-qp", "--scripts", str(rpm))
    assert '"INSTALLEUR_CRYPTOLIB_CPS_64B"' in scripts and "155.adm" in scripts


def test_pkg_is_the_package_id_and_files_the_macos_detector_looks_for(tmp_path: Path) -> None:
    pkg = installer("CPSFLEET_CRYPTOLIB_PKG", "7z", "cpio")
    subprocess.run(["7z", "x", "-y", f"-o{tmp_path}", str(pkg)], capture_output=True, check=True)
    (info_path,) = tmp_path.glob("*.pkg/PackageInfo")
    info = ElementTree.parse(info_path).getroot()
    assert info.get("identifier") == macos.PKG_ID
    assert info.get("install-location", "/") == "/"
    assert info_path.parent.name == f"CryptolibCPS-{info.get('version')}.pkg"
    recorded = json.loads((LAYOUTS / "macos-present.json").read_text(encoding="utf-8"))
    assert recorded["expected"]["version"] == info.get("version")
    payload = gzip.decompress((info_path.parent / "Payload").read_bytes())
    listed = {
        PurePosixPath(line[1:])
        for line in output("cpio", "-t", "--quiet", stdin=payload).splitlines()
    }
    wanted = {
        *macos.FILES.libraries,
        *macos.FILES.cps_gestion,
        macos.CONFIG,
        *macos.ADM_DIRECTORIES,
    }
    assert wanted <= listed
