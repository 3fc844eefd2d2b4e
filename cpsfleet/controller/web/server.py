"""The dashboard's HTTP server: uvicorn in a thread of the controller, on a socket bound first.

Binding before anything else starts turns a busy port or a bad address into an
error at startup, not a log line from a background thread.

A reverse proxy on this machine (nginx, Apache, on 127.0.0.1 or ::1) names the address
it serves in ``X-Forwarded-For``: uvicorn takes the source from it for that proxy only,
so that sign-in is throttled per real source and not for everyone behind the proxy.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from fastapi import FastAPI

from cpsfleet.controller.web.auth import DashboardSettings

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 10.0
LOCAL_PROXIES = ("127.0.0.1", "::1")


class DashboardError(Exception):
    """The dashboard cannot listen where it was told to."""


class DashboardServer:
    def __init__(self, settings: DashboardSettings, app: FastAPI) -> None:
        self.settings = settings
        address = settings.address
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((address.host, address.port))
            self.socket.listen(128)
        except OSError as error:
            self.socket.close()
            raise DashboardError(
                f"the dashboard cannot listen on {address}: {error.strerror or error}"
            ) from error
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            ssl_certfile=settings.tls_cert or None,
            ssl_keyfile=settings.tls_key or None,
            timeout_graceful_shutdown=5,
            proxy_headers=True,
            # Set here, not from uvicorn's FORWARDED_ALLOW_IPS: no environment variable may
            # let a remote client choose the address its failed sign-ins are counted against.
            forwarded_allow_ips=list(LOCAL_PROXIES),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self.thread.start()
        log.info("dashboard on %s", self.url)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except Exception:
            log.exception("the dashboard stopped")

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(STOP_TIMEOUT_S)
        self.socket.close()
