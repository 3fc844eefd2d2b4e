"""What a storm did: progress while it runs, each phase's result, the whole storm's; each
worker process's share of a phase and their merging."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cpsfleet.i18n import _, decimal


@dataclass(frozen=True)
class StormProgress:
    """The fleet at one moment of a phase (``first contact``, ``storm``, ``hold``)."""

    phase: str
    agents: int
    connected: int
    acknowledged: int
    errors: int
    wills: int | None = None  # offline Wills published after the first contact, so far

    def __str__(self) -> str:
        wills = "" if self.wills is None else _(", {wills} Wills").format(wills=self.wills)
        return (
            _(
                "{phase}: {connected} of {agents} agents connected, {acknowledged} of "
                "{messages} messages acknowledged, {errors} errors"
            ).format(
                phase=self.phase,
                connected=self.connected,
                agents=self.agents,
                acknowledged=self.acknowledged,
                messages=2 * self.agents,
                errors=self.errors,
            )
            + wills
        )


Progress = Callable[[StormProgress], None]


@dataclass(frozen=True)
class PhaseResult:
    """What one phase did. ``seconds`` runs from the first CONNECT to the last answer (PUBACK,
    or an agent given up), ``connect_seconds`` from the first CONNECT to the last CONNACK."""

    agents: int
    connected: int
    connect_errors: int
    published: int
    acknowledged: int
    refused: int
    seconds: float
    connect_seconds: float
    # From an agent's SYN to its CONNACK: 1 s, 3 s... when the broker's accept queue overflowed
    connack_median_s: float = 0.0
    connack_p99_s: float = 0.0
    connack_max_s: float = 0.0
    failure: str | None = None  # the most frequent reason agents failed, and how often

    @property
    def connects_per_s(self) -> float:
        return self.connected / self.connect_seconds if self.connect_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "connects_per_s": round(self.connects_per_s, 1)}


@dataclass(frozen=True)
class StormResult:
    """The storm, and the first contact before it when there was one."""

    workers: int
    seq: int  # of the statuses published in the storm
    storm: PhaseResult
    first_contact: PhaseResult | None = None
    wills: int | None = None  # hosts whose offline Will the broker published after first contact

    @property
    def problem(self) -> str | None:
        """Why the storm fell short, or None when the broker acknowledged every message."""
        run = self.storm
        faults = {
            f"{run.connect_errors} of {run.agents} agents failed": run.connect_errors,
            f"the broker refused {run.refused} of {run.published} messages": run.refused,
        }
        found = [fault for fault, count in faults.items() if count]
        return f"{' and '.join(found)} ({run.failure})" if found else None

    def __str__(self) -> str:
        run, first = self.storm, self.first_contact
        storm = _("storm of {agents} agents (workers: {workers})").format(
            agents=run.agents, workers=self.workers
        )
        if first:
            storm += _(" after a first contact and {wills} Wills").format(wills=self.wills)
        return storm + _(
            ": {connected} connected, {errors} connect errors, {acknowledged} of {messages} "
            "messages acknowledged in {seconds} s, {rate} connects/s; CONNACK after {median} s "
            "median, {p99} s p99, {most} s max"
        ).format(
            connected=run.connected,
            errors=run.connect_errors,
            acknowledged=run.acknowledged,
            messages=2 * run.agents,
            seconds=decimal(run.seconds, 2),
            rate=decimal(run.connects_per_s, 0),
            median=decimal(run.connack_median_s, 2),
            p99=decimal(run.connack_p99_s, 2),
            most=decimal(run.connack_max_s, 2),
        )

    def as_dict(self) -> dict[str, Any]:
        first = self.first_contact.as_dict() if self.first_contact else None
        extra = {"workers": self.workers, "seq": self.seq, "first_contact": first}
        return {**self.storm.as_dict(), **extra, "wills": self.wills}


@dataclass
class WorkerReport:
    """One worker's share of a phase; the parent merges them into a PhaseResult."""

    agents: int
    counts: Counter[str] = field(default_factory=Counter)  # connected, published, ...
    reasons: Counter[str] = field(default_factory=Counter)
    started: float = 0.0  # time.monotonic() is the same clock in every process
    last_connack: float | None = None
    last_answer: float | None = None
    waits: list[float] = field(default_factory=list)  # each agent's, from SYN to CONNACK


def merge(reports: list[WorkerReport]) -> PhaseResult:
    counts = sum((report.counts for report in reports), Counter[str]())
    reasons = sum((report.reasons for report in reports), Counter[str]())
    started = min(report.started for report in reports)
    answers = [r.last_answer for r in reports if r.last_answer is not None]
    connacks = [r.last_connack for r in reports if r.last_connack is not None]
    waits = sorted(wait for report in reports for wait in report.waits) or [0.0]
    return PhaseResult(
        sum(report.agents for report in reports),
        counts["connected"],
        counts["connect_errors"],
        counts["published"],
        counts["acknowledged"],
        counts["refused"],
        seconds=max(answers) - started if answers else 0.0,
        connect_seconds=max(connacks) - started if connacks else 0.0,
        connack_median_s=waits[len(waits) // 2],
        connack_p99_s=waits[len(waits) * 99 // 100],
        connack_max_s=waits[-1],
        failure="{}: {} times".format(*reasons.most_common(1)[0]) if reasons else None,
    )
