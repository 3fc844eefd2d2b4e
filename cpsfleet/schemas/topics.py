"""The MQTT topic layout: one subtree per host, so a broker ACL can confine each agent to its own.

cpsfleet/v1/hosts/<host_id>/presence  retained, QoS 1: online / offline (birth, goodbye, Will)
cpsfleet/v1/hosts/<host_id>/status    retained, QoS 1: the latest full inventory
cpsfleet/v1/hosts/<host_id>/events    QoS 1, not retained: card and reader changes
cpsfleet/v1/hosts/<host_id>/command   QoS 1, not retained, with a message expiry: the
                                      controller's orders to that host's agent (its only
                                      subscription)

The first three go from the agent to the controller (``CHANNELS``, ``SUBSCRIPTIONS``); the
command topic goes the other way, so the controller never subscribes to it.
"""

from __future__ import annotations

import re

from cpsfleet.i18n import _
from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, STATUS_SCHEMA

PREFIX = "cpsfleet/v1/hosts"
HOST_ID = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,64}")
CHANNELS = {"presence": PRESENCE_SCHEMA, "status": STATUS_SCHEMA, "events": EVENT_SCHEMA}
SUBSCRIPTIONS = tuple(f"{PREFIX}/+/{channel}" for channel in CHANNELS)
COMMAND_CHANNEL = "command"


class TopicError(ValueError):
    """A topic outside the layout."""


def shared(group: str | None) -> tuple[str, ...]:
    """The controller's subscriptions: ``SUBSCRIPTIONS``, or with a share group
    ``$share/<group>/...`` (the broker gives each document to one member of the group)."""
    if group is None:
        return SUBSCRIPTIONS
    return tuple(f"$share/{group}/{subscription}" for subscription in SUBSCRIPTIONS)


def check_host_id(host_id: str) -> str:
    if not HOST_ID.fullmatch(host_id):
        raise TopicError(
            _(
                "host id {host_id} must be 1 to 64 letters, digits, dots, underscores or "
                "hyphens, and not '.' or '..' (a host id is a topic level and a URL segment)"
            ).format(host_id=repr(host_id))
        )
    return host_id


def topic(host_id: str, channel: str) -> str:
    if channel not in CHANNELS:
        raise TopicError(f"unknown channel {channel!r}")
    return f"{PREFIX}/{check_host_id(host_id)}/{channel}"


def command_topic(host_id: str) -> str:
    """Where the controller sends ``host_id`` its commands, and only that agent reads."""
    return f"{PREFIX}/{check_host_id(host_id)}/{COMMAND_CHANNEL}"


def parse_topic(name: str) -> tuple[str, str]:
    """(host id, schema name) of a fleet topic; TopicError for anything else."""
    prefix, _, rest = name.rpartition("/hosts/")
    host_id, _, channel = rest.partition("/")
    if f"{prefix}/hosts" != PREFIX or channel not in CHANNELS or not HOST_ID.fullmatch(host_id):
        raise TopicError(f"not a fleet topic: {name!r}")
    return host_id, CHANNELS[channel]
