"""What an action receives besides its params: connections, logger, dry-run flag, run identity.

Connections are built lazily by factories that live in each backend module (so vendor SDKs are
imported only there) and cached per run; tests pass ready-made clients through ``provided``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from runbook.core.settings import Settings

T = TypeVar("T")


class ActionError(Exception):
    """A step failed for a reason the operator should read (already redacted, one line).

    ``transient`` says whether trying the same call again may succeed (the engine retries only
    those, when the step declares ``retries``); a refusal or a bad input is never retried."""

    transient: bool = False

    def __init__(self, message: str, *, backend: str | None = None, transient: bool | None = None) -> None:
        self.backend = backend
        if transient is not None:
            self.transient = transient
        super().__init__(f"{backend}: {message}" if backend else message)


class BackendUnavailable(ActionError):
    """The backend could not be reached at all (connection refused, DNS, timeout): transient."""

    transient = True


class GuardrailRefused(ActionError):
    """A destructive action refused to act because a safety bound would be crossed: permanent."""


class NoteSink(Protocol):
    def note(self, summary: str, details: dict[str, Any] | None = None) -> None: ...


class Connections:
    """Lazily built, cached backend clients for one run. ``close()`` releases them."""

    def __init__(self, settings: Settings, provided: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._provided = dict(provided or {})
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: str, factory: Callable[[Settings], T]) -> T:
        # One cache holds every backend's client; the key names the client and fixes its type.
        if key in self._provided:
            provided: T = self._provided[key]
            return provided
        with self._lock:
            if key not in self._built:
                self._built[key] = factory(self.settings)
            built: T = self._built[key]
            return built

    def close(self) -> None:
        with self._lock:
            built, self._built = self._built, {}
        for client in built.values():
            close = getattr(client, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing must never fail a run
                    pass


@dataclass
class ActionContext:
    """Passed as the first argument to every action."""

    connections: Connections
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("runbook.actions"))
    dry_run: bool = False
    run_id: str = ""
    playbook: str = ""
    step_id: str = ""
    deadline: float | None = None
    timeline: NoteSink | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    registry: Any = None  # the ActionRegistry of the run, for actions that call other actions

    @property
    def settings(self) -> Settings:
        return self.connections.settings

    def remaining(self, default: float = 30.0) -> float:
        """Seconds left before the step's timeout (``default`` when it has none), at least 0.1."""
        if self.deadline is None:
            return default
        return max(0.1, self.deadline - time.monotonic())
