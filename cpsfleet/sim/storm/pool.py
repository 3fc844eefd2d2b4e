"""The storm's worker processes, driven from the parent: each phase on the go, progress from
the counters they share, their results merged."""

from __future__ import annotations

import multiprocessing
import threading
import time
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from typing import Any

from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.storm.results import PhaseResult, Progress, StormProgress, merge
from cpsfleet.sim.storm.settings import HOLD
from cpsfleet.sim.storm.worker import CLOSE_TIMEOUT_S, LIVE, Job, work


class Pool:
    """The worker processes, each on its own two-way link to the parent."""

    def __init__(self, jobs: list[Job], stop: threading.Event) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self.live = context.RawArray("q", len(jobs) * len(LIVE))
        self.agents, self.stop = sum(len(job.hosts) for job in jobs), stop
        self.links: list[Connection] = []
        self.processes = []
        for _ in jobs:
            here, there = context.Pipe()
            process = context.Process(target=work, args=(there, self.live), daemon=True)
            process.start()
            there.close()  # so that a worker's death is an EOF here
            self.links.append(here)
            self.processes.append(process)
        try:  # the jobs, sent once the workers run: one that died cannot block the parent
            for job in jobs:
                self._send(job.index, job)
        except FleetError:
            self.close()
            raise

    def close(self) -> None:
        for index in range(len(self.links)):
            with suppress(FleetError):
                self._send(index, "stop")
        for process in self.processes:
            process.join(CLOSE_TIMEOUT_S + 5)
            if process.is_alive():
                process.kill()
                process.join()
        for link in self.links:
            link.close()

    def play(self, phase: str, progress: Progress) -> PhaseResult:
        self.collect("ready", phase, progress)
        for index in range(len(self.links)):
            self._send(index, phase)
        return merge(self.collect("played", phase, progress))

    def hold(self, hold_s: float, progress: Progress) -> None:
        """Stay connected ``hold_s`` seconds or until stopped; then disconnect cleanly."""
        deadline = time.monotonic() + hold_s
        while (left := deadline - time.monotonic()) > 0 and not self.stop.wait(min(1.0, left)):
            progress(self.progress(HOLD))
        for index in range(len(self.links)):
            self._send(index, "release")
        self.collect("closed", HOLD, progress)

    def progress(self, phase: str) -> StormProgress:
        sums = [sum(self.live[i :: len(LIVE)]) for i in range(len(LIVE))]
        return StormProgress(phase, self.agents, *sums)

    def collect(self, kind: str, phase: str, progress: Progress) -> list[Any]:
        """Each worker's next message, which must be ``kind``; progress every second."""
        got: dict[int, Any] = {}
        tick = time.monotonic() + 1
        while len(got) < len(self.links):
            if self.stop.is_set() and phase != HOLD:
                raise FleetError(f"interrupted: {self.progress(phase)}")
            ready = wait([link for i, link in enumerate(self.links) if i not in got], 0.1)
            for index in (i for i, link in enumerate(self.links) if link in ready):
                said, payload = self._receive(index)
                if said == "failed":
                    raise FleetError(f"storm worker {index} failed:\n{payload}")
                assert said == kind, f"storm worker {index} said {said} before {kind}"
                got[index] = payload
            if time.monotonic() >= tick:
                tick += 1
                progress(self.progress(phase))
        return list(got.values())

    def _send(self, index: int, message: Any) -> None:
        try:
            self.links[index].send(message)
        except OSError:
            raise FleetError(self._died(index)) from None

    def _receive(self, index: int) -> tuple[str, Any]:
        try:
            said: tuple[str, Any] = self.links[index].recv()
        except (EOFError, OSError):
            raise FleetError(self._died(index)) from None
        return said

    def _died(self, index: int) -> str:
        self.processes[index].join(1)
        return f"storm worker {index} exited (code {self.processes[index].exitcode})"
