"""``cpsfleet sim`` as a user runs it: readers, cards, certificates, examples."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from cpsfleet.agent.certificates import read_certificate
from tests.conftest import BASE_PORT, CLI, reader_state, run_cli, wait_for


def test_readers_refuses_while_another_pcscd_runs(readers) -> None:
    pid = readers.process.pid  # the session's own sim readers
    result = run_cli("sim", "readers", "--count", "2", "--base-port", "40000")
    assert result.returncode == 1
    assert "another pcscd is running" in result.stderr
    assert readers.process.poll() is None and readers.process.pid == pid


def test_readers_rejects_an_impossible_count(readers) -> None:
    result = run_cli("sim", "readers", "--count", "0")
    assert result.returncode == 1 and "--count must be between 1 and 16" in result.stderr


def test_card_command_inserts_until_stopped(readers, examples) -> None:
    port = BASE_PORT + 2
    process = subprocess.Popen(
        [*CLI, "sim", "card", str(examples["nurse-cps4"]), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: reader_state(readers.name(port)) == "card_present", what="card inserted")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        wait_for(lambda: reader_state(readers.name(port)) == "empty", what="card removed")
    finally:
        process.kill()
        process.wait()


def test_card_command_explains_a_bad_profile(tmp_path: Path) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text('kind = "cps9"\n')
    result = run_cli("sim", "card", str(profile))
    assert result.returncode == 2
    assert (
        f"{profile}: kind must be one of cps3, cps3-contactless, cps4, vitale, generic"
        in result.stderr
    )


def test_certs_issues_a_holders_certificates(tmp_path: Path) -> None:
    result = run_cli(
        "sim",
        "certs",
        "--out",
        str(tmp_path),
        "--id-nat",
        "810002813839",
        "--surname",
        "DONNAT-GADY",
        "--given-name",
        "ISABELLE",
        "--profession",
        "Médecin",
        "--not-before",
        "2025-01-01",
        "--not-after",
        "2028-01-01",
    )
    assert result.returncode == 0, result.stderr
    from datetime import UTC, datetime

    cert = read_certificate(
        (tmp_path / "auth.pem").read_bytes(), label=None, now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert (cert.id_nat, cert.surname, cert.not_after) == (
        "810002813839",
        "DONNAT-GADY",
        "2028-01-01T00:00:00Z",
    )
    assert cert.issuer_cn == "AC IGC-SANTE FORT PERSONNES" and cert.role == "authentication"


def test_certs_refuses_dates_in_the_wrong_order(tmp_path: Path) -> None:
    result = run_cli(
        "sim",
        "certs",
        "--out",
        str(tmp_path),
        "--id-nat",
        "810002813839",
        "--surname",
        "A",
        "--given-name",
        "B",
        "--profession",
        "Médecin",
        "--not-before",
        "2028-01-01",
        "--not-after",
        "2025-01-01",
    )
    assert result.returncode == 2 and "error:" in result.stderr


def test_examples_writes_playable_profiles(tmp_path: Path) -> None:
    result = run_cli("sim", "examples", str(tmp_path))
    assert result.returncode == 0
    names = sorted(Path(line).stem for line in result.stdout.split())
    assert names == ["doctor-cps3", "expired-cps3", "nurse-cps4", "vitale"]
