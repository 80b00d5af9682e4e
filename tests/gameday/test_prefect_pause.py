"""While a Prefect flow run is paused on an approval, the engine's heartbeat thread keeps beating,
so the reaper leaves a live waiting run alone; the decision then resumes it to completion."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from runbook.cli import main as cli
from runbook.compiler.flow import build_flow
from runbook.runtime import cached_registry, from_environment
from runbook.spec.lint import lint_text
from runbook.timeline.reaper import reap_lost_runs
from tests.gameday.conftest import wait_until

PLAYBOOK = """name: gameday-pause-{u}
title: Paused run keeps beating
owner: sre
steps:
  - id: fix_by_hand
    action: core.manual
    with: {{instructions: "restart the thing"}}
    approval: {{approvers: [incident-commander], timeout: 120s}}
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_paused_flow_run_keeps_its_heartbeat(
    prefect_server: str, gd_env: Any, gd_store: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RUNBOOK_HEARTBEAT_SECONDS", "0.3")
    pb, problems = lint_text(PLAYBOOK.format(u=uuid.uuid4().hex[:6]), "p.yaml", cached_registry())
    assert not problems
    flow = build_flow(pb, from_environment)
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.update(state=flow(return_state=True)), daemon=True)
    t.start()
    run = wait_until(
        lambda: next(iter(gd_store.runs(status="running")), None), timeout=60, what="the flow run to start"
    )
    run_id = run["run_id"]
    wait_until(
        lambda: any(e.kind == "approval.requested" for e in gd_store.events(run_id)), 60, "the request"
    )
    first = gd_store.get_run(run_id)["heartbeat_at"]
    for _ in range(5):
        threading.Event().wait(0.5)
        assert run_id not in reap_lost_runs(gd_store, 1.0), "a live paused run must not be reaped"
    assert gd_store.get_run(run_id)["heartbeat_at"] > first, "heartbeat stopped while paused"
    assert cli(["approve", run_id, "fix_by_hand", "--as", "carol"]) == 0
    t.join(60)
    assert not t.is_alive()
    assert box["state"].is_completed()
    assert gd_store.get_run(run_id)["status"] == "completed"


def test_resume_rejected_before_the_input_schema_exists_is_retried(prefect_server: str) -> None:
    """Found under load: Prefect sets Paused *then* saves the run-input schema; a decision landing in
    between got REJECTed silently, the watcher believed it had resumed, and the approved run stayed
    paused. ``PrefectPauser.resume`` must report such a resume as not done (the watcher retries)."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Paused, Running

    from runbook.compiler.prefect_runs import PrefectPauser, approval_input_model, pause_key

    resume_if_waiting = PrefectPauser().resume

    @flow(name="gameday-resume-race")
    def placeholder() -> None:
        """Only gives the flow run a flow to belong to."""

    request_id = 900000 + uuid.uuid4().int % 99999
    with get_client(sync_client=True) as client:
        fr = client.create_flow_run(placeholder)
        client.set_flow_run_state(fr.id, Running(), force=True)
        paused = Paused(pause_key=pause_key(request_id, "race"))
        paused.state_details.run_input_keyset = keyset_from_paused_state(paused)
        client.set_flow_run_state(fr.id, paused, force=True)
        assert resume_if_waiting(str(fr.id), request_id, "approved") is False  # schema not saved yet
        approval_input_model().save(paused.state_details.run_input_keyset, flow_run_id=fr.id)
        assert resume_if_waiting(str(fr.id), request_id, "approved") is True
        assert not client.read_flow_run(fr.id).state.is_paused()
