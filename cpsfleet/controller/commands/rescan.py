"""``cpsfleet controller rescan``: ask agents for a fresh inventory now, and say what changed.

Each targeted agent gets a ``rescan`` command (``commands.send``) and answers on its
status topic like any other time; the running controller stores that status. This module
only reads the store (read-only, beside the controller's writer): a host has answered once
its status history holds a document whose ``answers`` names the command's id. Any other
status stored meanwhile (a scheduled or card-event inventory that may have started before
the command, and so before the change the administrator wants to see) is not the answer.

There is no fallback for agents whose statuses never carry ``answers``: the agents that
take commands are the ones that answer them, and an agent older than both ignores the
command topic, so it is reported as not answering.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cpsfleet.controller.commands.changes import inventory_changes
from cpsfleet.controller.commands.send import CommandSender
from cpsfleet.controller.db import fleet
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import same_site
from cpsfleet.controller.model import HostView
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.i18n import _, decimal, ngettext
from cpsfleet.schemas.commands import MAX_LIFETIME, new_command

DEFAULT_TIMEOUT_S = 60
POLL_S = 0.2
REPORT_EVERY_S = 5
Progress = Callable[[str], None]


class RescanError(ValueError):
    """A rescan that cannot be asked for: unknown hosts, an empty site, a bad timeout."""


@dataclass
class Outcome:
    """One host's answer: its inventory before and after, or None if it did not answer."""

    host_id: str
    before: HostView | None
    last_status: int
    command_id: str | None = None
    subscribed: bool = True
    after: HostView | None = None
    seconds: float | None = None
    changes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.after is not None


def choose_hosts(store: Store, host_ids: list[str], site: str | None) -> list[str]:
    """The hosts named, then those of ``site``, each once, in that order."""
    known = set(store.host_ids())
    unknown = [host for host in host_ids if host not in known]
    if unknown:
        raise RescanError(
            f"unknown host(s): {', '.join(unknown)}; `cpsfleet controller hosts` lists the fleet"
        )
    chosen = dict.fromkeys(host_ids)
    if site is not None:
        in_site = [row["id"] for row in store.hosts() if same_site(site, row["site"])]
        if not in_site:
            raise RescanError(f"no host in site {site!r}")
        chosen.update(dict.fromkeys(in_site))
    if not chosen:
        raise RescanError("name at least one host, or a site (--site)")
    return list(chosen)


def rescan(
    settings: ControllerSettings,
    database: Path,
    host_ids: list[str],
    site: str | None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Progress = lambda line: None,
) -> list[Outcome]:
    """Send the commands, wait up to ``timeout`` seconds for the answers; StoreError,
    RescanError or CommandError when it cannot start."""
    if not 1 <= timeout <= MAX_LIFETIME.total_seconds():
        raise RescanError(f"the timeout must be 1 s to {MAX_LIFETIME.total_seconds():.0f} s")
    with Store.open_readonly(database) as store:
        chosen = choose_hosts(store, host_ids, site)
        outcomes = [_before(store, host_id) for host_id in chosen]
        _send(settings, outcomes, timeout, progress)
        _wait(store, outcomes, time.monotonic() + timeout, progress)
    return outcomes


def _before(store: Store, host_id: str) -> Outcome:
    last = fleet.last_status_id(store.database, host_id)
    return Outcome(host_id, store.host_view(host_id), last)


def _send(
    settings: ControllerSettings, outcomes: list[Outcome], timeout: float, progress: Progress
) -> None:
    issued_by = f"cpsfleet controller rescan, {getpass.getuser()}@{socket.gethostname()}"
    lifetime = timedelta(seconds=timeout)
    with CommandSender(settings) as sender:
        for outcome in outcomes:
            command = new_command(outcome.host_id, "rescan", datetime.now(UTC), lifetime, issued_by)
            outcome.command_id = command.id
            outcome.subscribed = sender.send(command, command.lifetime_s(datetime.now(UTC)))
            if not outcome.subscribed:
                progress(
                    _("{host}: no agent connected to take the command").format(host=outcome.host_id)
                )


def _wait(store: Store, outcomes: list[Outcome], deadline: float, progress: Progress) -> None:
    """Poll the store until every host that took its command has answered it, or the deadline."""
    started = next_report = time.monotonic()
    pending = [outcome for outcome in outcomes if outcome.subscribed]
    while pending and time.monotonic() < deadline:
        if time.monotonic() >= next_report:
            left = deadline - time.monotonic()
            waiting = ngettext(
                "waiting for {count} host, {left} s left",
                "waiting for {count} hosts, {left} s left",
                len(pending),
            )
            progress(waiting.format(count=len(pending), left=f"{left:.0f}"))
            next_report += REPORT_EVERY_S
        for outcome in list(pending):
            if has_answer(store, outcome):
                seconds = time.monotonic() - started
                _answered(store, outcome, seconds)
                pending.remove(outcome)
                progress(
                    _("{host}: fresh status after {seconds} s").format(
                        host=outcome.host_id, seconds=decimal(seconds)
                    )
                )
        if pending:
            time.sleep(POLL_S)


def has_answer(store: Store, outcome: Outcome) -> bool:
    """Whether a status answering ``outcome``'s command is stored."""
    if outcome.command_id is None:  # not sent
        return False
    return fleet.has_answered(
        store.database, outcome.host_id, outcome.last_status, outcome.command_id
    )


def _answered(store: Store, outcome: Outcome, seconds: float) -> None:
    outcome.after = store.host_view(outcome.host_id)
    outcome.seconds = seconds
    if outcome.after is not None:
        outcome.changes = inventory_changes(outcome.before, outcome.after)
