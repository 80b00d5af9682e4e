"""Loopback networking for tests, benchmarks, drills and the demo: a free port, and an ASGI app under a
real uvicorn server in a thread.

One implementation of each, so a fix (e.g. waiting for ``started`` instead of sleeping) reaches every
caller: the fake Kubernetes API, the gateway tests, the approval benchmark and ``make demo``.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (also: a port that refuses)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UvicornThread:
    """``app`` under a real uvicorn server on 127.0.0.1:<port>, in a daemon thread (lifespan included).

    Use as a context manager, or ``start()`` / ``stop()``; ``start`` returns once uvicorn is serving
    and raises when it does not within ``start_timeout`` seconds."""

    def __init__(
        self,
        app: Any,
        port: int | None = None,
        *,
        log_level: str = "warning",
        lifespan: str = "on",
        name: str = "uvicorn",
        start_timeout: float = 15.0,
    ) -> None:
        import uvicorn

        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level, lifespan=lifespan)
        )
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def __enter__(self) -> UvicornThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
