"""``cpsfleet --version``: the installed version, from the package's metadata, read quickly."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

from cpsfleet.cli import build
from tests.conftest import run_cli

# What ``--version`` must not load: the sides' commands and the controller's libraries.
HEAVY = ("cpsfleet.controller", "cpsfleet.agent", "cpsfleet.sim", "fastapi", "sqlite_utils")
LOADED = f"""
import sys
from cpsfleet import cli
sys.argv = ["cpsfleet", "--version"]
try:
    cli.main()
except SystemExit as end:
    assert end.code in (0, None), end.code
print(sorted(name for name in sys.modules if name.startswith({HEAVY!r})))
"""


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cpsfleet {version('cpsfleet')}\n"


def test_version_loads_neither_side() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines()[-1] == "[]"


def test_version_is_in_the_help_and_wins_over_a_command() -> None:
    runner = CliRunner()
    assert "--version" in runner.invoke(build(), ["--help"]).stdout
    result = runner.invoke(build(), ["--version", "controller"])
    assert result.exit_code == 0 and result.stdout == f"cpsfleet {version('cpsfleet')}\n"
