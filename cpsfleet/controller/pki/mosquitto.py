"""The fleet's Mosquitto 2.0 configuration: mutual TLS, and an ACL confining each agent.

Every client shows a certificate from the fleet CA (``cpsfleet.controller.pki.ca``); its CN
becomes its MQTT user name, so the ACL knows an agent by its host id and the
controller by its identity, whatever they put in CONNECT.
"""

from __future__ import annotations

from pathlib import Path

from cpsfleet.controller.pki.ca import COMMANDS_IDENTITY, CONTROLLER_IDENTITY
from cpsfleet.schemas.topics import CHANNELS, COMMAND_CHANNEL, HOST_ID, PREFIX

ALERTS = "cpsfleet/v1/alerts/#"
# Room for a controller stopped for days (see broker_config), bounded so that one left stopped
# for months fills the broker's queue, not its memory.
MAX_QUEUED_MESSAGES = 1_000_000
MAX_INFLIGHT_MESSAGES = 2000
AUTOSAVE_INTERVAL_S = 60


class MosquittoConfigError(ValueError):
    """A configuration that Mosquitto would misread; the message says which value."""


def broker_config(
    listener_port: int,
    ca: Path,
    cert: Path,
    key: Path,
    acl: Path,
    persistence_dir: Path | None,
    bind: str = "0.0.0.0",
) -> str:
    """The text of a mosquitto.conf serving the fleet over mutual TLS on one listener."""
    if not 1 <= listener_port <= 65535:
        raise MosquittoConfigError(f"listener port {listener_port} is not between 1 and 65535")
    paths = {"cafile": ca, "certfile": cert, "keyfile": key, "acl_file": acl}
    values = {option: _path(option, path) for option, path in paths.items()}
    if not bind or any(char.isspace() for char in bind):
        raise MosquittoConfigError(f"bind address {bind!r} must be one address, without spaces")
    return "\n".join(
        [
            "# Mosquitto 2.0 for the cpsfleet fleet, written by cpsfleet: regenerate, don't edit.",
            "",
            f"listener {listener_port} {bind}",
            f"cafile {values['cafile']}",
            "# Mosquitto reloads its certificate and key on SIGHUP: renew them, then send it",
            "# one; connected clients keep their TLS sessions.",
            f"certfile {values['certfile']}",
            f"keyfile {values['keyfile']}",
            "tls_version tlsv1.2",
            "",
            "# No certificate from the fleet CA, no connection. The certificate's CN is the user",
            "# name the ACL knows (a host id, or the controller's identity), and the client id,",
            "# so that no client can take over, or kick out, another one's session.",
            "require_certificate true",
            "use_identity_as_username true",
            "use_username_as_clientid true",
            "allow_anonymous false",
            f"acl_file {values['acl_file']}",
            "",
            "# The controller's persistent session must queue everything published while it",
            "# restarts or is upgraded: Mosquitto's default of 1000 queued messages is a few",
            "# minutes of a large fleet, and it silently drops the rest. 0 (no limit) would",
            "# let a controller left stopped for weeks exhaust the broker's memory instead.",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "# How many QoS 1 messages may be on their way to a client, unacknowledged: the",
            "# controller stores a batch while the next arrives (its receive maximum). The",
            "# default of 20 would hold its intake to a few hundred documents a second.",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            *_persistence(persistence_dir),
            "",
        ]
    )


def _persistence(directory: Path | None) -> list[str]:
    if directory is None:
        return [
            "",
            "# Without persistence, a broker restart loses the controller's queued messages",
            "# and the retained status and presence of every host.",
            "persistence false",
        ]
    return [
        "",
        "# Queued messages, retained documents and sessions survive a broker restart. The",
        f"# database is saved every {AUTOSAVE_INTERVAL_S} s and on a clean stop: a crash loses",
        "# at most the last interval.",
        "persistence true",
        f"persistence_location {_path('persistence_location', directory)}/",
        f"autosave_interval {AUTOSAVE_INTERVAL_S}",
    ]


def _path(option: str, path: Path) -> str:
    """An absolute path on one line: Mosquitto resolves relative ones from its own cwd."""
    text = str(path)
    if not path.is_absolute():
        raise MosquittoConfigError(f"{option} {text!r} must be an absolute path")
    if "\n" in text or "\r" in text:
        raise MosquittoConfigError(f"{option} {text!r} must not contain a line break")
    return text.rstrip("/") or "/"


def acl(
    controller_identity: str = CONTROLLER_IDENTITY, commands_identity: str = COMMANDS_IDENTITY
) -> str:
    """The text of the broker's ACL file (Mosquitto 2.0 ``acl_file``).

    ``pattern`` lines apply to every user, with ``%u`` replaced by its user name
    (the certificate's CN): an agent writes only its own host's channels and reads
    only its own command topic. ``topic`` lines after ``user`` apply to that user
    only. Anything not granted is refused. An agent's Last Will goes out under its
    own identity, to its own presence topic, which the write grant covers.

    Commands are written by the controller's identities only: the running controller,
    and ``cpsfleet controller rescan`` under a certificate of its own, which may do
    nothing else. Subscribers are not told who published a message, so this is what
    stands behind an agent's trust in its command topic (see ``cpsfleet.schemas.commands``).
    """
    for what, identity in (("controller", controller_identity), ("commands", commands_identity)):
        if not HOST_ID.fullmatch(identity):
            raise MosquittoConfigError(
                f"{what} identity {identity!r} must be 1 to 64 letters, digits, "
                "dots, underscores or hyphens (the CN of its certificate)"
            )
    command = f"{PREFIX}/+/{COMMAND_CHANNEL}"
    agent = [f"pattern write {PREFIX}/%u/{channel}" for channel in CHANNELS]
    controller = [f"topic read {PREFIX}/+/{channel}" for channel in CHANNELS]
    return "\n".join(
        [
            "# cpsfleet broker ACL (Mosquitto 2.0), written by cpsfleet: regenerate, don't edit.",
            "# Users are certificate CNs: an agent's is its host id.",
            "",
            "# Every agent: its own host's channels, and its own command topic.",
            *agent,
            f"pattern read {PREFIX}/%u/{COMMAND_CHANNEL}",
            "",
            "# The controller: every host's channels, commands to any host, and the alerts.",
            f"user {controller_identity}",
            *controller,
            f"topic write {command}",
            f"topic readwrite {ALERTS}",
            "",
            "# Commands sent beside the running controller (`cpsfleet controller rescan`).",
            f"user {commands_identity}",
            f"topic write {command}",
            "",
        ]
    )
