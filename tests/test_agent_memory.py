"""The agent daemon, as the service manager starts it, loads only what it runs.

Its RSS is a benchmark figure (``python -m tests.bench_agent``), not asserted here; what is
checked is what decides most of it: the modules the daemon process imports. Typer and
pydantic (the command line), the other sides and JSON Schema libraries stay out; the
command line still goes to Typer for anything but the service's own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cpsfleet.agent.service import RunCommand, parse_run
from tests.bench_agent import ENTRIES, send_rescan, unit_environment
from tests.conftest import BASE_PORT, Broker, PlayedCard, run_cli, terminate, wait_for

# Never in the daemon's process: the command-line library and what it brings, the other
# sides, the other OSes' Cryptolib detectors, and JSON Schema libraries (commands are
# checked by cpsfleet.schemas.subset).
UNWANTED = (
    "typer",
    "click",
    "rich",
    "pydantic",
    "cpsfleet.controller",
    "cpsfleet.sim",
    "cpsfleet.agent.middleware.macos",
    "cpsfleet.agent.middleware.windows",
    "jsonschema",
    "jsonschema_rs",
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run"], RunCommand(None)),
        (
            ["run", "--config", "/etc/cpsfleet/agent.toml"],
            RunCommand(Path("/etc/cpsfleet/agent.toml")),
        ),
        (["run", "--config=a b.toml"], RunCommand(Path("a b.toml"))),
        (["run", "--help"], None),
        (["run", "--config"], None),
        (["run", "--config", "--help"], None),
        (["run", "--config="], None),
        (["run", "--config", "a.toml", "--config", "b.toml"], None),
        (["run", "extra"], None),
        (["scan"], None),
        ([], None),
    ],
)
def test_only_the_service_command_line_bypasses_typer(
    args: list[str], expected: RunCommand | None
) -> None:
    assert parse_run(args) == expected


def test_help_and_mistakes_are_still_typers() -> None:
    shown = run_cli("agent", "run", "--help")
    assert shown.returncode == 0 and "--config" in shown.stdout, shown.stderr
    wrong = run_cli("agent", "run", "--configuration", "x.toml")
    assert wrong.returncode == 2 and "No such option" in wrong.stderr, wrong.stderr


def test_a_configuration_mistake_exits_2_before_the_daemon_starts(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = run_cli("agent", "run", "--config", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"error: {missing}: no such configuration file\n"


def imported_modules(log: str) -> set[str]:
    """The modules named by ``PYTHONPROFILEIMPORTTIME``'s lines ("import time: ... | name")."""
    return {
        line.rpartition("|")[2].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.pcsc
def test_the_deployed_daemon_loads_none_of_the_unwanted_modules(
    tmp_path: Path,
    broker: Broker,
    insert: Callable[..., PlayedCard],
    examples: dict[str, Path],
) -> None:
    insert(examples["doctor-cps3"], BASE_PORT)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'broker = "{broker.url}"\nhost_id = "ws-memory"\ninterval = 3600\nsplay = 0\n'
        f'state_dir = "{tmp_path / "state"}"\n'
    )
    log = tmp_path / "agent.log"
    env = {**os.environ, **unit_environment(), "PYTHONPROFILEIMPORTTIME": "1"}
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [*ENTRIES["cpsfleet"], "run", "--config", str(config)],
            stdout=output,
            stderr=output,
            env=env,
        )
    try:
        wait_for(lambda: "connected to" in log.read_text(), timeout=30, what="the connection")
        wait_for(lambda: "status published" in log.read_text(), timeout=30, what="a status")
        # A command is checked against its schema without a JSON Schema library.
        send_rescan(broker, "ws-memory", "tests")
        wait_for(lambda: "answering" in log.read_text(), timeout=30, what="the command's answer")
    finally:
        terminate(process, timeout=20)
    modules = imported_modules(log.read_text())
    assert {"apscheduler.schedulers.background", "cryptography.x509", "smartcard.scard"} <= modules
    loaded = sorted(module for module in modules if unwanted(module))
    assert not loaded, f"the daemon loaded {loaded}"


def unwanted(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in UNWANTED)
