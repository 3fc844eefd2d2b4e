"""An idle agent daemon spends no CPU: it waits on PC/SC and MQTT events, it does not poll.

Speed and memory are benchmark figures (``python -m tests.bench_agent``), not asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bench_agent import Sample, StatusWatch, sample
from tests.conftest import BASE_PORT, Broker, PlayedCard, Service

IDLE_S = 5
# utime + stime are the threads' exact time on CPU shown in whole clock ticks (10 ms), so
# an idle process reads the same before and after, or one tick more when the few
# microseconds it spends cross a tick boundary.
MAX_IDLE_TICKS = 1
# A poll too cheap to show in ticks still wakes a thread, so context switches are counted.
# In IDLE_S the only wakeups due are one keepalive check of the MQTT network loop (every
# 7.5 s), which every 30 s sends a PINGREQ and wakes again for the PINGRESP: 2 at most,
# plus 1 if that thread is preempted while it runs. A poll every second makes it 5 or
# more (the agent's former 0.5 s outbox and 1 s network-loop timeouts made 15).
MAX_IDLE_WAKEUPS = 3


def _explain(before: Sample, after: Sample) -> str:
    wakeups = after.wakeups_since(before)
    return (
        f"{after.ticks - before.ticks} tick(s), {(after.run_ns - before.run_ns) / 1e6:.2f} ms "
        f"on CPU, wakeups by thread {[wakeups[tid] for tid in sorted(wakeups)]}"
    )


@pytest.mark.pcsc
def test_an_idle_agent_spends_no_cpu(
    tmp_path: Path,
    broker: Broker,
    services: Callable[..., Service],
    insert: Callable[..., PlayedCard],
    examples: dict[str, Path],
) -> None:
    insert(examples["doctor-cps3"], BASE_PORT)
    insert(examples["nurse-cps4"], BASE_PORT + 1)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'broker = "{broker.url}"\nhost_id = "ws-idle"\ninterval = 3600\nsplay = 0\n'
        f'state_dir = "{tmp_path / "state"}"\n'
    )
    watch = StatusWatch(broker, "ws-idle")
    try:
        agent = services(tmp_path / "agent.log", "agent", "run", "--config", str(config))
        watch.next(lambda status: len([r for r in status["readers"] if r["card"]]) == 2, 30)
        watch.quiet_for(2)  # the start is over (one status)
        assert agent.process is not None
        before = sample(agent.process.pid)
        time.sleep(IDLE_S)
        after = sample(agent.process.pid)
    finally:
        watch.close()
    assert after.ticks - before.ticks <= MAX_IDLE_TICKS, _explain(before, after)
    assert sum(after.wakeups_since(before).values()) <= MAX_IDLE_WAKEUPS, _explain(before, after)
