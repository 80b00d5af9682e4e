"""Run a blocking call with a deadline it cannot ignore.

Some client calls take no timeout of their own (a websocket handshake, an action that blocks in a
vendor SDK). Running them in a daemon thread and waiting at most ``seconds`` keeps a step within its
timeout; the thread is abandoned (Python cannot kill it), which is why callers also pass socket
timeouts wherever the SDK accepts them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The call did not finish in time (distinct from a TimeoutError raised by the call itself)."""


def run_bounded(fn: Callable[[], T], seconds: float, name: str) -> T:
    """``fn()``, or :class:`DeadlineExceeded` after ``seconds``; exceptions of ``fn`` propagate."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeadlineExceeded(f"{name}: no answer within {seconds:g}s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
