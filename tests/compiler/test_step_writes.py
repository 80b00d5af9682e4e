"""What a step records commits in one transaction per moment (issue 16): a destructive step's ledger
claim together with its ``step.started``, durable before the call; its outcome, ledger row and
notes together after it. Observed from a second connection to the same store (what another
process, the reaper or a retried worker, would see) when each event reaches a sink."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from runbook.actions import ActionRegistry
from runbook.actions.context import ActionContext, ActionError
from runbook.actions.registry import ActionResult, action
from runbook.compiler.engine import Engine, RunOptions
from runbook.compiler.params import coerce_params
from runbook.core.events import Event
from runbook.core.settings import Settings
from runbook.spec.lint import lint_text
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore

MODULES = ["runbook.actions.core.actions", "runbook.actions.timeline.actions", "tests.support.engine_actions"]


def playbook_text(counter: Path) -> str:
    return f"""name: t
title: T
owner: me
steps:
  - id: look
    action: core.set
    with: {{values: {{n: 1}}}}
  - id: wipe
    action: test.destroy
    with: {{counter: "{counter}"}}
    approval: {{policy: none, justification: "scratch data only"}}
"""


class LedgerWitness:
    """A sink that, as each event arrives, reads the ledger through its own connection."""

    def __init__(self, url: str, run_id: str) -> None:
        self.other = open_database(url)
        self.run_id = run_id
        self.seen: list[tuple[str, str | None, str | None]] = []

    def publish(self, event: Event) -> None:
        rows = self.other.query(
            "SELECT status FROM runbook_executions WHERE run_id = ? AND step_id = 'wipe'", (self.run_id,)
        )
        self.seen.append((event.kind.value, event.step_id, rows[0]["status"] if rows else None))


def counted(store: TimelineStore) -> dict[str, int]:
    """Counts the store's transactions (the real ones still run)."""
    count = {"n": 0}
    real = store.db.transaction

    def transaction() -> Any:
        count["n"] += 1
        return real()

    store.db.transaction = transaction  # type: ignore[method-assign]
    return count


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_claim_and_outcome_commit_with_their_events(
    backend: str, settings: Settings, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: TimelineStore = request.getfixturevalue("store" if backend == "sqlite" else "pg_store")
    reg = ActionRegistry.from_modules(MODULES)
    pb, problems = lint_text(playbook_text(tmp_path / "d"), "t.yaml", reg)
    assert not problems, [str(p) for p in problems]
    run_id = f"writes-{uuid.uuid4().hex}"
    witness = LedgerWitness(store.db.url, run_id)
    engine = Engine(settings, reg, store, sinks=[witness])
    count = counted(store)
    outcome = engine.run(pb, RunOptions(run_id=run_id, params=coerce_params(pb, {})))
    assert outcome.status == "completed"
    assert (tmp_path / "d").read_text() == "1"
    wipe = [(kind, status) for kind, step, status in witness.seen if step == "wipe"]
    # the claim was durable, seen by another connection, when step.started was; the outcome too
    assert ("step.started", "started") in wipe
    assert ("step.succeeded", "succeeded") in wipe
    kinds = [k for k, step, _ in witness.seen if step in ("look", "wipe")]
    assert kinds.count("step.started") == 2 and kinds.count("step.succeeded") == 2
    # start_run + run.started, 2 per step (before the call, after it), the policy-none note, then 4
    # for the run's end (pending-approval sweep, run.finished, finish_run): 11; it was 13 when the
    # ledger's claim and outcome were commits of their own
    assert count["n"] <= 11, count["n"]


class BreakParams(BaseModel):
    target: str


def describe_break(ctx: ActionContext, params: BreakParams) -> str:
    return f"break {params.target}"


@action("test.break", summary="A destructive call that fails", destructive=True, describe=describe_break)
def break_(ctx: ActionContext, params: BreakParams) -> ActionResult:
    """Fails after it was claimed: the outcome is a failure, not an unknown."""
    raise ActionError(f"{params.target} refused the change")


def test_a_failed_destructive_call_finishes_its_claim_with_the_failure(
    settings: Settings, store: TimelineStore, tmp_path: Path
) -> None:
    reg = ActionRegistry.from_modules([*MODULES, __name__])
    text = playbook_text(tmp_path / "d").replace(
        f'action: test.destroy\n    with: {{counter: "{tmp_path / "d"}"}}',
        "action: test.break\n    with: {target: orders}",
    )
    pb, problems = lint_text(text, "t.yaml", reg)
    assert not problems, [str(p) for p in problems]
    run_id = f"writes-{uuid.uuid4().hex}"
    witness = LedgerWitness(store.db.url, run_id)
    count = counted(store)
    outcome = Engine(settings, reg, store, sinks=[witness]).run(
        pb, RunOptions(run_id=run_id, params=coerce_params(pb, {}))
    )
    assert outcome.status == "failed"
    assert ("step.started", "wipe", "started") in witness.seen
    assert ("step.failed", "wipe", "failed") in witness.seen
    assert count["n"] <= 11, count["n"]
