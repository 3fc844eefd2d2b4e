"""Virtual PC/SC readers: a pcscd of our own with vsmartcard's vpcd driver.

Each vpcd driver instance gives two readers, on TCP ports CHANNELID and
CHANNELID+1. pcscd mixes up two instances that load the same library file,
so every instance after the first loads its own copy of the driver.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cpsfleet.i18n import _

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
DEFAULT_BASE_PORT = 35963
SLOTS_PER_DRIVER = 2
MAX_READERS = 16


class ReadersError(RuntimeError):
    """Virtual readers cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class VirtualReader:
    name: str
    port: int


def running_pcscd() -> int | None:
    """The PID of a live pcscd, from its PID file or the process table, if any."""
    for pid in _pcscd_pids():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            return pid
        return pid
    return None


def pid_in_pid_file() -> int | None:
    """pcscd's PID file holds the PID, a newline and a NUL byte."""
    try:
        return int(PCSCD_PID_FILE.read_text().replace("\x00", "").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _pcscd_pids() -> Iterator[int]:
    if (pid := pid_in_pid_file()) is not None:
        yield pid
    result = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True)
    yield from (int(pid) for pid in result.stdout.split())


def plan(count: int, base_port: int) -> list[VirtualReader]:
    """The readers that ``count`` asks for, rounded up to whole driver instances."""
    if not 1 <= count <= MAX_READERS:
        raise ReadersError(f"--count must be between 1 and {MAX_READERS}, not {count}")
    if not 1024 <= base_port <= 65535 - count:
        raise ReadersError(f"--base-port must leave room for {count} ports below 65536")
    drivers = -(-count // SLOTS_PER_DRIVER)
    return [
        VirtualReader(f"{_friendly_name(d)} 00 {s:02d}", base_port + d * SLOTS_PER_DRIVER + s)
        for d in range(drivers)
        for s in range(SLOTS_PER_DRIVER)
    ]


def _friendly_name(driver: int) -> str:
    return "Virtual PCD" if driver == 0 else f"Virtual PCD {driver + 1}"


def write_config(directory: Path, readers: list[VirtualReader]) -> Path:
    """A reader.conf folder for pcscd, with a driver copy per instance after the first."""
    conf = directory / "reader.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    entries = []
    for driver, first in enumerate(readers[::SLOTS_PER_DRIVER]):
        library = VPCD_DRIVER
        if driver:
            library = directory / f"libifdvpcd-{driver}.so"
            shutil.copyfile(VPCD_DRIVER, library)
        entries.append(
            f'FRIENDLYNAME "{_friendly_name(driver)}"\n'
            f"DEVICENAME /dev/null:0x{first.port:04X}\n"
            f"LIBPATH {library}\n"
            f"CHANNELID 0x{first.port:04X}\n"
        )
    (conf / "cpsfleet-vpcd").write_text("\n".join(entries))
    return conf


def check_prerequisites() -> None:
    if shutil.which("pcscd") is None:
        raise ReadersError("pcscd is not installed (Debian: apt-get install pcscd)")
    if not VPCD_DRIVER.exists():
        raise ReadersError(f"{VPCD_DRIVER} is missing (Debian: apt-get install vsmartcard-vpcd)")
    pid = running_pcscd()
    if pid is not None:
        raise ReadersError(
            _(
                "another pcscd is running (PID {pid}); stop it first "
                "(e.g. systemctl stop pcscd.socket pcscd) — only one pcscd can run on a machine"
            ).format(pid=pid)
        )


@contextmanager
def virtual_readers(
    count: int = 2, base_port: int = DEFAULT_BASE_PORT, log_path: Path | None = None
) -> Iterator[tuple[list[VirtualReader], subprocess.Popen[bytes]]]:
    """Run pcscd with ``count`` vpcd readers for the duration of the ``with`` block."""
    readers = plan(count, base_port)
    check_prerequisites()
    with tempfile.TemporaryDirectory(prefix="cpsfleet-readers-") as tmp:
        conf = write_config(Path(tmp), readers)
        log_file = open(log_path or Path(tmp) / "pcscd.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            ["pcscd", "--foreground", "--config", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_serving(process)
            yield readers, process
        finally:
            stop_pcscd(process)
            log_file.close()


def _wait_until_serving(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ReadersError(f"pcscd exited at start with code {process.returncode}")
        if PCSCD_SOCKET.exists() and pid_in_pid_file() == process.pid:
            return
        time.sleep(0.05)
    raise ReadersError(f"pcscd did not start serving within {timeout:.0f} s")


def stop_pcscd(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if pcscd has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
