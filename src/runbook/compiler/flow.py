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
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError

from runbook.actions.context import ActionError
from runbook.actions.registry import ActionSpec
from runbook.compiler.engine import (
    Engine,
    RunOptions,
    RunOutcome,
    StepFailed,
    StepRunner,
    direct_runner,
    is_transient,
)
from runbook.compiler.params import coerce_params
from runbook.compiler.prefect_log import (
    PrefectRunSink,
    expect_failure,
    flush_run_log,
    postmortem_artifact,
    quiet_expected_failures,
)
from runbook.compiler.wiring import RunWiring, WiringFactory
from runbook.core.expressions import ExpressionError
from runbook.core.states import RunStatus
from runbook.spec.models import ParamSpec, Playbook, Step
from runbook.store import launches

if TYPE_CHECKING:
    from prefect import Flow

log = logging.getLogger("runbook.prefect")
StepCall = Callable[[], dict[str, Any]]
SYSTEM_PARAMS = ("incident", "launch", "dry_run")


_current = threading.local()
_task_cache: dict[tuple[Any, ...], Any] = {}
_task_cache_lock = threading.Lock()
#: distinct (step, action, playbook) task objects a long-lived worker keeps
TASK_CACHE_SIZE = 4096


def _run_current_step() -> dict[str, Any]:
    """The body of every step's Prefect task: the call the step runner put in ``_current`` (the
    task runs inline on the flow's thread). One function for all steps, so a ``Task`` is built once
    per playbook step and reused by every run, not rebuilt (signature, key, options) for each call."""
    call: Callable[[], dict[str, Any]] = _current.stack[-1]
    return call()


class PrefectStepRunner:
    """Each executed step as a Prefect task run named by its step id and tagged with its action.

    Prefect is bookkeeping, never the verdict: the action is called exactly once per engine attempt.
    If Prefect fails *before* the action started (task-run creation, its states: the client already
    retried), the action runs without a task run; if it fails *after* the action returned, the
    action's result stands; the action's own error is the step's error. Each such case leaves one
    line in :meth:`notices` for the timeline."""

    def __init__(self, playbook: Playbook) -> None:
        quiet_expected_failures()
        self.playbook = playbook
        self._notices: list[str] = []

    def notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out

    def _task_for(self, step: Step, spec: ActionSpec) -> Any:
        tags = (spec.name, f"playbook:{self.playbook.name}", *(["destructive"] if spec.destructive else []))
        key = (step.id, tags)
        task = _task_cache.get(key)
        if task is None:
            from prefect import task as prefect_task_typed
            from prefect.cache_policies import NO_CACHE

            prefect_task: Any = prefect_task_typed  # its overloads do not cover a tuple-built options call
            task = prefect_task(
                _run_current_step,
                name=step.id,
                task_run_name=step.id,
                tags=list(tags),
                persist_result=False,
                cache_policy=NO_CACHE,
                retries=0,
                log_prints=False,
            )
            with _task_cache_lock:
                if len(_task_cache) >= TASK_CACHE_SIZE:
                    _task_cache.clear()
                _task_cache[key] = task
        return task

    @staticmethod
    def _expected(step: Step, exc: BaseException) -> None:
        """A typed failure runbook expects: Prefect logs it without a traceback (see prefect_log)."""
        if not isinstance(exc, ActionError | StepFailed | ExpressionError | ValidationError):
            return
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is None:
            return
        tolerated = step.on_failure == "continue" or (step.retries > 0 and is_transient(exc))
        expect_failure(str(ctx.task_run.id), tolerated)

    def __call__(self, step: Step, spec: ActionSpec, call: StepCall) -> dict[str, Any]:
        box: dict[str, Any] = {}

        def run_step() -> dict[str, Any]:
            box["started"] = True
            try:
                out = call()
            except BaseException as exc:
                box["error"] = exc
                self._expected(step, exc)
                raise
            box["output"] = out
            return out

        stack = getattr(_current, "stack", None)
        if stack is None:
            stack = _current.stack = []
        stack.append(run_step)
        try:
            result: dict[str, Any] = self._task_for(step, spec)()
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
        finally:
            stack.pop()


def prefect_step_runner(playbook: Playbook) -> StepRunner:
    return PrefectStepRunner(playbook)


def _annotation(spec: ParamSpec) -> Any:
    """The param's type for Prefect's form and validation: ``Literal`` for an ``enum``, bounds as
    ``ge``/``le`` (descriptions travel in the docstring, which is where Prefect reads them)."""
    base: Any = spec.python_type()
    if spec.enum:
        base = Literal[tuple(spec.enum)]
    if spec.type not in ("integer", "number") or (spec.minimum is None and spec.maximum is None):
        return base

    def bound(value: float | None) -> float | None:
        return int(value) if value is not None and spec.type == "integer" and value.is_integer() else value

    return Annotated[base, Field(ge=bound(spec.minimum), le=bound(spec.maximum))]


def _param_doc(name: str, spec: ParamSpec) -> str:
    """One ``Args:`` entry: the playbook's description, then what the form cannot show itself."""
    extra = []
    if spec.pattern:
        extra.append(f"must match {spec.pattern}")
    if spec.required and spec.default is None:
        extra.append("required")
    text = " ".join(spec.description.split()) or name
    return f"    {name}: {text}" + (f" ({'; '.join(extra)})" if extra else "")


def _docstring(playbook: Playbook) -> str:
    """The flow's doc: title, description, and an ``Args:`` section Prefect turns into the
    descriptions of the run form's fields."""
    args = [_param_doc(n, s) for n, s in playbook.params.items()]
    args += [
        "    incident: the PagerDuty incident that started the run (set by the gateway)",
        "    launch: one-time launch token (set by the gateway; leave empty)",
        "    dry_run: run read-only steps only and describe what destructive ones would do",
    ]
    description = " ".join(playbook.description.split())
    return "\n".join([playbook.title, "", description, "", "Args:", *args, ""])


def _signature(playbook: Playbook) -> inspect.Signature:
    params = []
    for name, spec in playbook.params.items():
        annotation: Any = _annotation(spec)
        default = spec.default if spec.default is not None or not spec.required else inspect.Parameter.empty
        if default is None or spec.type == "identifier":  # an empty table name is "not set": None
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
    sinks = rt.sinks(run_id, playbook)
    if prefect:
        sinks.append(PrefectRunSink(rt.store, run_id))  # the timeline as the flow run's log
    engine = Engine(
        rt.settings,
        rt.registry,
        rt.store,
        gate=rt.gate(),
        sinks=sinks,
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


def final_state(outcome: RunOutcome) -> Any:
    """The flow run's end state. A denial (or an abort) is its own state, not a failure: Prefect
    shows a ``Cancelled``-type state named ``Denied`` (``Aborted``), grey, apart from the red
    ``Failed`` of runs that really failed. The CLI's exit codes come from runbook's store (0, 1, 2)."""
    from prefect.states import Cancelled, Completed, Failed

    summary = {"run_id": outcome.run_id, "status": outcome.status, "reason": outcome.reason}
    message = f"{outcome.status}: {outcome.reason or ''}".strip().rstrip(":")
    if outcome.status == RunStatus.COMPLETED:
        return Completed(message="completed", data=summary)
    if outcome.status in (RunStatus.DENIED, RunStatus.ABORTED):
        return Cancelled(name=str(outcome.status).capitalize(), message=message[:2000], data=summary)
    return Failed(message=message[:2000], data=summary)


def _after_run(store: Any, run_id: str) -> None:
    """Once the run's end is recorded: the postmortem draft as an artifact (best effort)."""
    try:
        postmortem_artifact(store, run_id)
    except Exception as exc:  # noqa: BLE001 - an artifact must never change a run's outcome
        log.info("postmortem artifact: %s", type(exc).__name__)


def build_flow(playbook: Playbook, wiring: WiringFactory) -> Flow[Any, Any]:
    """A Prefect ``Flow`` that runs ``playbook``; its final state mirrors the run's status.

    ``wiring`` is called once per flow run (in the process that executes it) for the run's
    collaborators: see :mod:`runbook.runtime` (``Runtime.flow``), the one place that builds them."""
    from prefect import flow
    from prefect.runtime import flow_run

    from runbook.compiler.prefect_runs import settle

    def run(**kwargs: Any) -> Any:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        scheduled = bool(ctx and ctx.flow_run and getattr(ctx.flow_run, "auto_scheduled", False))
        run_id = str(flow_run.id)
        rt = wiring()
        try:
            outcome = run_playbook_here(
                playbook, run_id, dict(kwargs), rt, prefect=True, auto_scheduled=scheduled
            )
        finally:
            settle(run_id)  # pending Prefect bookkeeping (an unparked approval) before the final state
            flush_run_log(run_id)  # the run's timeline lines, posted in batches, before it ends
        _after_run(rt.store, run_id)
        return final_state(outcome)

    run.__signature__ = _signature(playbook)  # type: ignore[attr-defined]
    run.__name__ = playbook.name.replace("-", "_")
    run.__qualname__ = run.__name__
    run.__doc__ = _docstring(playbook)
    decorate: Any = flow  # Prefect's overloads do not cover a callable with a built signature
    built: Flow[Any, Any] = decorate(
        run,
        name=playbook.name,
        description=playbook.title,
        persist_result=False,
        log_prints=False,
        validate_parameters=True,
    )
    built.serialize_parameters = _plain_json(built.serialize_parameters)  # type: ignore[method-assign,assignment]
    return built


def _is_plain_json(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if depth > 32:
        return False
    if isinstance(value, list | tuple):
        return all(_is_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


Serializer = Callable[[dict[str, Any]], dict[str, Any]]


def _plain_json(prefect_serialize: Serializer) -> Serializer:
    """Flow parameters as the API gets them, without Prefect's encoder when they are plain JSON.

    A playbook's parameters are coerced to JSON types (str, int, bool, lists, dicts) before the
    flow is called; Prefect's generic encoder imports FastAPI (~0.1 s) on the first run of every
    process, on the path to the first step. Anything else still goes through Prefect's."""

    def serialize(parameters: dict[str, Any]) -> dict[str, Any]:
        if all(_is_plain_json(v) for v in parameters.values()):
            return {k: _copy_json(v) for k, v in parameters.items()}
        return prefect_serialize(parameters)

    return serialize


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(v) for v in value]
    return value
