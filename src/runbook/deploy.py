"""``runbook serve``: every playbook as a Prefect deployment ``<playbook>/<playbook>`` (the flow and the
deployment are both named after the playbook), schedules included.

Two ways a flow run of these deployments gets executed, both in this process tree:

* Prefect's runner (``serve``): polls the API every ``PREFECT_RUNNER_POLL_FREQUENCY`` seconds (we
  default it to 1 without the fast lane, 5 with it; Prefect's default is 10) and starts each run in
  a fresh subprocess (~1.3 s of Python and Prefect imports). It handles schedules, cancellation
  and crash reporting.
* the *fast lane* (:class:`FastLane`, on unless ``RUNBOOK_FAST_LANE=0``): polls every 0.2 s for runs
  of the same deployments that are due, claims each by proposing ``Pending`` (Prefect's orchestration
  accepts that once, so the runner and the fast lane never both run one), and executes it on a thread
  of this already-warm process. Webhook -> first step is then well under a second. The cost: no
  process isolation between runs, and cancelling such a run from the UI only stops it between steps.
  See docs/DEPLOY.md for the measurements and the trade-off.

Shutting down must not pause schedules (Prefect's default ``pause_on_shutdown=True`` would stop the
daily hygiene runs until someone resumes them), hence ``pause_on_shutdown=False``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runbook.core.settings import Settings
from runbook.spec.models import Playbook

log = logging.getLogger("runbook.deploy")
ENTRYPOINTS = Path(__file__).resolve().parents[2] / "flows" / "playbooks.py"


def load_playbooks(folder: Path, registry: Any = None) -> list[Playbook]:
    """Every playbook of ``folder``; :class:`PlaybookError` listing all problems of a bad one."""
    from runbook.runtime import cached_registry
    from runbook.spec.loading import load_folder

    return load_folder(folder, registry or cached_registry())


def schedules_for(playbook: Playbook) -> list[Any]:
    from prefect.schedules import Cron

    return [
        # no "trigger" parameter: a scheduled run is known by Prefect's own auto_scheduled flag
        Cron(s.cron, timezone=s.timezone, parameters=dict(s.params))
        for s in playbook.triggers.schedule
    ]


def deployment_name(playbook: Playbook | str) -> str:
    """A playbook's deployment is named after it: ``<playbook>/<playbook>`` in Prefect's UI and API.

    (Earlier versions named every deployment ``runbook``; the gateway's starter still falls back to
    ``<playbook>/runbook`` while an older ``serve`` runs, see :mod:`runbook.gateway.starter`.)"""
    return playbook if isinstance(playbook, str) else playbook.name


def deployments_for(playbooks: list[Playbook], name: str | None = None) -> list[Any]:
    """One ``RunnerDeployment`` per playbook (flow name = deployment name = playbook name, unless
    ``name`` gives every deployment that name)."""
    from runbook.compiler.flow import build_flow
    from runbook.runtime import from_environment

    deployments = []
    for pb in playbooks:
        # to_deployment is sync here (no running loop); its declared type also admits a coroutine
        deployment: Any = build_flow(pb, from_environment).to_deployment(
            name=name or deployment_name(pb),
            schedules=schedules_for(pb),
            tags=["runbook", f"owner:{pb.owner}"],
            description=pb.title,
        )
        # The runner's subprocess loads the flow again by entrypoint; a flow built at run time has no
        # importable name of its own, so point at flows/playbooks.py, which builds the same flow.
        deployment.entrypoint = f"{ENTRYPOINTS}:{pb.name.replace('-', '_')}"
        deployments.append(deployment)
    return deployments


class FastLane:
    """Runs due flow runs of our deployments on threads of this warm process (see module doc)."""

    def __init__(self, flows: dict[str, Any], *, limit: int = 10, poll_seconds: float = 0.2) -> None:
        self.flows = flows  # flow name -> Flow
        self.limit = limit
        self.poll_seconds = poll_seconds
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="runbook-fast-lane")
        self._busy = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids: dict[Any, Any] = {}  # deployment id -> Flow

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._loop, name="runbook-fast-lane-poller", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()

    def _resolve(self, client: Any) -> None:
        from prefect.exceptions import ObjectNotFound

        known = {f.name for f in self._ids.values()}
        for name, flow in self.flows.items():
            if name in known:
                continue
            try:
                dep = client.read_deployment_by_name(f"{name}/{deployment_name(name)}")
            except ObjectNotFound:
                continue
            self._ids[dep.id] = flow

    def _loop(self) -> None:
        from prefect.client.orchestration import get_client

        while not self._stop.is_set():
            try:
                with get_client(sync_client=True) as client:
                    while not self._stop.is_set():
                        if len(self._ids) < len(self.flows):
                            self._resolve(client)
                        self.poll_once(client)
                        time.sleep(self.poll_seconds)
            except Exception as exc:  # noqa: BLE001 - Prefect restarting: back off, keep going
                log.warning("fast lane: %s: %s", type(exc).__name__, exc)
                time.sleep(2)

    def poll_once(self, client: Any) -> int:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.states import Pending
        from prefect.types._datetime import now

        with self._lock:
            free = self.limit - self._busy
        if free <= 0 or not self._ids:
            return 0
        due: Any = now("UTC")  # Prefect's filter wants its own DateTime type, which this is at run time
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=list(self._ids)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=due),
            ),
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
            limit=free,
        )
        taken = 0
        for run in runs:
            result = client.set_flow_run_state(run.id, Pending())
            if result.status != SetStateStatus.ACCEPT:
                continue  # the runner (or another fast lane) has it
            with self._lock:
                self._busy += 1
            self._pool.submit(self._execute, self._ids[run.deployment_id], run.id)
            taken += 1
        return taken

    def _execute(self, flow: Any, flow_run_id: Any) -> None:
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow

        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run_id)
            run_flow(flow, flow_run=run, return_type="state")
        except Exception as exc:  # noqa: BLE001 - the engine records failures on the run itself
            log.warning("fast lane run %s ended with %s: %s", flow_run_id, type(exc).__name__, exc)
        finally:
            with self._lock:
                self._busy -= 1


def _prefect_env(fast_lane: bool) -> None:
    """Settings Prefect reads at import: must be set before the first ``import prefect``.

    With the fast lane on, the runner is the fallback (fast lane busy or stopped): polling it every
    5 s instead of 1 s keeps it from winning the race for a due run and taking the slow subprocess
    path (that race was the p95 tail, 3.2 s, when both polled often)."""
    from runbook.compiler.prefect_runs import prefect_process_defaults

    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "5" if fast_lane else "1")  # Prefect's own
    prefect_process_defaults(Settings.from_env().prefect_api_url)


def serve_command(args: argparse.Namespace) -> int:
    """Serve every playbook until stopped (SIGINT/SIGTERM); schedules keep firing afterwards."""
    fast_lane = Settings.from_env().fast_lane
    _prefect_env(fast_lane)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from runbook.compiler.prefect_runs import server_problem

    problem = server_problem(Settings.from_env().prefect_api_url)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    settings = Settings.from_env()
    playbooks = load_playbooks(settings.playbooks)
    if not playbooks:
        print(f"error: no playbooks in {settings.playbooks}/", file=sys.stderr)
        return 1
    from prefect import serve

    deployments = deployments_for(playbooks)
    limit = int(getattr(args, "limit", 10) or 10)
    if fast_lane:
        from runbook.compiler.flow import build_flow
        from runbook.runtime import from_environment

        FastLane({pb.name: build_flow(pb, from_environment) for pb in playbooks}, limit=limit).start()
    from runbook.runtime import build_runtime

    build_runtime(settings).reaper().start()  # runs whose worker died -> crashed
    names = ", ".join(f"{pb.name}/{deployment_name(pb)}" for pb in playbooks)
    print(f"serving {len(playbooks)} playbook(s): {names}", flush=True)
    serve(*deployments, limit=limit, pause_on_shutdown=False, print_starting_message=False)
    return 0
