"""A time-boxed fuzz run of the controller's intake: ``python -m tests.fuzz_ingest --seconds 60``.

Random topics and payloads, most of them mutations of the example documents,
go through ``decode`` and then ``Controller.handle`` on a throwaway SQLite
store, or on the store ``--database`` names (a PostgreSQL URL: an empty database the run
may fill), the controller never connected to a broker. The run prints, for
each kind of input, how many were tried, accepted, rejected and crashed; the
rejections by reason; and each crash (any exception other than ``Rejected``)
with the line that raised it and a sample input. It exits with 1 if anything
crashed or if a rejected message was not counted or left a row behind.

Not collected by pytest (no ``test_`` prefix); ``tests/test_fuzz_ingest.py``
holds the hypothesis properties that run in CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cpsfleet.controller.alerts.book import AlertBook
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.intake.batch import Rejected, decode, host_of
from cpsfleet.controller.intake.receiver import Message
from cpsfleet.controller.service import Controller
from cpsfleet.controller.settings import ControllerSettings
from cpsfleet.schemas import MAX_PAYLOAD_BYTES
from cpsfleet.schemas.topics import CHANNELS, topic

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "cpsfleet" / "schemas" / "examples"
CHANNEL_OF = {schema: channel for channel, schema in CHANNELS.items()}
# Dates at the ends of what the contract admits, and just past them, in any string field.
EXTREME_TIMES = [
    *("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-02-29T00:00:00Z"),
    *("2027-02-31T00:00:00Z", "2027-02-29T00:00:00Z", "2027-13-01T00:00:00Z"),
    *("2027-01-01T25:00:00Z", "2027-01-01T00:60:00Z", "0000-01-01T00:00:00Z"),
    *("1-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "2027-01-01T00:00:00.5Z"),
]
HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
ODD_TEXT = ["+", "#", "", "\x00", "é", "\u202e", "\ud800", "/", "..", " ", "\n", "🂡"]
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80", b"\xe2\x82"]
REASONS = (
    ("topic outside the layout", r"^not a fleet topic"),
    ("over the size limit", r"^payload of \d+ bytes is over"),
    ("not UTF-8", r"^not UTF-8"),
    ("nested too deeply", r"nested too deeply"),
    ("not JSON", r"^not JSON"),
    ("not a JSON object", r"must be a JSON object"),
    ("schema other than the topic's", r"^schema: expected"),
    ("unknown schema or version", r"^unknown schema"),
    ("host other than the topic's", r"claims host"),
    ("a field fails the schema", r""),
)
Document = dict[str, Any]
Input = tuple[str, bytes]


def examples() -> list[Document]:
    names = (
        "status-four-readers",
        "status-pcscd-down",
        "event-card-inserted",
        "presence-last-will",
    )
    return [json.loads((EXAMPLES / f"{name}.json").read_text("utf-8")) for name in names]


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# --- what is thrown at the intake -------------------------------------------------------------


class Inputs:
    """Generators of (topic, payload), one per kind of bad (or good) input."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.documents = examples()

    def document(self) -> Document:
        document = copy.deepcopy(self.rng.choice(self.documents))
        host = "".join(self.rng.choices(HOST_CHARS, k=self.rng.randint(1, 64)))
        if host in {".", ".."}:  # not a host id (a URL's dot segments): see odd topics
            host += "x"
        if document["schema"] == "cpsfleet.status":
            document["host"]["id"] = host
        else:
            document["host_id"] = host
        if document["schema"] != "cpsfleet.presence" and self.rng.random() < 0.5:
            document |= {"seq": self.rng.randint(1, 2**40), "late": self.rng.random() < 0.5}
        return document

    def own(self, document: Document) -> Input:
        schema = document["schema"]
        return topic(host_of(document, schema), CHANNEL_OF[schema]), dumps(document)

    def places(self, value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not isinstance(value, dict | list):
            return []
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return [
            p for key, child in items for p in [(*prefix, key), *self.places(child, (*prefix, key))]
        ]

    def replace(
        self, document: Document, value: Any, path: tuple[Any, ...] | None = None
    ) -> Document:
        path = path or self.rng.choice(self.places(document))
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
        return document

    def json_value(self, depth: int = 0) -> Any:
        kinds = ["null", "bool", "int", "float", "text"] + (["list", "object"] if depth < 4 else [])
        kind = self.rng.choice(kinds)
        scalars: dict[str, Callable[[], Any]] = {
            "null": lambda: None,
            "bool": lambda: self.rng.random() < 0.5,
            "int": lambda: self.rng.choice([0, -1, 2**63, -(2**64), self.rng.randint(-9, 10**12)]),
            "float": lambda: self.rng.choice([0.5, -1e308, 1e-320, float("nan"), float("inf")]),
            "text": lambda: self.text(self.rng.randint(0, 20)),
            "list": lambda: [self.json_value(depth + 1) for _ in range(self.rng.randint(0, 4))],
            "object": lambda: {self.text(5): self.json_value(depth + 1) for _ in range(3)},
        }
        return scalars[kind]()

    def text(self, size: int) -> str:
        return "".join(
            self.rng.choice(ODD_TEXT + [chr(self.rng.randint(1, 0x10FFFF))]) for _ in range(size)
        )

    # The kinds of input, each returning (topic, payload).

    def valid(self) -> Input:
        return self.own(self.document())

    def random_bytes(self) -> Input:
        return self.own(self.document())[0], self.rng.randbytes(self.rng.randint(0, 600))

    def random_json(self) -> Input:
        return self.own(self.document())[0], dumps(self.json_value())

    def bytes_mutated(self) -> Input:
        name, payload = self.own(self.document())
        data = bytearray(payload)
        for _ in range(self.rng.randint(1, 8)):
            at = self.rng.randrange(len(data))
            choice = self.rng.randrange(3)
            if choice == 0:
                data[at] = self.rng.randrange(256)
            elif choice == 1:
                del data[at : at + self.rng.randint(1, 50)]
            else:
                data[at:at] = self.rng.choice(BAD_UTF8 + [b"{", b"]", b'"', b"\\", b","])
        return name, bytes(data)

    def truncated(self) -> Input:
        name, payload = self.own(self.document())
        return name, payload[: self.rng.randrange(len(payload))]

    def extreme_value(self) -> Input:
        """One field at an extreme of its own type, or null: the schema may well accept it."""
        document = self.document()
        name, _ = self.own(document)
        path = self.rng.choice(self.places(document))
        extremes: dict[type, list[Any]] = {
            bool: [True, False],
            int: [-1, 0, 2**31, 10**14, 2**53 - 1, 2**53, 2**63, -(2**63) - 1, 10**30],
            float: [-0.0, 1e308, float("nan")],
            str: ["", "\x00", "é" * 10_000, self.text(12), *EXTREME_TIMES],
        }
        value = self.rng.choice([None, *extremes.get(type(self.at(document, path)), [[], {}])])
        return name, dumps(self.replace(document, value, path))

    def at(self, document: Document, path: tuple[Any, ...]) -> Any:
        value: Any = document
        for key in path:
            value = value[key]
        return value

    def wrong_type(self) -> Input:
        document = self.document()
        name, _ = self.own(document)
        return name, dumps(self.replace(document, self.json_value()))

    def unknown_version(self) -> Input:
        document = self.document()
        name, _ = self.own(document)
        version = self.rng.choice([0, 2, -1, 1.5, "1", None, True, [1], {"v": 1}, 10**30])
        return name, dumps(self.replace(document, version, ("version",)))

    def unknown_schema(self) -> Input:
        document = self.document()
        name, _ = self.own(document)
        schema = self.rng.choice(["cpsfleet.alert", "cpsfleet.status2", "", None, 1, ["x"]])
        return name, dumps(self.replace(document, schema, ("schema",)))

    def huge_string(self) -> Input:
        document = self.document()
        name, _ = self.own(document)
        size = self.rng.choice([10_000, MAX_PAYLOAD_BYTES // 2, MAX_PAYLOAD_BYTES + 1])
        return name, dumps(self.replace(document, self.rng.choice("xé🂡\x00") * size))

    def over_limit(self) -> Input:
        name, payload = self.own(self.document())
        padding = MAX_PAYLOAD_BYTES - len(payload) + self.rng.randint(1, 1000)
        return name, payload + b" " * padding

    def deep_nesting(self) -> Input:
        document = self.document()
        name, _ = self.own(document)
        limit = sys.getrecursionlimit()
        depth = self.rng.choice(
            [self.rng.randint(limit - 60, limit + 60), self.rng.randint(1, 130_000)]
        )
        marker = "\x01nested\x01"
        payload = dumps(self.replace(document, marker)).replace(
            dumps(marker), b"[" * depth + b"]" * depth
        )
        return name, payload if self.rng.random() < 0.8 else b"[" * depth + b"]" * depth

    def huge_integer(self) -> Input:
        document = self.document()
        name, _ = self.own(document)
        digits = b"9" * self.rng.randint(4000, 6000)
        return name, dumps(self.replace(document, "\x01int\x01")).replace(
            b'"\\u0001int\\u0001"', digits
        )

    def odd_topic(self) -> Input:
        name, payload = self.own(self.document())
        levels = name.split("/")
        at = self.rng.randrange(len(levels))
        odd = self.rng.choice([*ODD_TEXT, "x" * 65, "h" * 70_000, self.text(8), levels[at] + "/x"])
        levels[at] = odd if self.rng.random() < 0.7 else levels[at] + odd
        return "/".join(levels), payload

    def other_host(self) -> Input:
        _, payload = self.own(self.document())
        schema = json.loads(payload)["schema"]
        return topic("someone-else", CHANNEL_OF[schema]), payload

    def other_channel(self) -> Input:
        name, payload = self.own(self.document())
        channel = self.rng.choice([c for c in CHANNELS if not name.endswith("/" + c)])
        return name.rsplit("/", 1)[0] + "/" + channel, payload

    def kinds(self) -> dict[str, Callable[[], Input]]:
        names = (
            "valid", "random_bytes", "random_json", "bytes_mutated", "truncated", "wrong_type",
            "extreme_value", "unknown_version", "unknown_schema", "huge_string", "over_limit",
            "deep_nesting", "huge_integer", "odd_topic", "other_host", "other_channel",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names}


# --- running them -----------------------------------------------------------------------------


@dataclass
class Crash:
    """One place that raised, how often, and the first input that made it raise."""

    message: str
    sample: Input
    count: int = 0


@dataclass
class Tally:
    tried: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    crashed: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    crashes: dict[str, Crash] = field(default_factory=dict)
    miscounted: int = 0


def reason_class(message: str) -> str:
    return next(name for name, pattern in REASONS if re.search(pattern, message))


def where(error: BaseException) -> str:
    """The innermost line of this project that the exception went through."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if ROOT.as_posix() in f.filename]
    frames = [f for f in frames if "/.venv/" not in f.filename] or frames
    if not frames:  # raised here, not caught on its way: the message names it
        return "(no traceback)"
    last = frames[-1]
    return f"{Path(last.filename).relative_to(ROOT)}:{last.lineno} in {last.name}"


def crash(tally: Tally, kind: str, step: str, error: BaseException, sample: Input) -> None:
    key = f"{step}: {type(error).__name__} at {where(error)}"
    tally.crashed[kind] += 1
    tally.crashes.setdefault(key, Crash(str(error)[:120], sample)).count += 1


def rows(store: Store) -> int:
    tables = ("hosts", "status_history", "events")
    return sum(store.database.table(name).count for name in tables)


def attempt(tally: Tally, kind: str, item: Input, controller: Controller, store: Store) -> None:
    """Decode the input, then handle it; count it once: accepted, rejected or crashed."""
    tally.tried[kind] += 1
    try:
        decode(Message(item[0], item[1], datetime.now(UTC)))
    except Rejected as error:
        reason = reason_class(str(error))
    except Exception as error:  # a crash is what this run looks for
        crash(tally, kind, "decode", error, item)
        return
    else:
        reason = None
    if handled(tally, kind, item, reason is not None, controller, store):
        if reason is None:
            tally.accepted[kind] += 1
        else:
            tally.rejected[kind] += 1
            tally.reasons[reason] += 1


def handled(
    tally: Tally, kind: str, item: Input, rejected: bool, controller: Controller, store: Store
) -> bool:
    """Whether ``handle`` took the input without raising; a rejection must be counted."""
    before = (store.counter("messages_rejected"), rows(store))
    failed = store.counter("messages_failed")
    try:
        controller.handle(store, Message(item[0], item[1], datetime.now(UTC)))
    except Exception as error:  # a crash is what this run looks for
        crash(tally, kind, "handle", error, item)
        return False
    if store.counter("messages_failed") != failed:  # handle's own safety net caught a crash
        crash(tally, kind, "handle", RuntimeError("counted as messages_failed"), item)
        return False
    after = (store.counter("messages_rejected"), rows(store))
    if rejected and item[1] and after != (before[0] + 1, before[1]):
        tally.miscounted += 1
    return True


def run(seconds: float, seed: int, database: Path | str) -> Tally:
    rng, tally = random.Random(seed), Tally()
    kinds = Inputs(rng).kinds()
    controller = Controller(ControllerSettings(database=str(database)))
    with Store(database) as store:
        controller.book = AlertBook(store.database, controller.settings.alerts)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            kind = rng.choice(list(kinds))
            attempt(tally, kind, kinds[kind](), controller, store)
    return tally


# --- the report -------------------------------------------------------------------------------


def report(tally: Tally, seconds: float, seed: int) -> str:
    total = sum(tally.tried.values())
    lines = [f"fuzz run of the controller intake: {seconds:g} s, seed {seed}", ""]
    lines.append(f"{'input':<16} {'tried':>8} {'accepted':>9} {'rejected':>9} {'crashed':>8}")
    for kind in sorted(tally.tried):
        counts = (
            tally.tried[kind],
            tally.accepted[kind],
            tally.rejected[kind],
            tally.crashed[kind],
        )
        lines.append(f"{kind:<16} {counts[0]:>8} {counts[1]:>9} {counts[2]:>9} {counts[3]:>8}")
    totals = [sum(c.values()) for c in (tally.accepted, tally.rejected, tally.crashed)]
    lines.append(f"{'total':<16} {total:>8} {totals[0]:>9} {totals[1]:>9} {totals[2]:>8}")
    lines += ["", "rejected, by reason:"]
    lines += [f"  {count:>8}  {reason}" for reason, count in tally.reasons.most_common()]
    lines += ["", f"rejected but not counted, or leaving a row: {tally.miscounted}"]
    lines += ["", f"crashes: {sum(c.count for c in tally.crashes.values())}"]
    for key, found in tally.crashes.items():
        name, payload = found.sample
        lines += [f"  {found.count:>8}  {key}", f"            {found.message}"]
        lines += [f"            e.g. topic {name[:80]!r}"]
        lines += [
            f"                 payload {payload[:160]!r}{'...' if len(payload) > 160 else ''}"
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz_ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60, help="how long to run (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="to replay a run (default: random)")
    parser.add_argument(
        "--database", default=None, help="the store to fill (default: a temporary SQLite file)"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    logging.disable(logging.WARNING)  # each rejection is logged; the tally says it all
    with tempfile.TemporaryDirectory() as directory:
        tally = run(args.seconds, seed, args.database or Path(directory) / "fuzz.db")
    print(report(tally, args.seconds, seed))
    return 1 if tally.crashes or tally.miscounted else 0


if __name__ == "__main__":
    sys.exit(main())
