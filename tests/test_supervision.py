"""A controller whose thread stops stops too, loudly, so that its service manager restarts it.

The controller runs in this process on a real Mosquitto and database (SQLite or PostgreSQL);
each test ends one of its worker threads the way it would end on its own (the alert sender's
queue closed or a bug in it, the dashboard's server exiting) and expects ``Controller.run`` to raise
``WorkerError`` naming it. The receiving process is killed in ``tests/test_receiver.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from cpsfleet.controller.alerts.book import Batch
from cpsfleet.controller.service import Controller, Delivery, WorkerError
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.controller.web.auth import DashboardSettings
from tests.conftest import Broker, wait_for


@dataclass
class Running:
    controller: Controller
    thread: threading.Thread
    stop: threading.Event
    raised: list[BaseException] = field(default_factory=list)


def start(settings: ControllerSettings, clock: Callable[[], datetime] | None = None) -> Running:
    """A controller running in a thread of this process (on ``clock`` if given), once its
    workers and its MQTT session are up."""
    controller = Controller(settings) if clock is None else Controller(settings, clock)
    stop = threading.Event()
    started = Running(controller, threading.Thread(target=lambda: None), stop)

    def run() -> None:
        try:
            controller.run(stop)
        except BaseException as error:  # what the test asserts on
            started.raised.append(error)

    started.thread = threading.Thread(target=run, name="controller")
    started.thread.start()
    wait_for(
        lambda: (
            bool(started.raised)
            or (len(controller.workers) == 2 and controller.receiver is not None)
        ),
        30,
        "the controller's workers",
    )
    if started.raised:  # it stopped before its workers were up: say why
        raise started.raised[0]
    return started


@pytest.fixture
def running(database: str, own_broker: Broker) -> Iterator[Running]:
    settings = ControllerSettings(
        broker=own_broker.url,
        database=database,
        dashboard=DashboardSettings(listen="127.0.0.1:0"),
    )
    started = start(settings)
    yield started
    started.stop.set()
    started.thread.join(30)


def ended(running: Running) -> bool:
    return not running.thread.is_alive()


@pytest.mark.parametrize(
    ("worker", "end"),
    [
        ("the alert sender", lambda controller: controller.outbox.put(None)),
        (
            "the dashboard",
            lambda controller: setattr(controller.dashboard.server, "should_exit", True),
        ),
    ],
)
def test_a_stopped_worker_stops_the_controller_naming_it(
    running: Running, worker: str, end: Callable[[Controller], None]
) -> None:
    assert running.thread.is_alive()
    end(running.controller)
    wait_for(lambda: ended(running), 15, "the controller to stop")
    (error,) = running.raised
    assert isinstance(error, WorkerError) and str(error).startswith(f"{worker} stopped")


# The thread ends with the exception (threading's hook prints it): what the test is about.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_bug_in_the_alert_sender_stops_the_controller_naming_it(running: Running) -> None:
    controller = running.controller

    def broken(channel: str, batch: Batch) -> str | None:
        raise RuntimeError("a bug outside any channel plugin")

    controller.notifier.deliver = broken  # type: ignore[method-assign]
    controller.outbox.put(Delivery("c1", Batch()))
    wait_for(lambda: ended(running), 15, "the controller to stop")
    (error,) = running.raised
    assert isinstance(error, WorkerError) and str(error).startswith("the alert sender stopped")
