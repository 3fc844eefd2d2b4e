"""Readers nobody here wrote judge the simulator: OpenSC and ANS's official Cryptolib CPS.

Both talk to the simulated card through the same real pcscd as the agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from sim.profile import load_profile
from tests.conftest import BASE_PORT

CRYPTOLIB = Path(
    os.environ.get("CPSFLEET_CRYPTOLIB_PKCS11", "/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so")
)
CRYPTOLIB_CACHE = Path("/etc/opt/santesocial/CPS/cache")
OPENSC_DEFAULT_DRIVER = "app default {\n    enable_default_driver = true;\n}\n"


def reader_index(name: str) -> str:
    listing = subprocess.run(
        ["opensc-tool", "--list-readers"], capture_output=True, text=True, timeout=30
    ).stdout
    for line in listing.splitlines():
        if line.rstrip().endswith(name):
            return line.split()[0]
    raise AssertionError(f"{name} not in opensc-tool's reader list:\n{listing}")


def test_opensc_lists_the_generic_cards_certificates(insert, examples, tmp_path: Path) -> None:
    """A card with an ATR OpenSC does not know is read by its ISO driver through PKCS#15 alone."""
    profile = replace(load_profile(examples["doctor-cps3"]), kind="generic")
    played = insert(profile, BASE_PORT + 1)
    conf = tmp_path / "opensc.conf"
    conf.write_text(OPENSC_DEFAULT_DRIVER)
    result = subprocess.run(
        ["pkcs15-tool", "--reader", reader_index(played.reader), "--list-certificates"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OPENSC_CONF": str(conf)},
    )
    assert result.returncode == 0, result.stderr
    assert "X.509 Certificate [Certificat d'Authentification CPS]" in result.stdout
    assert "X.509 Certificate [Certificat de Signature CPS]" in result.stdout
    assert "Path           : 3f005015c001" in result.stdout


@pytest.mark.skipif(
    not CRYPTOLIB.exists(),
    reason=f"Cryptolib CPS is not installed here ({CRYPTOLIB} missing); see the README",
)
def test_official_cryptolib_sees_the_simulated_cps3_as_a_token(insert, examples) -> None:
    for cached in CRYPTOLIB_CACHE.glob("*"):
        cached.unlink()
    played = insert(examples["doctor-cps3"], BASE_PORT)
    pkcs11_tool = shutil.which("pkcs11-tool")
    assert pkcs11_tool, "pkcs11-tool (Debian package opensc) is required"
    slots = subprocess.run(
        [pkcs11_tool, "--module", str(CRYPTOLIB), "-L"], capture_output=True, text=True, timeout=60
    )
    slot_line = next(
        line for line in slots.stdout.splitlines() if line.endswith(f": {played.reader}")
    )
    slot = slots.stdout.split(slot_line, 1)[1].split("Slot ", 1)[0]
    assert "token model        : IAS ECC" in slot
    assert "serial num         : 99213845" in slot
    objects = subprocess.run(
        [pkcs11_tool, "--module", str(CRYPTOLIB), "-O", "--slot-index", slot_line.split()[1]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "label:      Certificat d'Authentification CPS" in objects.stdout
    assert "label:      Certificat de Signature CPS" in objects.stdout
    assert "CN=810002813839" in objects.stdout
