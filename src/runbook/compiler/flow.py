"""Playbook → Prefect flow.

The flow has the playbook's name and a real signature built from its ``params`` (so the Prefect UI
shows a form and validates input), plus ``incident``, ``launch`` and ``dry_run``. Who started the run
and how (requester, trigger) is never a parameter: it comes from :mod:`runbook.store.launches`
(the process that called the flow, a gateway launch token redeemed once, or Prefect's scheduler).
Each executed step is a Prefect task run named by its step id and tagged with its action. Step
outputs are redacted and never persisted as Prefect results (``persist_result=False``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runbook.actions.registry import ActionSpec
from runbook.compiler.engine import Engine, RunOptions, RunOutcome, StepRunner, direct_runner
from runbook.compiler.params import coerce_params
from runbook.compiler.wiring import RunWiring, WiringFactory
from runbook.core.states import RunStatus
from runbook.spec.models import Playbook, Step
from runbook.store import launches

if TYPE_CHECKING:
    from prefect import Flow

StepCall = Callable[[], dict[str, Any]]
SYSTEM_PARAMS = ("incident", "launch", "dry_run")


class PrefectStepRunner:
    """Each executed step as a Prefect task run named by its step id and tagged with its action.

    Prefect is bookkeeping, never the verdict: the action is called exactly once per engine attempt.
    If Prefect fails *before* the action started (task-run creation, its states: the client already
    retried), the action runs without a task run; if it fails *after* the action returned, the
    action's result stands; the action's own error is the step's error. Each such case leaves one
    line in :meth:`notices` for the timeline."""

    def __init__(self, playbook: Playbook) -> None:
        from prefect import task as prefect_task
        from prefect.cache_policies import NO_CACHE

        self.playbook = playbook
        self._task: Any = prefect_task  # Prefect's overloads do not cover a per-step options call
        self._no_cache = NO_CACHE
        self._tasks: dict[str, Any] = {}
        self._notices: list[str] = []

    def notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out

    def _options(self, step: Step, spec: ActionSpec) -> dict[str, Any]:
        tags = [spec.name, f"playbook:{self.playbook.name}", *(["destructive"] if spec.destructive else [])]
        return {
            "name": step.id,
            "task_run_name": step.id,
            "tags": tags,
            "persist_result": False,
            "cache_policy": self._no_cache,
            "retries": 0,
            "log_prints": False,
        }

    def __call__(self, step: Step, spec: ActionSpec, call: StepCall) -> dict[str, Any]:
        box: dict[str, Any] = {}

        def run_step() -> dict[str, Any]:
            box["started"] = True
            try:
                out = call()
            except BaseException as exc:
                box["error"] = exc
                raise
            box["output"] = out
            return out

        try:
            t = self._task(run_step, **self._options(step, spec))
            result: dict[str, Any] = t()
            return result
        except Exception as exc:
            if "error" in box:
                raise box["error"] from None
            if "output" in box:
                self._notices.append(
                    f"{step.label}: Prefect could not record this step's task run ({type(exc).__name__});"
                    " the step's result stands"
                )
                output: dict[str, Any] = box["output"]
                return output
            if box.get("started"):
                raise
            self._notices.append(
                f"{step.label}: Prefect could not start a task run ({type(exc).__name__}); the step ran"
                " without one"
            )
            return call()


def prefect_step_runner(playbook: Playbook) -> StepRunner:
    return PrefectStepRunner(playbook)


def _signature(playbook: Playbook) -> inspect.Signature:
    params = []
    for name, spec in playbook.params.items():
        annotation: Any = spec.python_type()
        default = spec.default if spec.default is not None or not spec.required else inspect.Parameter.empty
        if default is None:
            annotation = annotation | None
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    params += [
        inspect.Parameter(
            "incident", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=dict[str, Any] | None
        ),
        inspect.Parameter("launch", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None),
        inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool),
    ]
    return inspect.Signature(params, return_annotation=dict[str, Any])


def run_playbook_here(
    playbook: Playbook,
    run_id: str,
    kwargs: dict[str, Any],
    wiring: RunWiring,
    *,
    prefect: bool,
    auto_scheduled: bool = False,
) -> RunOutcome:
    """Execute ``playbook`` in this process with the collaborators ``wiring`` provides."""
    rt = wiring
    system = {k: kwargs.pop(k) for k in SYSTEM_PARAMS if k in kwargs}
    launch = launches.resolve(rt.store.db, system.get("launch"), run_id, auto_scheduled=auto_scheduled)
    incident = launch.incident if launch.incident is not None else system.get("incident")
    engine = Engine(
        rt.settings,
        rt.registry,
        rt.store,
        gate=rt.gate(),
        sinks=rt.sinks(run_id, playbook),
        step_runner=prefect_step_runner(playbook) if prefect else direct_runner,
        # how often the run proves it is alive (the reaper's threshold must be several beats)
        heartbeat_seconds=rt.settings.heartbeat_seconds,
    )
    opts = RunOptions(
        run_id=run_id,
        params=coerce_params(playbook, kwargs),
        incident=incident,
        requested_by=launch.requested_by,
        trigger=launch.trigger,
        dry_run=bool(system.get("dry_run")),
    )
    return engine.run(playbook, opts)


def build_flow(playbook: Playbook, wiring: WiringFactory) -> Flow[Any, Any]:
    """A Prefect ``Flow`` that runs ``playbook``; its final state mirrors the run's status.

    ``wiring`` is called once per flow run (in the process that executes it) for the run's
    collaborators: see :mod:`runbook.runtime` (``Runtime.flow``), the one place that builds them."""
    from prefect import flow
    from prefect.runtime import flow_run
    from prefect.states import Completed, Failed

    from runbook.compiler.prefect_runs import settle

    def run(**kwargs: Any) -> Any:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        scheduled = bool(ctx and ctx.flow_run and getattr(ctx.flow_run, "auto_scheduled", False))
        run_id = str(flow_run.id)
        try:
            outcome = run_playbook_here(
                playbook, run_id, dict(kwargs), wiring(), prefect=True, auto_scheduled=scheduled
            )
        finally:
            settle(run_id)  # pending Prefect bookkeeping (an unparked approval) before the final state
        summary = {"run_id": outcome.run_id, "status": outcome.status, "reason": outcome.reason}
        if outcome.status == RunStatus.COMPLETED:
            return Completed(message="completed", data=summary)
        return Failed(message=f"{outcome.status}: {outcome.reason or ''}".strip(), data=summary)

    run.__signature__ = _signature(playbook)  # type: ignore[attr-defined]
    run.__name__ = playbook.name.replace("-", "_")
    run.__qualname__ = run.__name__
    run.__doc__ = f"{playbook.title}\n\n{playbook.description}"
    decorate: Any = flow  # Prefect's overloads do not cover a callable with a built signature
    built: Flow[Any, Any] = decorate(
        run,
        name=playbook.name,
        description=playbook.title,
        persist_result=False,
        log_prints=False,
        validate_parameters=True,
    )
    return built
