"""The Ansible roll-out, run for real against a Debian 12 root made with debootstrap.

The root stands for a workstation that is also the controller host: ``site.yml`` applies all
five roles to it through the ``community.general.chroot`` connection. The first run must
change it, the second must change nothing, and ``--check`` on the result must report nothing
to change. Then the root must hold pcscd, the agent in its virtualenv, its configuration and
enabled unit (which ``systemd-analyze verify`` accepts), and the agent run in that root must
report the Cryptolib CPS version the role laid down from a stand-in RPM built here.

A second copy of the root is the controller host of two controllers on PostgreSQL: the
``postgresql`` role, Mosquitto and two controller instances, with the same three runs. The
``postgresql`` role's database tasks need a running server, which a chroot has not: they run
against this machine's PostgreSQL on 127.0.0.1, on a throwaway database the controllers
installed in the root then open.

debootstrap takes a minute or two: its root is kept in ``CACHE`` and copied for each roll-out.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpsfleet.controller.pki.ca import COMMANDS_IDENTITY, certificate_info
from cpsfleet.controller.pki.mosquitto import acl

pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parent.parent
ANSIBLE = REPO / "ansible"
FIXTURES = Path(__file__).resolve().parent / "ansible"
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("CPSFLEET_TEST_CACHE", "/var/cache/cpsfleet-test"))
BOOKWORM = CACHE / "bookworm"
COMPLETE = ".cpsfleet-debootstrap-complete"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_INCLUDE = "python3,python3-venv,python3-apt,systemd,ca-certificates"
HOST_ID = "ws-test-01"
SITE = "Lyon Part-Dieu"
RECAP = r"^{host}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"


def _missing_tools() -> list[str]:
    wanted = ["debootstrap", "rpmbuild", "systemd-analyze", "chroot", "mount"]
    missing = [tool for tool in wanted if shutil.which(tool) is None]
    if not (VENV_BIN / "ansible-playbook").exists():
        missing.append("ansible-playbook in the project's virtualenv")
    return missing


if os.geteuid() != 0:
    pytest.skip(
        "the chroot roll-out needs root (debootstrap, chroot, mount)", allow_module_level=True
    )
if _missing_tools():
    pytest.skip(
        f"missing for the chroot roll-out: {', '.join(_missing_tools())} "
        "(scripts/setup.sh installs them)",
        allow_module_level=True,
    )


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def checked(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = run(command, **kwargs)
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


def bookworm_root() -> Path:
    """The cached minimal Debian 12 root, made by debootstrap on first use."""
    if (BOOKWORM / COMPLETE).exists():
        return BOOKWORM
    partial = CACHE / "bookworm.partial"
    shutil.rmtree(partial, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    done = run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={DEBOOTSTRAP_INCLUDE}",
            "bookworm",
            str(partial),
            MIRROR,
        ]
    )
    if done.returncode != 0:
        pytest.skip(f"debootstrap could not make a Debian 12 root: {done.stderr.strip()[-500:]}")
    (partial / COMPLETE).touch()
    partial.rename(BOOKWORM)
    return BOOKWORM


@dataclass
class Run:
    ok: int
    changed: int
    failed: int
    output: str


@dataclass
class Rollout:
    root: Path
    runs: dict[str, Run]


def playbook(
    inventory: Path | str, *extra: str, book: Path | str = "site.yml", host: str = "target"
) -> Run:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
    }
    done = run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(book), *extra],
        cwd=ANSIBLE,
        env=env,
        timeout=1500,
    )
    output = done.stdout + done.stderr
    recap = re.search(RECAP.format(host=re.escape(host)), done.stdout, re.M)
    assert recap, f"no play recap (exit {done.returncode}):\n{output[-6000:]}"
    ok, changed, unreachable, failed = (int(group) for group in recap.groups())
    assert done.returncode == 0 and not unreachable and not failed, output[-6000:]
    return Run(ok, changed, failed, output)


def make_pki(directory: Path) -> None:
    cli = [sys.executable, "-m", "cpsfleet", "pki"]
    checked([*cli, "init", "--dir", str(directory)])
    checked([*cli, "issue", "agent", HOST_ID, "--dir", str(directory)])
    checked([*cli, "issue", "controller", "--dir", str(directory)])
    checked([*cli, "issue", "controller", COMMANDS_IDENTITY, "--dir", str(directory)])
    checked([*cli, "issue", "broker", "broker", "--host", "broker.test", "--dir", str(directory)])


def make_wheelhouse() -> Path:
    """cpsfleet and its dependencies as wheels, built here: the target has no compiler."""
    wheelhouse = CACHE / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for old in wheelhouse.glob("cpsfleet-*.whl"):
        old.unlink()
    checked(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "-w",
            str(wheelhouse),
            "--find-links",
            str(wheelhouse),
            f"{REPO}[controller]",  # the controller's libraries too; the agent takes its own
        ]
    )
    return wheelhouse


def make_cryptolib_rpm(directory: Path) -> Path:
    checked(
        [
            "rpmbuild",
            "--quiet",
            "--define",
            f"_topdir {directory}",
            "-bb",
            str(FIXTURES / "cryptolib-standin.spec"),
        ]
    )
    return next((directory / "RPMS").rglob("CryptolibCPS-*.rpm"))


def write_inventory(path: Path, root: Path, pki: Path, wheelhouse: Path, rpm: Path) -> None:
    target = {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(root),
        "ansible_python_interpreter": "/usr/bin/python3",
        "cpsfleet_agent_broker": "mqtts://broker.test:8883",
        "cpsfleet_agent_site": SITE,
        "cpsfleet_agent_host_id": HOST_ID,
        "cpsfleet_agent_pki_dir": str(pki),
        "cpsfleet_agent_wheelhouse": str(wheelhouse),
        "cryptolib_package_rpm": str(rpm),
        "cpsfleet_controller_pki_dir": str(pki),
        "cpsfleet_controller_wheelhouse": str(wheelhouse),
        "cpsfleet_controller_alert_channels": ["json://alerts.test/hook"],
        "cpsfleet_controller_thresholds": {"expiring_warning_days": 45},
        "mosquitto_pki_dir": str(pki),
    }
    inventory = {
        "all": {
            "children": {
                "workstations": {"hosts": {"target": target}},
                "cpsfleet_controller": {"hosts": {"target": None}},
            }
        }
    }
    path.write_text(json.dumps(inventory, indent=2))


@dataclass
class Materials:
    pki: Path
    wheelhouse: Path
    work: Path


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory) -> Materials:
    """The certificates and the wheelhouse, made once for both roll-outs."""
    work = tmp_path_factory.mktemp("ansible-materials")
    make_pki(work / "pki")
    return Materials(work / "pki", make_wheelhouse(), work)


@contextmanager
def debian_root(work: Path) -> Iterator[Path]:
    """A copy of the cached root, its /proc mounted, where no package starts a daemon."""
    root = work / "root"
    checked(["cp", "-a", "--reflink=auto", str(bookworm_root()), str(root)])
    # Package scripts must not start daemons in the chroot: one more pcscd, Mosquitto or
    # PostgreSQL on this machine would clash with the test suite's own.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    checked(["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        yield root
    finally:
        run(["umount", "--lazy", str(root / "proc")])
        shutil.rmtree(work, ignore_errors=True)


def three_runs(inventory: Path) -> dict[str, Run]:
    runs = {"first": playbook(inventory)}
    runs["second"] = playbook(inventory)
    runs["check"] = playbook(inventory, "--check")
    return runs


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory, materials: Materials) -> Iterator[Rollout]:
    work = tmp_path_factory.mktemp("ansible-chroot")
    with debian_root(work) as root:
        inventory = work / "inventory.json"
        write_inventory(
            inventory,
            root,
            materials.pki,
            materials.wheelhouse,
            make_cryptolib_rpm(work / "rpmbuild"),
        )
        yield Rollout(root, three_runs(inventory))


def chroot(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return run(["chroot", str(root), *command], timeout=120)


def test_first_run_changes_the_target(rollout: Rollout) -> None:
    assert rollout.runs["first"].changed > 10


def test_second_run_changes_nothing(rollout: Rollout) -> None:
    second = rollout.runs["second"]
    assert second.changed == 0, second.output[-6000:]


def test_check_mode_on_the_result_changes_nothing(rollout: Rollout) -> None:
    check = rollout.runs["check"]
    assert check.changed == 0, check.output[-6000:]


def test_pcscd_is_installed_and_enabled(rollout: Rollout) -> None:
    assert (rollout.root / "usr/sbin/pcscd").exists()
    assert list((rollout.root / "usr/lib/pcsc/drivers").glob("ifd-ccid.bundle"))
    assert (
        chroot(rollout.root, "systemctl", "is-enabled", "pcscd.socket").stdout.strip() == "enabled"
    )


def test_agent_runs_from_its_virtualenv(rollout: Rollout) -> None:
    done = chroot(rollout.root, "/opt/cpsfleet/agent/bin/cpsfleet", "agent", "--help")
    assert done.returncode == 0, done.stderr
    assert "scan" in done.stdout


CONTROLLER_ONLY = ("fastapi", "uvicorn", "jinja2", "apprise", "jsonschema_rs", "prometheus_client")
CONTROLLER_ONLY += ("tabulate", "sqlite_utils", "jsonschema")


def test_the_agent_has_the_agents_libraries_only(rollout: Rollout) -> None:
    """A workstation installs the bare package: none of the controller's libraries."""
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    python = "/opt/cpsfleet/agent/bin/python"
    done = chroot(rollout.root, python, "-c", probe, *CONTROLLER_ONLY, "paho", "smartcard")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['paho', 'smartcard']"
    refused = chroot(rollout.root, "/opt/cpsfleet/agent/bin/cpsfleet", "controller", "hosts")
    assert refused.returncode == 2 and "pip install 'cpsfleet[controller]'" in refused.stderr


def test_agent_configuration_is_written(rollout: Rollout) -> None:
    config_file = rollout.root / "etc/cpsfleet/agent.toml"
    config = tomllib.loads(config_file.read_text())
    assert config["broker"] == "mqtts://broker.test:8883"
    assert config["site"] == SITE
    assert config["host_id"] == HOST_ID
    assert config["tls_cert"] == "/etc/cpsfleet/agent.pem"
    assert oct(config_file.stat().st_mode & 0o777) == "0o640"
    key = rollout.root / "etc/cpsfleet/agent.key"
    assert oct(key.stat().st_mode & 0o777) == "0o640"
    assert "PRIVATE KEY" in key.read_text()


def test_agent_unit_is_enabled_and_verified(rollout: Rollout) -> None:
    enabled = chroot(rollout.root, "systemctl", "is-enabled", "cpsfleet-agent.service")
    assert enabled.stdout.strip() == "enabled"
    verify = chroot(
        rollout.root, "systemd-analyze", "verify", "/etc/systemd/system/cpsfleet-agent.service"
    )
    assert verify.returncode == 0, verify.stderr
    assert "cpsfleet-agent.service" not in verify.stderr, verify.stderr
    unit = (rollout.root / "etc/systemd/system/cpsfleet-agent.service").read_text()
    assert "User=cpsfleet" in unit
    assert "ProtectSystem=strict" in unit


def test_agent_reports_the_cryptolib_the_role_installed(rollout: Rollout) -> None:
    done = chroot(rollout.root, "/opt/cpsfleet/agent/bin/cpsfleet", "agent", "scan", "--json")
    status = json.loads(done.stdout)
    cryptolib = status["cryptolib"]
    assert cryptolib["installed"] is True, cryptolib
    assert cryptolib["version"] == "5.2.2", cryptolib
    assert cryptolib["pkcs11_library_present"] is True, cryptolib
    assert status["host"]["site"] == SITE


def test_controller_and_broker_are_configured(rollout: Rollout) -> None:
    root = rollout.root
    settings = tomllib.loads((root / "etc/cpsfleet/controller.toml").read_text())
    assert settings["alerts"]["channels"] == ["json://alerts.test/hook"]
    assert settings["thresholds"] == {"expiring_warning_days": 45}
    assert (
        chroot(root, "systemctl", "is-enabled", "cpsfleet-controller.service").stdout.strip()
        == "enabled"
    )
    verify = chroot(
        root, "systemd-analyze", "verify", "/etc/systemd/system/cpsfleet-controller.service"
    )
    assert verify.returncode == 0, verify.stderr
    assert "cpsfleet-controller.service" not in verify.stderr, verify.stderr
    assert chroot(root, "systemctl", "is-enabled", "mosquitto.service").stdout.strip() == "enabled"


def test_controller_certificates_are_installed_for_its_group(rollout: Rollout) -> None:
    config_dir = rollout.root / "etc/cpsfleet"
    group = next(
        line.split(":")[2]
        for line in (rollout.root / "etc/group").read_text().splitlines()
        if line.startswith("cpsfleet:")
    )
    modes = {
        "controller.pem": "0o644",
        "controller.key": "0o640",
        "commands.pem": "0o644",
        "commands.key": "0o640",
    }
    for name, mode in modes.items():
        stat = (config_dir / name).stat()
        assert (stat.st_uid, stat.st_gid, oct(stat.st_mode & 0o777)) == (0, int(group), mode), name
    assert "PRIVATE KEY" in (config_dir / "commands.key").read_text()


def test_controller_sends_commands_under_their_own_certificate(rollout: Rollout) -> None:
    settings = tomllib.loads((rollout.root / "etc/cpsfleet/controller.toml").read_text())
    assert settings["tls_cert"] == "/etc/cpsfleet/controller.pem"
    assert settings["command_tls_cert"] == "/etc/cpsfleet/commands.pem"
    assert settings["command_tls_key"] == "/etc/cpsfleet/commands.key"
    commands = certificate_info(rollout.root / "etc/cpsfleet/commands.pem")
    assert (commands["name"], commands["role"]) == (COMMANDS_IDENTITY, "controller")


def test_installed_controller_accepts_its_configuration(rollout: Rollout) -> None:
    """The controller's own settings loader, run in the root as its user, takes the file:
    it refuses a command certificate or key that is missing or given alone."""
    load = (
        "from pathlib import Path; from cpsfleet.controller.settings import load_settings; "
        "s = load_settings(Path('/etc/cpsfleet/controller.toml'), {}); "
        "print(s.command_tls.cert, Path(s.command_tls.key).read_bytes()[:5])"
    )
    done = chroot(
        rollout.root,
        "runuser",
        "-u",
        "cpsfleet",
        "--",
        "/opt/cpsfleet/controller/bin/python",
        "-c",
        load,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/etc/cpsfleet/commands.pem", "b'-----'"]


def test_broker_acl_is_the_projects(rollout: Rollout) -> None:
    def rules(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    written = (rollout.root / "etc/mosquitto/cpsfleet.acl").read_text()
    assert rules(written) == rules(acl())


# Two controllers on PostgreSQL. A chroot runs no server: there the postgresql role installs,
# configures and enables PostgreSQL with postgresql_db_manage false, and its database tasks
# run against this machine's PostgreSQL on 127.0.0.1 (trust authentication), making a
# throwaway role and database that the controllers installed in the chroot then reach.

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
INSTANCES = ["ctl-1", "ctl-2"]


@dataclass
class PgDatabase:
    name: str
    user: str
    password: str
    runs: dict[str, Run]

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:5432/{self.name}"


@pytest.fixture(scope="module")
def pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgDatabase]:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 for the role's database tasks: {error}")
    suffix = secrets.token_hex(4)
    database = PgDatabase(
        f"cpsfleet_ansible_test_{suffix}",
        f"cpsfleet_ansible_test_{suffix}",
        f"pw-{secrets.token_hex(12)}",
        {},
    )
    variables = tmp_path_factory.mktemp("ansible-pg") / "vars.json"
    variables.write_text(
        json.dumps(
            {
                "postgresql_db_name": database.name,
                "postgresql_db_user": database.user,
                "postgresql_db_password": database.password,
                "postgresql_login_host": "127.0.0.1",
                "postgresql_login_user": "postgres",
                "ansible_python_interpreter": sys.executable,
            }
        )
    )
    book = FIXTURES / "postgresql-database.yml"

    def apply(*extra: str) -> Run:
        return playbook("localhost,", "-e", f"@{variables}", *extra, book=book, host="localhost")

    try:
        database.runs["first"] = apply()
        database.runs["second"] = apply()
        database.runs["check"] = apply("--check")
        yield database
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{database.user}"')


@pytest.fixture(scope="module")
def pg_rollout(
    tmp_path_factory: pytest.TempPathFactory, materials: Materials, pg_database: PgDatabase
) -> Iterator[Rollout]:
    work = tmp_path_factory.mktemp("ansible-chroot-pg")
    with debian_root(work) as root:
        target = {
            "ansible_connection": "community.general.chroot",
            "ansible_host": str(root),
            "ansible_python_interpreter": "/usr/bin/python3",
            "postgresql_db_password": pg_database.password,
            "postgresql_db_manage": False,
            "postgresql_listen_addresses": ["localhost", "192.0.2.10"],
            "postgresql_clients": ["192.0.2.11/32"],
            "cpsfleet_controller_pki_dir": str(materials.pki),
            "cpsfleet_controller_wheelhouse": str(materials.wheelhouse),
            "cpsfleet_controller_database": pg_database.url,
            "cpsfleet_controller_instances": INSTANCES,
            "mosquitto_pki_dir": str(materials.pki),
        }
        inventory = work / "inventory.json"
        inventory.write_text(
            json.dumps(
                {
                    "all": {
                        "children": {
                            "cpsfleet_postgresql": {"hosts": {"target": target}},
                            "cpsfleet_controller": {"hosts": {"target": None}},
                        }
                    }
                }
            )
        )
        yield Rollout(root, three_runs(inventory))


def test_postgresql_role_makes_the_database_once(pg_database: PgDatabase) -> None:
    runs = pg_database.runs
    assert runs["first"].changed == 2, runs["first"].output[-4000:]
    assert runs["second"].changed == 0, runs["second"].output[-4000:]
    assert runs["check"].changed == 0, runs["check"].output[-4000:]
    for done in runs.values():
        assert pg_database.password not in done.output


def test_postgresql_database_has_the_c_collation_and_its_owner(pg_database: PgDatabase) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN) as admin:
        row = admin.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, "
            "pg_get_userbyid(datdba), rolpassword LIKE 'SCRAM-SHA-256$%%' "
            "FROM pg_database, pg_authid WHERE datname = %s AND rolname = %s",
            (pg_database.name, pg_database.user),
        ).fetchone()
    assert row == ("UTF8", "C", "C", pg_database.user, True)


def test_postgresql_is_installed_configured_and_enabled(pg_rollout: Rollout) -> None:
    root = pg_rollout.root
    assert list(root.glob("usr/lib/postgresql/*/bin/postgres"))
    (conf_dir,) = root.glob("etc/postgresql/*/main")
    listen = (conf_dir / "conf.d/cpsfleet.conf").read_text()
    assert "listen_addresses = 'localhost,192.0.2.10'" in listen
    hba = (conf_dir / "pg_hba.conf").read_text()
    assert "hostssl cpsfleet cpsfleet 192.0.2.11/32 scram-sha-256" in hba
    enabled = chroot(root, "systemctl", "is-enabled", "postgresql.service")
    assert enabled.stdout.strip() == "enabled"


def test_two_controllers_roll_out_idempotently(
    pg_rollout: Rollout, pg_database: PgDatabase
) -> None:
    runs = pg_rollout.runs
    assert runs["first"].changed > 10
    assert runs["second"].changed == 0, runs["second"].output[-6000:]
    assert runs["check"].changed == 0, runs["check"].output[-6000:]
    for done in runs.values():
        assert pg_database.password not in done.output


def test_two_controller_units_are_enabled_and_verified(pg_rollout: Rollout) -> None:
    root = pg_rollout.root
    template = root / "etc/systemd/system/cpsfleet-controller@.service"
    assert "--config /etc/cpsfleet/controller-%i.toml" in template.read_text()
    assert "ReadWritePaths=/var/lib/cpsfleet" in template.read_text()
    assert not (root / "etc/systemd/system/cpsfleet-controller.service").exists()
    for name in INSTANCES:
        unit = f"cpsfleet-controller@{name}.service"
        assert chroot(root, "systemctl", "is-enabled", unit).stdout.strip() == "enabled"
        verify = chroot(root, "systemd-analyze", "verify", unit)
        assert verify.returncode == 0, verify.stderr
        assert "cpsfleet-controller@" not in verify.stderr, verify.stderr


LOAD = (
    "import json, sys; from pathlib import Path; "
    "from cpsfleet.controller.settings import load_settings; "
    "s = load_settings(Path(sys.argv[1]), {}); "
    "print(json.dumps([s.database, s.share_group, s.node_name, s.client_id, "
    "s.dashboard.enabled, s.dashboard.listen]))"
)


def test_each_controller_has_its_name_and_shares_the_group_and_database(
    pg_rollout: Rollout, pg_database: PgDatabase
) -> None:
    """The installed controller's own loader, run as its user, reads each instance's file."""
    root = pg_rollout.root
    loaded = {}
    for name in [*INSTANCES, None]:
        config = (
            f"/etc/cpsfleet/controller-{name}.toml" if name else "/etc/cpsfleet/controller.toml"
        )
        stat = (root / config.lstrip("/")).stat()
        assert (stat.st_uid, oct(stat.st_mode & 0o777)) == (0, "0o640"), config
        python = "/opt/cpsfleet/controller/bin/python"
        done = chroot(root, "runuser", "-u", "cpsfleet", "--", python, "-c", LOAD, config)
        assert done.returncode == 0, done.stderr
        loaded[name] = json.loads(done.stdout)
    one, two, cli = loaded["ctl-1"], loaded["ctl-2"], loaded[None]
    assert one[:2] == two[:2] == cli[:2] == [pg_database.url, "cpsfleet-controllers"]
    assert (one[2], two[2], cli[2]) == ("ctl-1", "ctl-2", None)
    assert one[3] != two[3]
    # One dashboard: the first instance's, on the configured port.
    assert (one[4], two[4]) == (True, False)
    assert one[5] == "127.0.0.1:8080"


OPEN = (
    "import sys; from pathlib import Path; "
    "from cpsfleet.controller.settings import load_settings; "
    "from cpsfleet.controller.db.store import Store; "
    "Store(load_settings(Path(sys.argv[1]), {}).database).close(); print('ready')"
)


def test_installed_controllers_reach_the_postgresql_database(
    pg_rollout: Rollout, pg_database: PgDatabase
) -> None:
    """Both instances, as their user with the installed psycopg and their own files, open the
    database the postgresql role made at the same time, as two controllers starting together
    do (the schema made once, under the advisory lock); then the command line reads it."""
    root = pg_rollout.root
    python = "/opt/cpsfleet/controller/bin/python"
    starts = [
        subprocess.Popen(
            ["chroot", str(root), "runuser", "-u", "cpsfleet", "--", python, "-c", OPEN, config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for config in (f"/etc/cpsfleet/controller-{name}.toml" for name in INSTANCES)
    ]
    for start in starts:
        out, err = start.communicate(timeout=120)
        assert (start.returncode, out.strip()) == (0, "ready"), err
    for name in INSTANCES:
        done = chroot(
            root,
            "runuser",
            "-u",
            "cpsfleet",
            "--",
            "/opt/cpsfleet/controller/bin/cpsfleet",
            "controller",
            "hosts",
            "--json",
            "--config",
            f"/etc/cpsfleet/controller-{name}.toml",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    "variables",
    [
        {"cpsfleet_controller_instances": ["ctl-1", "ctl-2"]},
        {"cpsfleet_controller_share_group": "cpsfleet-controllers"},
        {
            "cpsfleet_controller_database": "postgresql://u:p@db.test/cpsfleet",
            "cpsfleet_controller_instances": ["ctl-1", "ctl-1"],
        },
        {
            "cpsfleet_controller_database": "postgresql://u:p@db.test/cpsfleet",
            "cpsfleet_controller_instances": ["ctl-1", "ctl 2"],
        },
    ],
    ids=["instances-on-sqlite", "share-group-on-sqlite", "twice-the-same-name", "bad-name"],
)
def test_controller_role_refuses_controllers_that_cannot_share(
    tmp_path: Path, variables: dict[str, object]
) -> None:
    done = preflight(tmp_path, variables)
    assert done.returncode == 2, done.stdout[-3000:]
    assert "share a PostgreSQL database" in done.stdout, done.stdout[-3000:]


def test_controller_role_accepts_two_controllers_on_postgresql(tmp_path: Path) -> None:
    variables = {
        "cpsfleet_controller_database": "postgresql://u:p@db.test/cpsfleet",
        "cpsfleet_controller_instances": ["ctl-1", "ctl-2"],
    }
    done = preflight(tmp_path, variables)
    assert done.returncode == 0, done.stdout[-3000:]


def preflight(tmp_path: Path, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({**variables, "ansible_python_interpreter": sys.executable}))
    return run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"@{extra}",
            str(FIXTURES / "controller-preflight.yml"),
        ],
        cwd=ANSIBLE,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")},
        timeout=300,
    )
