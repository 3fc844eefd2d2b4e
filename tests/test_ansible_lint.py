"""The Ansible roles meet the bar of the best roles: ansible-lint's production profile passes
with no finding, and each role's ``meta/argument_specs.yml`` says exactly what its
``defaults/main.yml`` sets (a required option has no default; every other one has the same
default in both)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.controller.pki.ca import COMMANDS_IDENTITY

yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core (scripts/setup.sh)")

ANSIBLE = Path(__file__).resolve().parent.parent / "ansible"
ROLES = sorted(path.name for path in (ANSIBLE / "roles").iterdir() if path.is_dir())
VENV_BIN = Path(sys.executable).parent
SERVICE_ROLES = [role for role in ROLES if role != "cryptolib"]  # cryptolib installs, runs nothing


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_six_roles_are_there() -> None:
    assert ROLES == [
        "cpsfleet_agent",
        "cpsfleet_controller",
        "cryptolib",
        "mosquitto",
        "pcsc",
        "postgresql",
    ]


@pytest.mark.timeout(300)
def test_ansible_lint_production_profile_finds_nothing() -> None:
    lint = VENV_BIN / "ansible-lint"
    if not lint.exists() and shutil.which("ansible-lint") is None:
        pytest.skip("ansible-lint is not installed (scripts/setup.sh installs it)")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(lint) if lint.exists() else "ansible-lint", "--profile", "production", "--strict"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failure(s), 0 warning(s)" in done.stderr + done.stdout


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role: str) -> None:
    defaults = load(ANSIBLE / "roles" / role / "defaults/main.yml") or {}
    options = load(ANSIBLE / "roles" / role / "meta/argument_specs.yml")["argument_specs"]["main"][
        "options"
    ]
    required = {name for name, spec in options.items() if spec.get("required")}
    assert not required & defaults.keys(), (
        f"required options with a default: {required & defaults.keys()}"
    )
    assert sorted(defaults) == sorted(options.keys() - required), (
        f"in defaults only: {sorted(defaults.keys() - options.keys())}; "
        f"in argument_specs only: {sorted(options.keys() - required - defaults.keys())}"
    )
    for name, value in defaults.items():
        assert options[name].get("default") == value, (
            f"{name}: {value!r} vs {options[name].get('default')!r}"
        )


@pytest.mark.parametrize("role", ROLES)
def test_role_variables_carry_the_role_prefix(role: str) -> None:
    defaults = load(ANSIBLE / "roles" / role / "defaults/main.yml") or {}
    options = load(ANSIBLE / "roles" / role / "meta/argument_specs.yml")["argument_specs"]["main"][
        "options"
    ]
    strays = [name for name in [*defaults, *options] if not name.startswith(f"{role}_")]
    assert not strays, f"variables of role {role} without its prefix: {strays}"


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_services_have_the_manage_state_enabled_triple(role: str) -> None:
    defaults = load(ANSIBLE / "roles" / role / "defaults/main.yml") or {}
    for suffix in ("service_manage", "service_enabled", "service_state"):
        assert f"{role}_{suffix}" in defaults


def test_controller_and_broker_roles_name_the_same_commands_identity() -> None:
    """The certificate the controller role installs for commands must carry the CN that the
    broker's ACL lets publish commands: both default to the project's own name for it."""
    controller = load(ANSIBLE / "roles/cpsfleet_controller/defaults/main.yml")
    broker = load(ANSIBLE / "roles/mosquitto/defaults/main.yml")
    assert controller["cpsfleet_controller_commands_pki_name"] == COMMANDS_IDENTITY
    assert broker["mosquitto_commands_identity"] == COMMANDS_IDENTITY


@pytest.mark.timeout(120)
def test_site_playbook_passes_syntax_check_with_the_example_inventory() -> None:
    playbook = VENV_BIN / "ansible-playbook"
    if not playbook.exists():
        pytest.skip("ansible-core is not installed (scripts/setup.sh installs it)")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(
        [str(playbook), "--syntax-check", "-i", "inventory.example.yml", "site.yml"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
