"""The run loop without Prefect: conditions, outputs, retries, timeouts, failure policy, finally,
dry-run, the refusing placeholder gate and redaction — each observed through the timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions import ActionRegistry
from runbook.compiler.engine import Engine, RunOptions
from runbook.compiler.params import ParamError, coerce_params
from runbook.core.settings import Settings
from runbook.spec.lint import lint_text
from runbook.store.timeline import TimelineStore

MODULES = ["runbook.actions.core.actions", "runbook.actions.timeline.actions", "tests.support.engine_actions"]


@pytest.fixture
def reg() -> ActionRegistry:
    return ActionRegistry.from_modules(MODULES)


def playbook(text: str, reg: ActionRegistry):  # type: ignore[no-untyped-def]
    pb, problems = lint_text(text, "t.yaml", reg)
    assert not problems, [str(p) for p in problems]
    return pb


def run(text: str, reg: ActionRegistry, settings: Settings, store: TimelineStore, **kw):  # type: ignore[no-untyped-def]
    pb = playbook(text, reg)
    engine = Engine(settings, reg, store)
    params = coerce_params(pb, kw.pop("params", {}))
    outcome = engine.run(pb, RunOptions(run_id=kw.pop("run_id", "run-1"), params=params, **kw))
    events = store.events(outcome.run_id)
    return outcome, [(e.kind.value, e.step_id) for e in events], events


HEAD = "name: t\ntitle: T\nowner: me\n"


def test_outputs_flow_into_conditions_and_params(reg, settings, store, tmp_path: Path) -> None:
    c = tmp_path / "c"
    text = (
        HEAD
        + f"""
params:
  limit: {{type: integer, default: 3}}
steps:
  - id: first
    action: core.set
    with: {{values: {{n: "{{{{ params.limit * 2 }}}}"}}}}
  - id: big
    when: "{{{{ steps.first.values.n > 5 }}}}"
    action: test.count
    with: {{counter: "{c}"}}
  - id: small
    when: "{{{{ steps.first.values.n < 5 }}}}"
    action: test.count
    with: {{counter: "{c}"}}
"""
    )
    outcome, kinds, _ = run(text, reg, settings, store)
    assert outcome.status == "completed" and outcome.exit_code == 0
    assert outcome.outputs["first"]["values"]["n"] == 6  # native type kept
    assert ("step.succeeded", "big") in kinds and ("step.skipped", "small") in kinds
    assert c.read_text() == "1"


def test_retries_then_success(reg, settings, store, tmp_path: Path) -> None:
    text = (
        HEAD
        + f"""
steps:
  - id: flaky
    action: test.count
    with: {{counter: "{tmp_path / "c"}", fail_first: 2}}
    retries: 2
    retry_delay: 10ms
"""
    )
    outcome, kinds, _ = run(text, reg, settings, store)
    assert outcome.status == "completed"
    assert kinds.count(("step.started", "flaky")) == 3
    assert kinds.count(("step.failed", "flaky")) == 2


@pytest.mark.parametrize("failure", ["refused", "error"])
def test_only_transient_failures_are_retried(reg, settings, store, tmp_path: Path, failure: str) -> None:
    """A guardrail refusal or an action's own error is an answer, not weather: retrying it would only
    repeat the refusal (or, for a destructive step, try again what a human must look at)."""
    text = (
        HEAD
        + f"""
steps:
  - id: refused
    action: test.count
    with: {{counter: "{tmp_path / "c"}", fail_first: 5, failure: {failure}, message: over the bound}}
    retries: 3
    retry_delay: 10ms
"""
    )
    outcome, kinds, events = run(text, reg, settings, store)
    assert outcome.status == "failed"
    assert kinds.count(("step.started", "refused")) == 1, "not retried"
    assert (tmp_path / "c").read_text() == "1"
    failed = next(e for e in events if e.kind.value == "step.failed")
    assert "over the bound" in failed.summary and "not retried" in failed.summary


def test_timeout_fails_step_with_name_and_finally_runs(reg, settings, store, tmp_path: Path) -> None:
    text = (
        HEAD
        + f"""
steps:
  - id: slow
    action: test.count
    with: {{counter: "{tmp_path / "c"}", sleep: 2}}
    timeout: 200ms
  - id: never
    action: test.count
    with: {{counter: "{tmp_path / "never"}"}}
finally:
  - id: cleanup
    action: timeline.note
    with: {{text: cleaned up}}
"""
    )
    outcome, kinds, events = run(text, reg, settings, store)
    assert outcome.status == "failed" and outcome.exit_code == 1
    failed = next(e for e in events if e.kind.value == "step.failed")
    assert "slow (test.count): timed out after 200ms" in failed.summary
    assert ("step.succeeded", "cleanup") in kinds
    assert not (tmp_path / "never").exists()


def test_on_failure_continue_keeps_going(reg, settings, store, tmp_path: Path) -> None:
    text = (
        HEAD
        + f"""
steps:
  - id: bad
    action: core.assert
    with: {{that: false, message: "depth too high"}}
    on_failure: continue
  - id: after
    action: test.count
    with: {{counter: "{tmp_path / "c"}"}}
"""
    )
    outcome, kinds, events = run(text, reg, settings, store)
    assert outcome.status == "completed"
    assert any(e.summary.endswith("depth too high (continuing)") for e in events)
    assert ("step.succeeded", "after") in kinds


def test_destructive_step_is_never_run_without_a_gate(reg, settings, store, tmp_path: Path) -> None:
    c = tmp_path / "destroyed"
    text = (
        HEAD
        + f"""
steps:
  - id: wipe
    action: test.destroy
    with: {{counter: "{c}"}}
    approval: {{approvers: [incident-commander]}}
finally:
  - id: report
    action: timeline.note
    with: {{text: report}}
"""
    )
    outcome, kinds, _ = run(text, reg, settings, store)
    assert outcome.status == "denied" and outcome.exit_code == 2
    assert not c.exists()
    assert ("approval.denied", "wipe") in kinds and ("step.succeeded", "report") in kinds


def test_dry_run_describes_destructive_steps_and_runs_read_only(reg, settings, store, tmp_path: Path) -> None:
    text = (
        HEAD
        + f"""
steps:
  - id: look
    action: test.count
    with: {{counter: "{tmp_path / "read"}"}}
  - id: wipe
    action: test.destroy
    with: {{counter: "{tmp_path / "destroyed"}"}}
    approval: {{approvers: [incident-commander]}}
"""
    )
    outcome, kinds, events = run(text, reg, settings, store, dry_run=True)
    assert outcome.status == "completed"
    assert (tmp_path / "read").exists() and not (tmp_path / "destroyed").exists()
    dry = next(e for e in events if e.kind.value == "step.dry_run")
    assert dry.summary == "wipe: would destroy things (counter destroyed) (needs approval)"


def wipe_without_gate(counter: Path, justification: str) -> str:
    """One destructive step opted out of approval (``policy: none``) that counts its executions."""
    return (
        HEAD
        + f"""
steps:
  - id: wipe
    action: test.destroy
    with: {{counter: "{counter}"}}
    approval: {{policy: none, justification: "{justification}"}}
"""
    )


def test_policy_none_runs_once_with_justification_on_timeline(reg, settings, store, tmp_path: Path) -> None:
    text = wipe_without_gate(tmp_path / "d", "scratch data only")
    outcome, _, events = run(text, reg, settings, store)
    assert outcome.status == "completed"
    assert (tmp_path / "d").read_text() == "1"
    assert any("scratch data only" in e.summary for e in events)


def test_ledger_refuses_to_execute_the_same_call_twice(reg, settings, store, tmp_path: Path) -> None:
    text = wipe_without_gate(tmp_path / "d", "test")
    run(text, reg, settings, store, run_id="same")
    outcome, _, events = run(text, reg, settings, store, run_id="same")  # the run retried by its worker
    assert outcome.status == "completed"
    assert (tmp_path / "d").read_text() == "1"
    assert any("already executed for this approval" in e.summary for e in events)


def test_undefined_name_fails_clearly(reg, settings, store) -> None:
    text = (
        HEAD
        + """
steps:
  - id: a
    action: core.set
    with: {values: {x: 1}}
  - id: b
    action: core.assert
    with: {that: "{{ steps.a.values.y == 1 }}"}
"""
    )
    outcome, _, events = run(text, reg, settings, store)
    assert outcome.status == "failed"
    failed = next(e for e in events if e.kind.value == "step.failed")
    assert "'y'" in failed.summary and "Traceback" not in failed.summary


def test_secrets_never_reach_the_timeline(reg, settings, store, tmp_path: Path) -> None:
    text = (
        HEAD
        + f"""
steps:
  - id: a
    action: test.count
    with: {{counter: "{tmp_path / "c"}", fail_first: 1, message: "cannot reach amqp://svc:hunter2pass@mq:5672/"}}
"""
    )
    outcome, _, events = run(text, reg, settings, store)
    assert outcome.status == "failed"
    dump = "".join(e.model_dump_json() for e in events) + str(store.get_run("run-1"))
    assert "hunter2pass" not in dump and "amqp://svc:***@mq:5672/" in dump


def test_param_errors_are_all_reported(reg) -> None:
    pb = playbook(
        HEAD
        + """
params:
  n: {type: integer, minimum: 1, default: 2}
  must: {type: string, required: true}
steps:
  - {id: a, action: core.set, with: {values: {}}}
""",
        reg,
    )
    with pytest.raises(ParamError) as err:
        coerce_params(pb, {"n": "0", "bogus": "1"})
    text = str(err.value)
    assert "unknown param 'bogus'" in text and "below the minimum" in text and "'must' is required" in text


def test_failed_finally_step_fails_a_completed_run_but_all_finally_steps_run(reg, settings, store) -> None:
    text = (
        HEAD
        + """
steps:
  - {id: work, action: core.set, with: {values: {a: 1}}}
finally:
  - id: verify
    action: core.assert
    with: {that: false, message: "post-maintenance check failed"}
  - id: best_effort
    action: core.assert
    with: {that: false, message: "note could not be posted"}
    on_failure: continue
  - id: report
    action: timeline.note
    with: {text: report}
"""
    )
    outcome, kinds, _ = run(text, reg, settings, store)
    assert outcome.status == "failed" and "verify" in (outcome.reason or "")
    assert ("step.succeeded", "report") in kinds
    only_best_effort = text.replace('that: false, message: "post', 'that: true, message: "post')
    outcome, _, _ = run(only_best_effort, reg, settings, store, run_id="run-2")
    assert outcome.status == "completed"
