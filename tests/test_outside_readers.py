"""Readers nobody here wrote judge the simulator: OpenSC and ANS's official Cryptolib CPS.

Both talk to the simulated card through the same real pcscd as the agent. Cryptolib
caches what it read per card serial: each of its tests empties the cache first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from cpsfleet.agent.scan import scan
from cpsfleet.schemas.documents import Pin
from cpsfleet.sim.profile import Profile, load_profile
from tests.conftest import BASE_PORT

CRYPTOLIB = Path(
    os.environ.get("CPSFLEET_CRYPTOLIB_PKCS11", "/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so")
)
CRYPTOLIB_CACHE = Path("/etc/opt/santesocial/CPS/cache")
OPENSC_DEFAULT_DRIVER = "app default {\n    enable_default_driver = true;\n}\n"
# The PKCS#11 token flags of the user PIN's state, as pkcs11-tool -L names them.
PIN_STATE_FLAGS = {"user PIN count low", "final user PIN try", "user PIN locked"}
needs_cryptolib = pytest.mark.skipif(
    not CRYPTOLIB.exists(),
    reason=f"Cryptolib CPS is not installed here ({CRYPTOLIB} missing); see docs/simulator.md",
)


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


def pkcs11_tool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("pkcs11-tool")
    assert tool, "pkcs11-tool (Debian package opensc) is required"
    return subprocess.run(
        [tool, "--module", str(CRYPTOLIB), *args], capture_output=True, text=True, timeout=60
    )


def empty_cryptolib_cache() -> None:
    for cached in CRYPTOLIB_CACHE.glob("*"):
        cached.unlink()


def cryptolib_slot(reader: str) -> tuple[str, str]:
    """The slot index Cryptolib gives ``reader``, and that slot's lines of ``pkcs11-tool -L``."""
    slots = pkcs11_tool("-L").stdout
    slot_line = next(line for line in slots.splitlines() if line.endswith(f": {reader}"))
    return slot_line.split()[1], slots.split(slot_line, 1)[1].split("Slot ", 1)[0]


def token_flags(slot: str) -> set[str]:
    line = next(line for line in slot.splitlines() if line.strip().startswith("token flags"))
    return set(line.split(":", 1)[1].strip().split(", "))


def agent_pin(reader: str) -> Pin | None:
    card = next(r.card for r in scan().readers if r.name == reader)
    assert card is not None
    return card.pin


@needs_cryptolib
def test_official_cryptolib_sees_the_simulated_cps3_as_a_token(insert, examples) -> None:
    empty_cryptolib_cache()
    played = insert(examples["doctor-cps3"], BASE_PORT)
    index, slot = cryptolib_slot(played.reader)
    assert "token model        : IAS ECC" in slot
    assert "serial num         : 99213845" in slot
    objects = pkcs11_tool("-O", "--slot-index", index)
    assert "label:      Certificat d'Authentification CPS" in objects.stdout
    assert "label:      Certificat de Signature CPS" in objects.stdout
    assert "CN=810002813839" in objects.stdout


@needs_cryptolib
@pytest.mark.parametrize(
    ("tries_left", "flags"),
    [
        (3, set()),
        (2, {"user PIN count low"}),
        (1, {"user PIN count low", "final user PIN try"}),
        (0, {"user PIN locked"}),
    ],
)
def test_official_cryptolib_reads_the_pin_tries_of_a_cps3_with_an_aodf_as_the_agent_does(
    insert, examples, tries_left: int, flags: set[str]
) -> None:
    """Cryptolib asks the AODF's PIN state with GET DATA as it enumerates: it still lists the
    token, its PIN flags tell the simulated tries, and the agent reads the same."""
    empty_cryptolib_cache()
    profile = replace(load_profile(examples["doctor-cps3"]), pin_tries_left=tries_left)
    played = insert(profile, BASE_PORT)
    _, slot = cryptolib_slot(played.reader)
    assert "serial num         : 99213845" in slot
    assert token_flags(slot) & PIN_STATE_FLAGS == flags
    assert agent_pin(played.reader) == Pin(tries_left, 3)
    assert played.pin.tries_left == tries_left  # enumerating spent no try


@needs_cryptolib
def test_a_wrong_pin_through_cryptolib_costs_a_try_and_the_right_one_gives_them_back(
    insert, examples
) -> None:
    """The simulated VERIFY behaves as Cryptolib expects of a real card: a wrong PIN is
    CKR_PIN_INCORRECT and one try less, which Cryptolib and the agent then see."""
    empty_cryptolib_cache()
    played = insert(examples["doctor-cps3"], BASE_PORT)
    index, _ = cryptolib_slot(played.reader)
    wrong = pkcs11_tool("--slot-index", index, "--login", "--pin", "9999", "-O")
    assert wrong.returncode != 0 and "CKR_PIN_INCORRECT" in wrong.stderr + wrong.stdout
    assert played.pin.tries_left == 2
    assert agent_pin(played.reader) == Pin(2, 3)
    empty_cryptolib_cache()
    assert "user PIN count low" in token_flags(cryptolib_slot(played.reader)[1])
    right = pkcs11_tool("--slot-index", index, "--login", "--pin", "1234", "-O")
    assert right.returncode == 0, right.stderr
    assert played.pin.tries_left == 3


# --- the CPS4, through Cryptolib's card-cps4.c: channel 1, ISO selects answered with an FCI ----

CPS4_ATRS = {
    "T=1": "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44",
    "T=0": "3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00",
}
# Cryptolib 5.2.2 names every CPS4 "IAS ECC": its CPS4 match sets the ChipDoc type only on a
# branch a card that answers never takes (docs/simulator.md). The token is told apart by what
# it was read through: the serial of EF.SN.ICC, and the PIN flags from VERIFY without data.
CRYPTOLIB_MODEL = "IAS ECC"


def cps4_profile(examples: dict[str, Path], atr: str, tries_left: int = 3) -> Profile:
    profile = load_profile(examples["nurse-cps4"])
    return replace(profile, atr=bytes.fromhex(atr), pin_tries_left=tries_left)


@needs_cryptolib
@pytest.mark.parametrize("atr", CPS4_ATRS.values(), ids=CPS4_ATRS.keys())
def test_official_cryptolib_sees_the_simulated_cps4_as_a_token(insert, examples, atr: str) -> None:
    empty_cryptolib_cache()
    played = insert(cps4_profile(examples, atr), BASE_PORT)
    index, slot = cryptolib_slot(played.reader)
    assert f"token model        : {CRYPTOLIB_MODEL}" in slot
    assert "serial num         : 10452278" in slot
    objects = pkcs11_tool("-O", "--slot-index", index)
    assert "label:      Certificat d'Authentification CPS" in objects.stdout
    assert "label:      Certificat de Signature CPS" in objects.stdout
    assert "CN=810100452278" in objects.stdout


@needs_cryptolib
@pytest.mark.parametrize("atr", CPS4_ATRS.values(), ids=CPS4_ATRS.keys())
@pytest.mark.parametrize(
    ("tries_left", "flags"),
    [
        (3, set()),
        (2, {"user PIN count low"}),
        (1, {"user PIN count low", "final user PIN try"}),
        (0, {"user PIN locked"}),
    ],
)
def test_official_cryptolib_and_the_agent_read_the_same_tries_of_a_cps4(
    insert, examples, atr: str, tries_left: int, flags: set[str]
) -> None:
    """Cryptolib asks a CPS4's PIN with VERIFY without data as it enumerates: its flags tell
    the simulated tries, the agent reads the same, and neither spends one."""
    empty_cryptolib_cache()
    played = insert(cps4_profile(examples, atr, tries_left), BASE_PORT)
    _, slot = cryptolib_slot(played.reader)
    assert "serial num         : 10452278" in slot
    assert token_flags(slot) & PIN_STATE_FLAGS == flags
    assert agent_pin(played.reader) == Pin(tries_left, 3)
    assert played.pin.tries_left == tries_left
