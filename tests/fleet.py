"""One agent and one controller, as real processes, on a test broker: the end-to-end harness."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpsfleet.controller.db.store import Store, StoreError
from cpsfleet.controller.model import HostView
from tests.conftest import Broker, Service, run_cli, wait_for

WILL_DELAY = 2
# Each controller's dashboard on a free port (its log tells which), so that tests never clash.
DASHBOARD = '[dashboard]\nlisten = "127.0.0.1:0"\n'


class Fleet:
    """An agent's and a controller's configuration: start them, read what the controller knows."""

    def __init__(
        self,
        home: Path,
        broker: Broker,
        services: Callable[..., Service],
        webhook_url: str = "",
        database: str | None = None,
    ) -> None:
        """``database``: the controller's (a path or a PostgreSQL URL), by default a file in
        ``home``."""
        self.home, self.services = home, services
        self.host_id = f"ws-{uuid.uuid4().hex[:8]}"
        self.database = database or str(home / "fleet.db")
        self.agent_conf = home / "agent.toml"
        state = home / "agent"
        self.agent_conf.write_text(
            f'broker = "{broker.url}"\nsite = "Lyon"\nhost_id = "{self.host_id}"\n'
            f'interval = 60\nsplay = 0\nwill_delay = {WILL_DELAY}\nstate_dir = "{state}"\n'
        )
        self.controller_conf = home / "controller.toml"
        channels = f'[alerts]\nchannels = ["{webhook_url}"]\n' if webhook_url else ""
        self.controller_conf.write_text(
            f'broker = "{broker.url}"\ndatabase = "{self.database}"\nevaluate_every = 1\n'
            f"{channels}{DASHBOARD}"
        )

    def agent(self) -> Service:
        return self.services(
            self.home / "agent.log", "agent", "run", "--config", str(self.agent_conf)
        )

    def controller(self) -> Service:
        return self.services(
            self.home / "controller.log", "controller", "run", "--config", str(self.controller_conf)
        )

    def dashboard_url(self, timeout: float = 15) -> str:
        """The started controller's dashboard address, as its log announces it."""
        log = self.home / "controller.log"
        found: list[str] = []

        def announced() -> bool:
            text = log.read_text(errors="replace") if log.exists() else ""
            found[:] = re.findall(r"dashboard on (http\S+)", text)
            return bool(found)

        wait_for(announced, timeout, "the controller's dashboard")
        return found[-1]

    def store(self) -> Store | None:
        try:
            return Store.open_readonly(self.database)
        except StoreError:  # not created, or not migrated yet by the starting controller
            return None

    def view(self) -> HostView | None:
        store = self.store()
        if store is None:
            return None
        with store:
            return store.host_view(self.host_id)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        store = self.store()
        if store is None:
            return []
        with store:
            return list(store.database.execute(sql, params).fetchall())

    def findings(self) -> set[tuple[str, str]]:
        result = run_cli("controller", "findings", "--json", "--database", self.database)
        assert result.returncode == 0, result.stderr
        return {
            (f["rule"], f["subject"])
            for f in json.loads(result.stdout)
            if f["host_id"] == self.host_id
        }


def card_serials(view: HostView | None) -> set[str | None]:
    return {card.serial for card in view.cards} if view else set()
