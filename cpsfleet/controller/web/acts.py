"""Carrying out what a user asks from the dashboard, and recording it.

A route that changes something (``actions``, ``users``) depends on ``guarded``: the right it
needs and, from a session, the CSRF token (``access.acting``), a refusal of either kept in the
audit trail. Its work runs beside the event loop through ``carry_out``, which records it in
the audit trail whether it was done, refused (403) or failed (any other status), and turns a
``Refusal`` into the HTTP error the user reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from cpsfleet.controller.people import PeopleError, Principal, Right
from cpsfleet.controller.web.access import acting
from cpsfleet.controller.web.dashboard import Dashboard, dashboard

Board = Annotated[Dashboard, Depends(dashboard)]


class Refusal(Exception):
    """An action that cannot be carried out: its HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Done:
    """An action carried out: what it acted on, what the audit trail keeps of it, and what
    the JSON twin answers."""

    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)


def guarded(
    action: str, right: Right = "act"
) -> Callable[[Request, Dashboard], Awaitable[Principal]]:
    """``acting(right)``, its refusals (no right, no CSRF token) kept in the audit trail."""
    check = acting(right)

    async def dependency(request: Request, board: Board) -> Principal:
        try:
            return await check(request)
        except HTTPException as error:
            # Refused: no right, no CSRF token; failed: a form too large or of another kind.
            outcome = "refused" if error.status_code in (401, 403) else "failed"
            detail = {"status": error.status_code, "why": str(error.detail)}
            board.audit(request, action, outcome=outcome, detail=detail)
            raise

    return dependency


async def carry_out(
    request: Request, board: Dashboard, action: str, target: str, work: Callable[[], Done]
) -> Done:
    """Run ``work`` beside the event loop and record it, done or refused, in the audit; a
    ``PeopleError`` (a user name, role or site that cannot be used) is a 400."""
    try:
        done = await run_in_threadpool(work)
    except (Refusal, PeopleError) as error:
        refusal = error if isinstance(error, Refusal) else Refusal(400, str(error))
        outcome = "refused" if refusal.status == 403 else "failed"
        detail = {"status": refusal.status, "why": refusal.message}
        board.audit(request, action, target, outcome, detail)
        raise HTTPException(refusal.status, refusal.message) from None
    board.audit(request, action, done.target, "ok", done.detail)
    return done
