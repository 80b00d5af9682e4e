"""Wiring: build the engine's collaborators (store, registry, sinks, gate) from settings.

One place decides which timeline sinks and which approval gate a run gets, so the CLI, served
deployments and tests assemble runs the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from runbook.core import redact
from runbook.actions.registry import ActionRegistry, default_registry
from runbook.core.gate import Gate
from runbook.core.settings import Settings
from runbook.store.database import Database
from runbook.timeline.recorder import ConsoleSink, Sink
from runbook.store.timeline import TimelineStore

log = logging.getLogger("runbook")


@dataclass
class Runtime:
    settings: Settings
    registry: ActionRegistry
    store: TimelineStore

    def sinks(self, run_id: str, playbook: Any = None, console: bool = True) -> list[Sink]:
        sinks: list[Sink] = [ConsoleSink()] if console else []
        try:
            from runbook.slack.sink import slack_sink_for  # type: ignore[import-not-found]
        except ImportError:
            return sinks
        slack = slack_sink_for(self, run_id, playbook)
        if slack is not None:
            sinks.append(slack)
        return sinks

    def gate(self) -> Gate:
        try:
            from runbook.approvals.wiring import gate_for  # type: ignore[import-not-found]
        except ImportError:
            from runbook.core.gate import RefusingGate

            return RefusingGate()
        return gate_for(self)


def build_runtime(settings: Settings | None = None, registry: ActionRegistry | None = None) -> Runtime:
    settings = settings or Settings.from_env()
    redact.register(settings.secrets())
    return Runtime(
        settings=settings,
        registry=registry or cached_registry(),
        store=TimelineStore(Database.from_url(settings.database_url)),
    )


@lru_cache(maxsize=1)
def cached_registry() -> ActionRegistry:
    """The built-in registry, built once per process (it is immutable after construction)."""
    return default_registry()
