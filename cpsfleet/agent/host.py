"""Who this workstation is: a stable host id, its name and operating system."""

from __future__ import annotations

import hashlib
import platform
import socket
import uuid
from pathlib import Path

from cpsfleet.agent import __version__
from cpsfleet.schemas.documents import Host

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
HOST_ID_NAMESPACE = b"cpsfleet-host-id:"


def machine_secret() -> bytes:
    """Something unique to this machine that survives reboots and renames."""
    for path in MACHINE_ID_FILES:
        try:
            content = path.read_bytes().strip()
        except OSError:
            continue
        if content:
            return content
    return uuid.getnode().to_bytes(6, "big")


def default_host_id() -> str:
    """A stable id derived from the machine id, hashed so the machine id itself stays private."""
    return hashlib.sha256(HOST_ID_NAMESPACE + machine_secret()).hexdigest()[:16]


def os_version() -> str:
    if platform.system() == "Linux":
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", platform.release())
        except OSError:
            return platform.release()
    return platform.version()


def host_info(site: str | None = None, host_id: str | None = None) -> Host:
    return Host(
        id=host_id or default_host_id(),
        hostname=socket.gethostname(),
        os=platform.system(),
        os_version=os_version(),
        agent_version=__version__,
        site=site,
    )
