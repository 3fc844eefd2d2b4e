"""apscheduler, imported without the modules it loads for features the agent does not use.

Importing apscheduler 3's background scheduler loads all of asyncio (for one function,
``asyncio.iscoroutinefunction``, with which it refuses coroutine jobs), multiprocessing and
concurrent.futures.process (for its process-pool executor), tzlocal (the local time zone,
for schedulers and triggers given none) and importlib.metadata (its own version, and the
entry points naming its plug-ins, so that ``add_job(f, "cron")`` finds the cron trigger).
The agent uses none of these, and once loaded they would stay in the daemon's memory as
long as it runs: 3.2 MB of it (``python -m tests.bench_agent``: 42.0 MB with them, 38.8
without). So while apscheduler is imported, each of them that is not loaded yet is a
stand-in holding only the names apscheduler takes from it; the stand-ins are removed as
soon as apscheduler is in, so whatever imports these modules later gets the real ones.

What the agent uses works as it always did: the background scheduler, its thread pool, its
in-memory job store, interval and date triggers, all in UTC. What the stand-ins leave out
fails loudly rather than quietly: a process pool, a trigger or scheduler without a time
zone, or a trigger, executor or job store named by its alias (give apscheduler the object,
as ``agent.daemon`` does). Coroutine jobs are still refused (``inspect.iscoroutinefunction``,
which asyncio's extends only to the generator-based coroutines Python 3.11 no longer has).
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import NoReturn

log = logging.getLogger(__name__)


class BrokenProcessPool(BrokenExecutor):
    """What apscheduler's process-pool executor catches; never raised in the agent."""


class PackageNotFoundError(ModuleNotFoundError):
    """What ``unknown_version`` raises: apscheduler then gives itself its fallback version,
    3.5.0, as ``apscheduler.__version__``, which nothing reads."""


def unknown_version(distribution: str) -> NoReturn:
    raise PackageNotFoundError(distribution)


def no_plugins(group: str) -> list[object]:
    """No trigger, executor or job store by alias: the agent gives apscheduler the objects."""
    return []


def no_local_zone() -> NoReturn:
    raise RuntimeError("the agent schedules in UTC: give apscheduler timezone=UTC")


# Module name: the names apscheduler imports from it.
STAND_INS: dict[str, dict[str, object]] = {
    "asyncio": {"iscoroutinefunction": inspect.iscoroutinefunction},
    "multiprocessing": {},
    "concurrent.futures.process": {"BrokenProcessPool": BrokenProcessPool},
    "tzlocal": {"get_localzone": no_local_zone},
    "importlib.metadata": {
        "version": unknown_version,
        "PackageNotFoundError": PackageNotFoundError,
        "entry_points": no_plugins,
    },
}


@contextmanager
def standing_in(stand_ins: dict[str, dict[str, object]]) -> Iterator[None]:
    """Within the block, a stand-in module for each of ``stand_ins`` not imported yet."""
    added = [name for name in stand_ins if name not in sys.modules]
    for name in added:
        module = ModuleType(name, f"a stand-in for {name}, while apscheduler is imported")
        module.__dict__.update(stand_ins[name])
        sys.modules[name] = module
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]


def load_apscheduler(stand_ins: dict[str, dict[str, object]]) -> None:
    """Import the apscheduler modules the agent uses, with ``stand_ins``. An apscheduler
    release that takes more from those modules than the stand-ins hold is imported again
    with the real ones: the agent must start, at the memory cost, with a warning."""
    try:
        with standing_in(stand_ins):
            _import_used()
    except ImportError as error:
        log.warning("apscheduler imported with all its dependencies (%s)", error)
        for name in [name for name in sys.modules if name.partition(".")[0] == "apscheduler"]:
            del sys.modules[name]
        _import_used()


def _import_used() -> None:
    import apscheduler.schedulers.background
    import apscheduler.triggers.date
    import apscheduler.triggers.interval  # noqa: F401


load_apscheduler(STAND_INS)
from apscheduler.schedulers.background import BackgroundScheduler  # noqa: E402
from apscheduler.triggers.date import DateTrigger  # noqa: E402
from apscheduler.triggers.interval import IntervalTrigger  # noqa: E402

__all__ = ["BackgroundScheduler", "DateTrigger", "IntervalTrigger"]
