"""A renewed client certificate is taken at the next connection, and nothing is lost meanwhile."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cpsfleet.controller.pki import ca as pki
from cpsfleet.schemas.broker import TlsContext, TlsFiles
from tests.conftest import BASE_PORT, wait_for
from tests.test_mtls_fleet import tls_fleet


def test_the_context_reloads_only_changed_files(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    issued = pki.issue(tmp_path, "agent", "ws-a")
    context = TlsContext(
        TlsFiles(str(tmp_path / "ca.pem"), str(issued.certificate), str(issued.key))
    )
    assert context.reload() is False  # loaded at creation, unchanged since
    time.sleep(0.01)
    pki.renew(tmp_path, "agent", "ws-a")
    os.utime(issued.certificate)
    assert context.reload() is True
    assert context.reload() is False


def test_renewal_then_a_broker_restart_loses_nothing(
    tmp_path, mtls_broker, services, insert, examples
) -> None:
    fleet = tls_fleet(tmp_path, mtls_broker, services, "ws-a", cert_of="ws-a")
    fleet.controller()
    agent = fleet.agent()
    wait_for(lambda: fleet.view() is not None, timeout=20, what="ws-a over mTLS")
    pki.renew(mtls_broker.pki, "agent", "ws-a")
    mtls_broker.restart()
    insert(examples["doctor-cps3"], BASE_PORT)
    wait_for(
        lambda: (v := fleet.view()) is not None and len(v.cards) == 1,
        timeout=60,
        what="the card, reported after the renewal and the broker restart",
    )
    assert "renewed client certificate loaded" in agent.logs()
