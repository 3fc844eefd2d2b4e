"""The topic layout and the broker URL, shared by the agent and the controller."""

from __future__ import annotations

import pytest

from cpsfleet.schemas import EVENT_SCHEMA, PRESENCE_SCHEMA, STATUS_SCHEMA
from cpsfleet.schemas.broker import BrokerUrlError, parse_broker_url
from cpsfleet.schemas.topics import SUBSCRIPTIONS, TopicError, parse_topic, topic


def test_each_channel_round_trips() -> None:
    for channel, schema in (
        ("status", STATUS_SCHEMA),
        ("events", EVENT_SCHEMA),
        ("presence", PRESENCE_SCHEMA),
    ):
        assert parse_topic(topic("ws-07", channel)) == ("ws-07", schema)
    assert topic("ws-07", "status") == "cpsfleet/v1/hosts/ws-07/status"
    assert SUBSCRIPTIONS == (
        "cpsfleet/v1/hosts/+/presence",
        "cpsfleet/v1/hosts/+/status",
        "cpsfleet/v1/hosts/+/events",
    )


@pytest.mark.parametrize(
    "name",
    [
        "cpsfleet/v1/hosts/ws-07/secrets",
        "cpsfleet/v2/hosts/ws-07/status",
        "other/cpsfleet/v1/hosts/ws-07/status",
        "cpsfleet/v1/hosts/ws 07/status",
        "cpsfleet/v1/hosts/ws-07/status/extra",
    ],
)
def test_topics_outside_the_layout_are_refused(name: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(name)


def test_host_ids_must_be_safe_topic_levels() -> None:
    for bad in ("", "a/b", "a+b", "#", "x" * 65):
        with pytest.raises(TopicError):
            topic(bad, "status")


def test_broker_urls() -> None:
    plain = parse_broker_url("mqtt://broker.example")
    assert (plain.host, plain.port, plain.tls) == ("broker.example", 1883, False)
    secure = parse_broker_url("mqtts://agent%2F1:s3cret@10.1.2.3:8884")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8884,
        True,
        "agent/1",
        "s3cret",
    )
    assert str(secure) == "mqtts://agent/1@10.1.2.3:8884"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://b", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "names no host"),
        ("mqtt://b/topic", "must not have a path"),
        ("mqtt://b:99999", "broker URL 'mqtt://b:99999'"),
    ],
)
def test_bad_broker_urls_are_explained(url: str, message: str) -> None:
    with pytest.raises(BrokerUrlError, match=None) as raised:
        parse_broker_url(url)
    assert message in str(raised.value)
