"""Shared fixtures: a real pcscd with vpcd readers, simulated cards, example certificates.

The session starts ``cpsfleet sim readers`` once (one pcscd per machine) and
stops it at the end; cards are played in threads of the test process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpsfleet import i18n
from cpsfleet.agent.pcsc import PcscContext, PcscError
from cpsfleet.controller.pki import ca as pki
from cpsfleet.controller.pki import mosquitto
from cpsfleet.controller.pki.ca import CONTROLLER_IDENTITY
from cpsfleet.sim import vpcd
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.examples import write_examples
from cpsfleet.sim.faults import FaultyCard
from cpsfleet.sim.iso import IsoCard
from cpsfleet.sim.pin import PinCounter
from cpsfleet.sim.profile import Profile, load_profile
from cpsfleet.sim.readers import running_pcscd
from tests.postgres import Postgres, PostgresUnreachable

# The fast tier (``pytest -m "not slow"``) is the pure logic: a test that starts a service
# (pcscd, Mosquitto, a browser, a chroot) through one of these fixtures, or is in one of these
# modules, is "slow" and runs in the full suite only.
SERVICE_FIXTURES = frozenset(
    {"readers", "insert", "broker", "own_broker", "mtls_broker", "services", "webhook"}
    | {"read_only_broker"}
)
# Modules that start their services themselves, and the long searches of hypothesis.
SLOW_MODULES = frozenset(
    {"test_ansible_chroot", "test_ansible_lint", "test_bench", "test_dashboard_browser"}
    | {"test_agent_memory", "test_agent_footprint", "test_outside_readers", "test_sim_storm"}
    | {"test_fuzz_ingest", "test_fuzz_card", "test_due"}
)
# A test on PostgreSQL is slow too: it asks for the server (the postgres fixture) or is the
# PostgreSQL twin of a parametrized fixture (its SQLite twin stays in the fast tier). One that
# is slow for no other reason is also marked "postgresql": scripts/lowest.sh runs it with the
# fast tier, so that psycopg's floor is tried on a real server.
POSTGRESQL_FIXTURES = frozenset({"postgres"})
POSTGRESQL_PARAMS = frozenset({("database", "postgresql"), ("module_database", "postgresql")})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgresql: uses PostgreSQL and no other service (set by tests/conftest.py); "
        "scripts/lowest.sh runs it with the fast tier",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        postgresql = bool(fixtures & POSTGRESQL_FIXTURES) or any(
            params.get(name) == value for name, value in POSTGRESQL_PARAMS
        )
        slow_otherwise = bool(
            fixtures & SERVICE_FIXTURES
            or module in SLOW_MODULES
            or item.get_closest_marker("pcsc")
            or item.get_closest_marker("slow")
        )
        if postgresql or slow_otherwise:
            item.add_marker(pytest.mark.slow)
        if postgresql and not slow_otherwise:
            item.add_marker(pytest.mark.postgresql)


# The suite reads what cpsfleet prints in English, the code's own words: French (the default
# for people) is tests/test_i18n.py's. Commands run as subprocesses inherit it. (Not through
# LANG: en_US.UTF-8 may not be installed, and Ansible refuses to start under it then.)
os.environ["CPSFLEET_LANG"] = "en"


@pytest.fixture(autouse=True)
def suite_speaks_english() -> Iterator[None]:
    """Each test starts in English, whatever language an earlier one chose in-process."""
    with i18n.use("en"):
        yield


READER_COUNT = 4
BASE_PORT = 35963
CLI = [sys.executable, "-m", "cpsfleet"]


def reader_state(reader: str) -> str | None:
    try:
        with PcscContext() as context:
            names = context.readers()
            return context.statuses([reader])[0].state if reader in names else None
    except PcscError:
        return None


def wait_for(
    predicate: Callable[[], bool], timeout: float = 10, what: str = "condition", step: float = 0.05
) -> None:
    """Poll ``predicate`` every ``step`` seconds until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Readers:
    """The session's ``cpsfleet sim readers`` process and the readers it announced."""

    names: dict[int, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None

    def start(self, count: int = READER_COUNT) -> None:
        """Start pcscd with ``count`` readers (fewer than the session's: readers unplugged)."""
        self.process = subprocess.Popen(
            [*CLI, "sim", "readers", "--count", str(count), "--base-port", str(BASE_PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.names = {}
        for _ in range(count + 1):
            line = self.process.stdout.readline()
            if "\tport " in line:
                name, port = line.rstrip("\n").split("\tport ")
                self.names[int(port)] = name
        if len(self.names) != count:
            self.process.kill()
            raise RuntimeError(f"sim readers did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        self.process = None
        return code

    def name(self, port: int) -> str:
        return self.names[port]


@pytest.fixture(scope="session")
def readers() -> Iterator[Readers]:
    other = running_pcscd()
    if other is not None:
        pytest.fail(f"a pcscd not started by the tests is running (PID {other}); stop it first")
    started = Readers()
    started.start()
    yield started
    if started.process is not None:
        assert started.stop() == 0


@dataclass
class PlayedCard:
    port: int
    reader: str
    stop: threading.Event
    thread: threading.Thread
    card: IsoCard | FaultyCard  # what the card holds now (its PIN's tries, say)

    @property
    def pin(self) -> PinCounter:
        """The simulated card's PIN and its tries left, as the card keeps them."""
        card = self.card.card if isinstance(self.card, FaultyCard) else self.card
        assert card.pin is not None, "this card kind has no PIN"
        return card.pin

    def remove(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        wait_for(lambda: reader_state(self.reader) == "empty", what=f"{self.reader} empty")


@pytest.fixture
def insert(readers: Readers) -> Iterator[Callable[..., PlayedCard]]:
    """Insert a card (Profile or profile path) into the reader at a port, until the test ends."""
    played: list[PlayedCard] = []

    def insert_card(profile: Profile | Path, port: int = BASE_PORT) -> PlayedCard:
        card = build_card(profile if isinstance(profile, Profile) else load_profile(profile))
        stop = threading.Event()
        thread = threading.Thread(
            target=vpcd.play, args=(card, "127.0.0.1", port, stop), daemon=True
        )
        thread.start()
        reader = readers.name(port)
        card_played = PlayedCard(port, reader, stop, thread, card)
        played.append(card_played)  # tests may insert from several threads
        wait_for(lambda: reader_state(reader) == "card_present", what=f"a card in {reader}")
        return card_played

    yield insert_card
    for card in played:
        if not card.stop.is_set():
            card.remove()


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example profiles (with freshly issued certificates), by name."""
    profiles = write_examples(tmp_path_factory.mktemp("examples"))
    return {path.stem: path for path in profiles}


def self_signed_der(common_name: str) -> bytes:
    """A DER certificate of about 660 bytes: several READ BINARY chunks on every card kind."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    alt_names = [x509.DNSName(f"card{n}.cpsfleet.test") for n in range(12)]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2028, 1, 1, tzinfo=UTC))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="session")
def auth_der() -> bytes:
    return self_signed_der("auth 810002813839")


@pytest.fixture(scope="session")
def sign_der() -> bytes:
    return self_signed_der("sign 810002813839")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def descendants(pid: int) -> list[int]:
    """The processes a process started, and theirs, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *descendants(child)]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    """A Mosquitto of the tests' own on a loopback port; it can be stopped and started again.

    Its persistent sessions may queue many messages while a controller restarts."""

    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        conf = self.home / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {self.home}/\n"
            "max_queued_messages 100000\nmax_inflight_messages 100\n"
            f"log_dest file {self.home / 'mosquitto.log'}\n"
        )
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: accepts(self.port), what=f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session's Mosquitto, on a free loopback port, stopped at the end."""
    started = Broker(tmp_path_factory.mktemp("mosquitto"), free_port()).start()
    yield started
    if started.process is not None:
        started.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto for one test, which may stop and start it."""
    home = tmp_path / "mosquitto"
    home.mkdir()
    started = Broker(home, free_port()).start()
    yield started
    if started.process is not None:
        started.stop()


def accepts(port: int) -> bool:
    """Whether something listens on this loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@dataclass
class Service:
    """A cpsfleet daemon (agent or controller) run as a real process."""

    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([*CLI, *self.args], stdout=log, stderr=log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=20)
        self.process = None
        return code

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def services() -> Iterator[Callable[..., Service]]:
    """Start cpsfleet daemons; whatever is still running is stopped after the test."""
    started: list[Service] = []

    def start(log: Path, *args: str) -> Service:
        started.append(Service(list(args), log).start())
        return started[-1]

    yield start
    for service in started:
        if service.process is not None:
            service.stop(signal.SIGKILL)


@dataclass
class Webhook:
    posts: list[dict[str, Any]] = field(default_factory=list)
    refuse: int = 0  # how many more POSTs to answer 503 Service Unavailable
    refused: int = 0


@contextmanager
def serve_webhook() -> Iterator[tuple[Webhook, str]]:
    """A local HTTP server keeping the JSON of every POST (or refusing it, while
    ``Webhook.refuse`` says so), and the apprise URL that reaches it."""
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            if hook.refuse > 0:
                hook.refuse -= 1
                hook.refused += 1
                self.send_response(503)
            else:
                hook.posts.append({"path": self.path, **body})
                self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook, f"json://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def webhook() -> Iterator[tuple[Webhook, str]]:
    with serve_webhook() as served:
        yield served


@dataclass
class MtlsBroker:
    pki: Path
    port: int
    conf: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> MtlsBroker:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: accepts(self.port), what=f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        """Every client reconnects: what their TLS contexts hold is used anew."""
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def files(self, role: str, name: str) -> tuple[Path, Path]:
        folder = self.pki / f"{role}s"
        return folder / f"{name}.pem", folder / f"{name}.key"


def mtls_broker_in(home: Path) -> MtlsBroker:
    """Mosquitto on a free loopback port, with a fleet PKI, its configuration and ACL."""
    directory = home / "pki"
    pki.create_ca(directory)
    pki.issue(directory, "broker", "broker", hosts=["127.0.0.1", "localhost"])
    pki.issue(directory, "controller", CONTROLLER_IDENTITY)
    for host in ("ws-a", "ws-b", "ws-r"):
        pki.issue(directory, "agent", host)
    (home / "acl").write_text(mosquitto.acl())
    port, log = free_port(), home / "mosquitto.log"
    config = mosquitto.broker_config(
        port,
        directory / "ca.pem",
        directory / "brokers" / "broker.pem",
        directory / "brokers" / "broker.key",
        home / "acl",
        home / "data",
        bind="127.0.0.1",
    )
    (home / "data").mkdir()
    (home / "mosquitto.conf").write_text(f"{config}user root\nlog_dest file {log}\n")
    return MtlsBroker(directory, port, home / "mosquitto.conf").start()


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsBroker]:
    """One mTLS Mosquitto for a test module."""
    broker = mtls_broker_in(tmp_path_factory.mktemp("mtls"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The tests' PostgreSQL (``CPSFLEET_TEST_POSTGRES``), rid of what crashed runs left on it;
    the databases this session created and did not drop are dropped at its end."""
    server = Postgres.from_environment()
    try:
        server.drop(*server.leftovers())
    except PostgresUnreachable as error:
        pytest.fail(str(error), pytrace=False)
    yield server
    server.drop(*server.created)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The controller's database, once as an SQLite file and once as a fresh PostgreSQL
    database (its URL), dropped after the test."""
    if request.param == "sqlite":
        yield str(tmp_path / "controller.db")
        return
    server: Postgres = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``database`` for a whole module (a fleet built once, one dashboard serving it): an
    SQLite file, then a fresh PostgreSQL database dropped after the module's last test."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("database") / "controller.db")
        return
    server: Postgres = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)
