"""The composition root: one typed runtime, built from a ``Settings`` handed in, wires every layer.

Every entry point gets its collaborators here and nowhere else: the CLI, ``runbook serve`` and the
Prefect entrypoints (``flows/``), the gateway (both routes from the same runtime), drills and tests.
Lower layers only declare what they need (a ``Sink``, a ``RunPauser``, a role source, a flusher);
this module is the one place that knows which implementation each gets: the Slack thread when a bot
token is set, Prefect's pause/resume inside flow runs, PagerDuty on-call when a token is set.
Settings are read once (``Settings.from_env()`` at the process's edge) and never from
``os.environ`` below this point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from runbook.actions.registry import ActionRegistry, default_registry
from runbook.approvals.pausing import RunPauser
from runbook.approvals.policy import RoleSource
from runbook.approvals.service import Approvals
from runbook.approvals.waiting import StoreGate
from runbook.compiler.prefect_runs import PrefectPauser, crash_flow_run
from runbook.core import redact
from runbook.core.gate import Gate
from runbook.core.settings import Settings
from runbook.slack.sink import flush_outbox, sink_for_settings
from runbook.spec.models import Playbook
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from runbook.timeline.reaper import Reaper
from runbook.timeline.recorder import ConsoleSink, Sink

if TYPE_CHECKING:
    from prefect import Flow

log = logging.getLogger("runbook")


def role_sources(settings: Settings) -> dict[str, RoleSource]:
    """``pagerduty:<id>`` approvers: who is on call now, when a PagerDuty token is configured."""
    if not settings.pagerduty_api_token:
        return {}
    from runbook.actions.pagerduty.actions import oncall_role_source

    return {"pagerduty": oncall_role_source(settings)}


@dataclass
class Runtime:
    """What a process needs to run playbooks and decide approvals, built once per settings."""

    settings: Settings
    registry: ActionRegistry
    store: TimelineStore
    #: how a waiting step parks its run: Prefect's pause/resume, or NoPauser outside flow runs
    pauser: RunPauser = field(default_factory=PrefectPauser)
    _approvals: Approvals | None = field(default=None, repr=False)

    # -- timeline ------------------------------------------------------------------------------
    def sinks(self, run_id: str, playbook: Playbook | None = None, console: bool = True) -> list[Sink]:
        """Where a run's events go: the console, and its Slack thread when a bot token is set."""
        # the console also shows decisions other processes record for this run (Slack, `runbook approve`)
        sinks: list[Sink] = [ConsoleSink(store=self.store, run_id=run_id)] if console else []
        slack = sink_for_settings(self.settings, self.store, run_id, playbook)
        if slack is not None:
            sinks.append(slack)
        return sinks

    def _slack_sinks(self, run_id: str) -> list[Sink]:
        slack = sink_for_settings(self.settings, self.store, run_id)
        return [slack] if slack is not None else []

    def flush_slack(self) -> None:
        if self.settings.slack_bot_token:
            flush_outbox(self.settings, self.store)

    # -- approvals -----------------------------------------------------------------------------
    def approvals(self) -> Approvals:
        """The decision service over this store: one per runtime (its policy file is cached)."""
        if self._approvals is None:
            self._approvals = Approvals(
                self.settings,
                self.store,
                sinks_for=self._slack_sinks,
                flush=self.flush_slack,
                pauser=self.pauser,
                role_sources=role_sources(self.settings),
            )
        return self._approvals

    def gate(self) -> Gate:
        """Every gated step of a run waits here; without SLACK_BOT_TOKEN the request and the exact
        ``runbook approve`` command are printed to the console."""
        return StoreGate(self.approvals(), console=not self.settings.slack_bot_token)

    def reaper(self, **kw: Any) -> Reaper:
        """Marks runs whose worker died as crashed, in the store and in Prefect."""
        return Reaper(self.store, on_crash=crash_flow_run, **kw)

    # -- flows ---------------------------------------------------------------------------------
    def flow(self, playbook: Playbook, registry: ActionRegistry | None = None) -> Flow[Any, Any]:
        """``playbook`` as a Prefect flow whose runs are wired by this runtime."""
        from runbook.compiler.flow import build_flow

        if registry is None:
            return build_flow(playbook, lambda: self)
        other = Runtime(self.settings, registry, self.store, self.pauser)
        return build_flow(playbook, lambda: other)


def build_runtime(settings: Settings | None = None, registry: ActionRegistry | None = None) -> Runtime:
    """The runtime for ``settings`` (read from the environment, once, when not given)."""
    settings = settings or Settings.from_env()
    redact.register(settings.secrets())
    return Runtime(
        settings=settings,
        registry=registry or cached_registry(),
        store=TimelineStore(open_database(settings.database_url)),
    )


RuntimeFactory = Callable[[], Runtime]


@lru_cache(maxsize=1)
def cached_registry() -> ActionRegistry:
    """The built-in registry, built once per process (it is immutable after construction)."""
    return default_registry()


def from_environment() -> Runtime:
    """A runtime from this process's environment, read now: the wiring of flows whose settings are
    the process's own (Prefect entrypoints, served deployments, tests that set the environment)."""
    return build_runtime()
