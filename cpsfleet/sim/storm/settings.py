"""How a storm is played: its settings, the agent's timings, the names of its phases."""

from __future__ import annotations

from dataclasses import dataclass

from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.fleet.documents import MAX_INTERVAL_S

KEEPALIVE_S = 30  # the agent's
DEFAULT_WILL_DELAY_S = 60  # the agent's default will_delay (agent/config.py)
FIRST_CONTACT, STORM, HOLD = "first contact", "storm", "hold"


@dataclass(frozen=True)
class StormSettings:
    """How a storm is played; FleetError for what it cannot play."""

    workers: int | None = None  # processes; None: one per CPU core
    first_contact: bool = False  # connect, publish and lose every agent before the storm
    hold_s: float = 0.0  # seconds connected after the storm (math.inf: until stopped)
    will_delay_s: int = DEFAULT_WILL_DELAY_S  # and the session expiry, as the agent's
    interval_s: int = 900  # the statuses' scan_interval_s

    def __post_init__(self) -> None:
        workers, hold, delay, interval = (
            self.workers,
            self.hold_s,
            self.will_delay_s,
            self.interval_s,
        )
        needs = (
            (workers is None or workers >= 1, f"at least 1 worker, not {workers}"),
            (hold >= 0, f"a hold of 0 seconds or more, not {hold}"),
            (0 <= delay < 2**32, f"a Will Delay of 0 to {2**32 - 1} seconds, not {delay}"),
            (
                1 <= interval <= MAX_INTERVAL_S,
                f"an interval of 1 to {MAX_INTERVAL_S} s, not {interval}",
            ),
        )
        for met, need in needs:
            if not met:
                raise FleetError(f"the storm needs {need}")

    @property
    def phases(self) -> tuple[str, ...]:
        return (FIRST_CONTACT, STORM) if self.first_contact else (STORM,)


DEFAULT_SETTINGS = StormSettings()
