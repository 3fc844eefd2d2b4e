"""Throttling of failed sign-ins: at most so many per key (a source address, an account)
within a window, then a lockout. Plain logic over an injectable clock, for the dashboard's
``Gate``."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# At most this many keys remembered: an attacker rotating sources cannot grow the table.
TRACKED_KEYS = 10_000


class Throttled(Exception):
    """Too many failed tries: this one is refused unchecked; try again after ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed sign-ins: try again in {self.retry_after} s")

    @property
    def minutes(self) -> int:
        return math.ceil(self.retry_after / 60)


@dataclass
class Tries:
    since: float
    count: int = 0
    locked_until: float = 0.0


class Throttle:
    """At most ``limit`` failed tries per key (a source address, an account) within
    ``window_s``; reaching it locks the key out for ``lockout_s``.

    A try counts from the moment it starts and is given back if it succeeds, so that a
    burst sent at once is held to the limit too (each check costs scrypt's tens of
    milliseconds). At most ``capacity`` keys are remembered, the least recently tried
    forgotten first, and a key whose window and lockout are over is forgotten: an attacker
    rotating source addresses cannot make the table grow.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        lockout_s: float,
        now: Callable[[], float] = time.monotonic,
        capacity: int = TRACKED_KEYS,
    ) -> None:
        self.limit, self.window_s, self.lockout_s = limit, window_s, lockout_s
        self.now, self.capacity = now, capacity
        self._tries: OrderedDict[str, Tries] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tries)

    def charge(self, key: str) -> None:
        """Count a try that starts, or raise ``Throttled`` when ``key`` has none left."""
        with self._lock:
            now = self.now()
            tries = self._current(key, now)
            if tries.locked_until > now:
                raise Throttled(tries.locked_until - now)
            if tries.count >= self.limit:  # tries still running have used up the window
                self._lock_out(tries, now)
                raise Throttled(self.lockout_s)
            tries.count += 1

    def settle(self, key: str, failed: bool) -> None:
        """The outcome of a charged try: a success gives it back, a failure may lock out."""
        with self._lock:
            tries = self._tries.get(key)
            if tries is None:  # forgotten meanwhile, under a flood of other keys
                return
            if not failed:
                tries.count = max(0, tries.count - 1)
            elif tries.count >= self.limit:
                self._lock_out(tries, self.now())

    def _lock_out(self, tries: Tries, now: float) -> None:
        tries.locked_until = now + self.lockout_s
        tries.since, tries.count = now, 0

    def _current(self, key: str, now: float) -> Tries:
        tries = self._tries.pop(key, None)
        if tries is None or self._spent(tries, now):
            tries = Tries(since=now)
        self._tries[key] = tries  # the most recently tried last
        self._forget(now)
        return tries

    def _spent(self, tries: Tries, now: float) -> bool:
        return now >= tries.locked_until and now - tries.since >= self.window_s

    def _forget(self, now: float) -> None:
        while self._tries:
            key, oldest = next(iter(self._tries.items()))
            if len(self._tries) <= self.capacity and not self._spent(oldest, now):
                return
            del self._tries[key]
