"""The run loop: evaluate, render, gate, execute and record every step of a playbook.

The engine knows nothing about Prefect: ``StepRunner`` is the seam. ``runbook.compiler.flow`` runs
each step as a Prefect task through it; rehearsals and ``plan`` call steps directly. Every outcome
is a timeline event; the run's status is derived from them:

* ``completed`` — every step succeeded, was skipped, or failed with ``on_failure: continue``
* ``failed``    — a step failed with ``on_failure: abort``
* ``denied``    — a gated step was denied or expired with ``on_denied: abort``
* ``aborted``   — the run was interrupted (cancelled, lost its worker)

``finally`` steps run in every case.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pydantic import ValidationError

from runbook.actions.context import ActionContext, Connections
from runbook.actions.registry import ActionRegistry, ActionSpec, describe
from runbook.compiler.run_state import (
    EXIT_CODES,
    RunOptions,
    RunOutcome,
    RunState,
    StepFailed,
    StepRunner,
    StepTimeout,
    as_output,
    brief,
    call_with_timeout,
    direct_runner,
    error_line,
    is_transient,
)
from runbook.core.durations import format_duration
from runbook.core.events import Kind
from runbook.core.expressions import ExpressionError, evaluate_condition, render_value
from runbook.core.gate import Decision, Gate, GateRequest, RefusingGate, plan_hash
from runbook.core.redact import redact, redact_data
from runbook.core.settings import Settings
from runbook.core.states import RunStatus, StepStatus
from runbook.spec.models import Playbook, Step
from runbook.store.ledger import Ledger
from runbook.store.timeline import TimelineStore
from runbook.timeline.recorder import Recorder, Sink, StepWrite

log = logging.getLogger("runbook.engine")
__all__ = [
    "EXIT_CODES",
    "Engine",
    "RunOptions",
    "RunOutcome",
    "StepFailed",
    "StepRunner",
    "StepTimeout",
    "direct_runner",
    "error_line",
    "is_transient",
]
MAX_REASKS = 3


class Engine:
    def __init__(
        self,
        settings: Settings,
        registry: ActionRegistry,
        store: TimelineStore,
        *,
        gate: Gate | None = None,
        sinks: list[Sink] | None = None,
        connections: Connections | None = None,
        step_runner: StepRunner = direct_runner,
        heartbeat_seconds: float = 10.0,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.gate = gate or RefusingGate()
        self.sinks = sinks or []
        self.connections = connections or Connections(settings)
        self.step_runner = step_runner
        self.ledger = Ledger(store.db)
        self.heartbeat_seconds = heartbeat_seconds

    # -- the run ---------------------------------------------------------------------------------
    def run(self, playbook: Playbook, opts: RunOptions) -> RunOutcome:
        incident_id = str(opts.incident.get("id")) if opts.incident and opts.incident.get("id") else None
        rec = Recorder(self.store, opts.run_id, incident_id=incident_id, sinks=self.sinks)
        self.store.start_run(
            opts.run_id,
            playbook.name,
            params={**opts.params, **({"incident": opts.incident} if opts.incident else {})},
            incident_id=incident_id,
            requested_by=opts.requested_by,
            trigger=opts.trigger,
            dry_run=opts.dry_run,
        )
        mode = " (dry run: destructive steps are only described)" if opts.dry_run else ""
        rec.emit(
            Kind.RUN_STARTED,
            f"{playbook.title}{mode}",
            actor=opts.requested_by,
            details={
                "playbook": playbook.name,
                "trigger": opts.trigger,
                "params": opts.params,
                "incident": opts.incident,
                "dry_run": opts.dry_run,
            },
        )
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(opts.run_id, stop), daemon=True)
        beat.start()
        state = RunState(playbook, opts, rec)
        status, reason = RunStatus.COMPLETED, None
        try:
            for step in playbook.steps:
                result = self._step(step, state, in_finally=False)
                if result in (StepStatus.FAILED, StepStatus.DENIED):
                    status = RunStatus(result)
                    reason = state.last_error
                    break
        except BaseException as exc:  # interrupted (KeyboardInterrupt, cancellation)
            status, reason = RunStatus.ABORTED, error_line(exc) or type(exc).__name__
            try:
                rec.emit(Kind.NOTE, f"run interrupted: {reason}")
                self._finally(playbook, state)
                self._finish(rec, state, status, reason)
            finally:
                stop.set()
            raise
        try:
            failed_finally = self._finally(playbook, state)
        finally:
            stop.set()
        if status == RunStatus.COMPLETED and failed_finally:
            status, reason = RunStatus.FAILED, f"finally step {failed_finally} failed: {state.last_error}"
        return self._finish(rec, state, status, reason)

    def _finally(self, playbook: Playbook, state: RunState) -> str | None:
        """Run every finally step whatever happens; the first that failed with ``on_failure:
        abort`` (e.g. a post-maintenance verification) is returned so it can fail a completed run."""
        first_failed = None
        for step in playbook.finally_:
            if self._step(step, state, in_finally=True) == StepStatus.FAILED and first_failed is None:
                first_failed = step.id
        return first_failed

    def _finish(self, rec: Recorder, state: RunState, status: str, reason: str | None) -> RunOutcome:
        counts: dict[str, int] = {}
        for s in state.statuses.values():
            counts[s] = counts.get(s, 0) + 1
        tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        rec.emit(
            Kind.RUN_FINISHED,
            f"run {status}" + (f": {reason}" if reason else "") + (f" ({tally})" if tally else ""),
            details={"status": status, "reason": reason, "steps": state.statuses},
        )
        self.store.finish_run(state.opts.run_id, status, reason)
        self.connections.close()
        return RunOutcome(state.opts.run_id, status, reason, state.outputs)

    def _heartbeat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            try:
                self.store.heartbeat(run_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat failed: %s", exc)

    # -- one step ----------------------------------------------------------------------------------
    def _step(self, step: Step, state: RunState, *, in_finally: bool) -> str:
        """Run one step; returns its status (succeeded/failed/skipped/dry_run/denied/continued)."""
        rec = state.rec
        spec = self.registry[step.action]
        context = state.context()
        try:
            if step.when is not None and not evaluate_condition(step.when, context):
                state.skip(step.id, f"condition false: {step.when.strip()}")
                rec.emit(
                    Kind.STEP_SKIPPED,
                    f"{step.label}: condition is false",
                    step_id=step.id,
                    details={"when": step.when},
                )
                return StepStatus.SKIPPED
            params = self._render(step, spec, context)
        except (ExpressionError, ValidationError) as exc:
            return self._failed(step, state, error_line(exc), in_finally)

        if spec.destructive or spec.manual:
            if state.opts.dry_run:
                return self._dry_run(step, spec, params, state)
            if step.gated:
                decision, params = self._gate(step, spec, params, state)
                if decision is None:
                    return self._failed(step, state, state.last_error or "approval failed", in_finally)
                if not decision.approved:
                    state.skip(step.id, f"{decision.outcome} by {', '.join(decision.approvers) or 'nobody'}")
                    if step.approval and step.approval.on_denied == "skip":
                        rec.emit(
                            Kind.STEP_SKIPPED,
                            f"{step.label}: not approved ({decision.outcome}); skipped",
                            step_id=step.id,
                        )
                        state.statuses[step.id] = StepStatus.SKIPPED
                        return StepStatus.SKIPPED
                    state.last_error = f"{step.label}: {decision.outcome}" + (
                        f" ({decision.reason})" if decision.reason else ""
                    )
                    state.statuses[step.id] = StepStatus.DENIED
                    return StepStatus.DENIED if not in_finally else StepStatus.SKIPPED
            elif step.approval and step.approval.policy == "none":
                rec.emit(
                    Kind.NOTE,
                    f"{step.label}: runs without approval — {step.approval.justification}",
                    step_id=step.id,
                )
        return self._execute(step, spec, params, state, in_finally)

    def _render(self, step: Step, spec: ActionSpec, context: dict[str, Any]) -> dict[str, Any]:
        deferred = spec.deferred_fields()
        rendered = {k: (v if k in deferred else render_value(v, context)) for k, v in step.with_.items()}
        model = spec.params_model.model_validate(rendered)
        return model.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def _context_for(self, step: Step, state: RunState, spec: ActionSpec) -> ActionContext:
        return ActionContext(
            connections=self.connections,
            log=logging.getLogger(f"runbook.actions.{spec.backend}"),
            dry_run=state.opts.dry_run,
            run_id=state.opts.run_id,
            playbook=state.playbook.name,
            step_id=step.id,
            deadline=(time.monotonic() + step.timeout) if step.timeout else None,
            timeline=state.rec,
            run_info={"context": state.context()},
            registry=self.registry,
        )

    def _dry_run(self, step: Step, spec: ActionSpec, params: dict[str, Any], state: RunState) -> str:
        try:
            text = describe(spec, self._context_for(step, state, spec), params)
        except Exception as exc:  # noqa: BLE001 - a describe failure is a finding too
            text = f"could not describe: {error_line(exc)}"
        gate = " (needs approval)" if step.gated else ""
        state.rec.emit(
            Kind.STEP_DRY_RUN,
            f"{step.label}: would {text}{gate}",
            step_id=step.id,
            details={"action": spec.name, "params": params, "would": text},
        )
        state.outputs[step.id] = {"dry_run": True, "would": text, "summary": f"would {text}"}
        state.statuses[step.id] = StepStatus.DRY_RUN
        return StepStatus.DRY_RUN

    def _gate(
        self, step: Step, spec: ActionSpec, params: dict[str, Any], state: RunState
    ) -> tuple[Decision | None, dict[str, Any]]:
        """Ask, then re-render and re-check before executing; a changed call voids the approval."""
        assert step.approval is not None
        for attempt in range(1, MAX_REASKS + 1):
            ctx = self._context_for(step, state, spec)
            try:
                text = describe(spec, ctx, params)
            except Exception as exc:  # noqa: BLE001
                state.last_error = f"{step.label}: cannot describe the call: {error_line(exc)}"
                return None, params
            digest = plan_hash(spec.name, params)
            shown = redact_data(params)
            if shown != params or redact(text) != text:
                # the approver would see a masked call while the hash covers the real one: an
                # approval of what nobody saw is no approval, so the step is not even offered
                state.last_error = (
                    f"{step.label}: the call carries a secret value that would be masked in the approval,"
                    " so nobody could see exactly what would run; not asked (pass secrets through the"
                    " backend's settings, never as step parameters)"
                )
                return None, params
            request = GateRequest(
                run_id=state.opts.run_id,
                playbook=state.playbook.name,
                step_id=step.id,
                step_title=step.label,
                kind="manual" if spec.manual else "approval",
                action=spec.name,
                params=shown,
                description=text,
                plan_hash=digest,
                evidence=state.evidence(step),
                approvers=step.approval.approvers,
                min_approvals=step.approval.min_approvals,
                two_person=step.approval.two_person,
                requested_by=state.opts.requested_by,
                timeout_seconds=step.approval.timeout,
                incident_id=state.rec.incident_id,
                attempt=attempt,
            )
            decision = self.gate.request(request, state.rec)
            if not decision.approved:
                return decision, params
            # re-render and re-check what will actually run
            try:
                context = state.context()
                fresh = self._render(step, spec, context)
                holds = step.approval.precondition is None or evaluate_condition(
                    step.approval.precondition, context
                )
            except (ExpressionError, ValidationError) as exc:
                state.last_error = f"{step.label}: re-check failed: {error_line(exc)}"
                return None, params
            if decision.plan_hash == digest and plan_hash(spec.name, fresh) == digest and holds:
                return decision, fresh
            why = "the call changed since it was approved" if holds else "the precondition no longer holds"
            state.rec.emit(
                Kind.APPROVAL_VOIDED,
                f"{step.label}: approval void — {why}; asking again",
                step_id=step.id,
                details={"approved_hash": decision.plan_hash, "current_hash": plan_hash(spec.name, fresh)},
            )
            params = fresh
            if not holds:
                return Decision(outcome="denied", reason=why, plan_hash=digest, channel="engine"), params
        state.last_error = f"{step.label}: approval voided {MAX_REASKS} times; giving up"
        return None, params

    def _execute(
        self, step: Step, spec: ActionSpec, params: dict[str, Any], state: RunState, in_finally: bool
    ) -> str:
        """Run the step's action (with its retries). What the step records commits in one
        transaction before the call (a destructive step's ledger claim with its ``step.started``,
        durable before anything runs) and one after it (the outcome, the ledger row, the step
        runner's notes)."""
        rec = state.rec
        digest = plan_hash(spec.name, params) if spec.destructive else ""
        attempts = step.retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            suffix = f" (attempt {attempt}/{attempts})" if attempts > 1 else ""
            with rec.step_write() as write:
                prior = (
                    self.ledger.claim(state.opts.run_id, step.id, digest, cur=write.cur)
                    if spec.destructive and attempt == 1
                    else None
                )
                if prior is None:
                    write.emit(
                        Kind.STEP_STARTED,
                        f"{step.label}{suffix}",
                        step_id=step.id,
                        details={"action": spec.name, "params": params, "attempt": attempt},
                    )
            if prior is not None:
                return self._already_claimed(step, state, prior, in_finally)
            ctx = self._context_for(step, state, spec)
            started = time.monotonic()

            def call(ctx: ActionContext = ctx) -> dict[str, Any]:
                result = call_with_timeout(
                    lambda: spec.fn(ctx, spec.params_model.model_validate(params)),
                    step.timeout,
                    f"{step.id} ({spec.name})",
                )
                return as_output(result)

            try:
                output = self.step_runner(step, spec, call)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a timeline event
                last = error_line(exc)
                if attempt < attempts and not is_transient(exc):
                    last += " (not retried: only an unreachable backend or a timeout is)"
                elif attempt < attempts:
                    with rec.step_write() as write:
                        self._runner_notes(write, step)
                        write.emit(
                            Kind.STEP_FAILED,
                            f"{step.label}: {last}; retrying in {format_duration(step.retry_delay)}",
                            step_id=step.id,
                            details={
                                "action": spec.name,
                                "error": last,
                                "attempt": attempt,
                                "will_retry": True,
                            },
                        )
                    time.sleep(step.retry_delay)
                    continue
                return self._failed(
                    step,
                    state,
                    last,
                    in_finally,
                    spec=spec,
                    seconds=time.monotonic() - started,
                    ledger_hash=digest or None,
                )
            output = redact_data(output)
            state.outputs[step.id] = output
            state.statuses[step.id] = StepStatus.SUCCEEDED
            with rec.step_write() as write:
                self._runner_notes(write, step)
                if spec.destructive:
                    self.ledger.finish(
                        state.opts.run_id, step.id, digest, StepStatus.SUCCEEDED, output, cur=write.cur
                    )
                write.emit(
                    Kind.STEP_SUCCEEDED,
                    f"{step.label}: {output.get('summary') or 'done'}",
                    step_id=step.id,
                    details={
                        "action": spec.name,
                        "destructive": spec.destructive,
                        "seconds": round(time.monotonic() - started, 3),
                        "output": brief(output),
                    },
                )
            return StepStatus.SUCCEEDED
        return self._failed(step, state, last, in_finally)

    def _already_claimed(self, step: Step, state: RunState, prior: dict[str, Any], in_finally: bool) -> str:
        """The ledger already holds this exact call: its recorded success stands, anything else is
        reported, never re-run (a worker lost mid-call leaves the outcome unknown)."""
        if prior["status"] == StepStatus.SUCCEEDED:
            state.rec.emit(
                Kind.NOTE,
                f"{step.label}: already executed for this approval; not running it again",
                step_id=step.id,
            )
            state.outputs[step.id] = prior["output"] or {}
            state.statuses[step.id] = StepStatus.SUCCEEDED
            return StepStatus.SUCCEEDED
        return self._failed(
            step,
            state,
            f"{step.label}: a previous attempt of this exact call ended '{prior['status']}'"
            " (worker lost mid-call?); not re-running it — check the target and re-run the playbook",
            in_finally,
        )

    def _runner_notes(self, write: StepWrite, step: Step) -> None:
        """What the step runner had to work around (Prefect unreachable), as timeline notes."""
        notices = getattr(self.step_runner, "notices", None)
        for line in notices() if notices is not None else []:
            write.emit(Kind.NOTE, line, step_id=step.id, actor="runbook", details={"prefect": "degraded"})

    def _failed(
        self,
        step: Step,
        state: RunState,
        message: str,
        in_finally: bool,
        *,
        spec: ActionSpec | None = None,
        seconds: float | None = None,
        ledger_hash: str | None = None,
    ) -> str:
        """Record the step's failure; ``ledger_hash``: a destructive call that ran and failed, its
        ledger row finished in the same transaction as the event."""
        cont = step.on_failure == "continue"
        with state.rec.step_write() as write:
            if spec is not None:
                self._runner_notes(write, step)
            if ledger_hash is not None:
                self.ledger.finish(state.opts.run_id, step.id, ledger_hash, StepStatus.FAILED, cur=write.cur)
            write.emit(
                Kind.STEP_FAILED,
                f"{step.label}: {message}" + (" (continuing)" if cont and not in_finally else ""),
                step_id=step.id,
                details={
                    "action": step.action,
                    "error": message,
                    "on_failure": step.on_failure,
                    **({"seconds": round(seconds, 3)} if seconds is not None else {}),
                },
            )
        state.statuses[step.id] = StepStatus.FAILED
        state.outputs[step.id] = {"failed": True, "error": message, "summary": message}
        state.last_error = message
        return StepStatus.CONTINUED if cont else StepStatus.FAILED
