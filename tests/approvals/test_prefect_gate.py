"""The gate inside a real Prefect flow run (real server, real RabbitMQ for the gated purge): the run
pauses with a typed input while waiting, a signed Slack click resumes it and the purge runs once; a
resume forged through the Prefect API is refused and the run keeps waiting; expiry denies the run
without Prefect's pause timeout ever firing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi.testclient import TestClient

from runbook.approvals.service import Approvals
from runbook.compiler.flow import build_flow
from runbook.core.settings import Settings
from runbook.runtime import cached_registry, from_environment
from runbook.slack.blocks import ApprovalAction
from runbook.spec.lint import lint_text
from runbook.store.launches import Launch, launched_here
from runbook.store.timeline import TimelineStore
from tests.approvals.conftest import block_actions, click, wait_until
from tests.support import rabbit

TEXT = """
name: purge-gated
title: Purge a poisoned queue
owner: platform-team
params:
  queue: {type: string, description: queue to purge}
steps:
  - id: look
    title: Look at the queue
    action: rabbitmq.queue_stats
    with: {queue: "{{ params.queue }}"}
  - id: purge
    title: Purge the queue
    action: rabbitmq.purge_queue
    with: {queue: "{{ params.queue }}"}
    approval: {approvers: [incident-commander], timeout: TIMEOUT}
finally:
  - id: wrapup
    action: timeline.note
    with: {text: "wrap-up for {{ params.queue }}"}
"""


@pytest.fixture
def queue(rabbitmq_available: None, unique: str) -> Any:
    name = f"approval-{unique}"
    conn = rabbit.connect()
    ch = conn.channel()
    rabbit.declare(ch, name)
    rabbit.publish_numbered(ch, name, 7)
    yield name, ch
    ch.queue_delete(name)
    conn.close()


class FlowThread:
    def __init__(self, timeout: str, queue: str) -> None:
        pb, problems = lint_text(TEXT.replace("TIMEOUT", timeout), "p.yaml", cached_registry())
        assert not problems, problems
        self.flow = build_flow(pb, from_environment)
        self.state: Any = None
        self.thread = threading.Thread(target=self._run, args=(queue,), daemon=True)
        self.thread.start()

    def _run(self, queue: str) -> None:
        with launched_here(Launch("test", "email:carol@example.com")):
            self.state = self.flow(queue=queue, return_state=True)

    def join(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "flow did not finish"
        return self.state


def prefect_state(api: str, flow_run_id: str) -> dict[str, Any]:
    return httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()["state"]


def run_logs(api: str, flow_run_id: str) -> list[dict[str, Any]]:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200, "sort": "TIMESTAMP_ASC"}
    return httpx.post(f"{api}/logs/filter", json=body, timeout=10).json()


def artifacts(api: str, flow_run_id: str) -> list[dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 50}
    return httpx.post(f"{api}/artifacts/filter", json=body, timeout=10).json()


def pause_description(api: str, flow_run_id: str, state: dict[str, Any]) -> str:
    key = f"{state['name'].lower()}-{state['state_details']['pause_key']}-description"
    r = httpx.get(f"{api}/flow_runs/{flow_run_id}/input/{key}", timeout=10)
    r.raise_for_status()
    return str(r.json())


def paused(api: str, approvals: Approvals) -> Any:
    rows = approvals.store.pending()
    if rows and rows[0].flow_run_id and prefect_state(api, rows[0].flow_run_id)["type"] == "PAUSED":
        return rows[0]
    return None


def test_click_resumes_the_paused_flow_run_and_purges_once(
    prefect_server: str,
    slack_env: Settings,
    timeline: TimelineStore,
    approvals: Approvals,
    gateway: TestClient,
    queue: Any,
    tmp_path: Path,
) -> None:
    name, ch = queue
    run = FlowThread("2m", name)
    row = wait_until(lambda: paused(prefect_server, approvals), timeout=30, what="paused flow run")
    state = prefect_state(prefect_server, row.flow_run_id)
    assert state["state_details"]["pause_key"].startswith(f"rb-approval-{row.id}-")
    assert rabbit.ready(ch, name) == 7
    r = click(gateway, block_actions("U0ALICE", ApprovalAction.APPROVE, f"{row.id}:{row.plan_hash}"))
    assert r.json()["state"] == "decided"
    final = run.join()
    assert final.is_completed(), final
    assert rabbit.ready(ch, name) == 0
    run_id = str(final.state_details.flow_run_id)
    events = timeline.events(run_id)
    # a note may tell that Prefect was slow to answer (weather, not part of the decision): left out
    assert [e.kind.value for e in events if e.step_id == "purge" and e.kind != "note"] == [
        "approval.requested",
        "approval.approved",
        "step.started",
        "step.succeeded",
    ]
    assert "purged 7 messages" in next(
        e.summary for e in events if e.kind == "step.succeeded" and e.step_id == "purge"
    )


def test_forged_resume_through_the_prefect_api_is_refused(
    prefect_server: str,
    slack_env: Settings,
    timeline: TimelineStore,
    approvals: Approvals,
    gateway: TestClient,
    queue: Any,
) -> None:
    from prefect.flow_runs import resume_flow_run

    name, ch = queue
    run = FlowThread("2m", name)
    row = wait_until(lambda: paused(prefect_server, approvals), timeout=30, what="paused flow run")
    fr = row.flow_run_id
    # what the Prefect run page shows of the pause: the state's message, the Resume dialog's
    # description (Markdown), an approval artifact, and how to decide in the run's log
    state = prefect_state(prefect_server, fr)
    assert "Purge the queue (step purge)" in state["message"], state["message"]
    assert f"runbook approve {row.run_id} purge" in state["message"]
    assert "Resume here is refused" in state["message"]
    described = wait_until(lambda: pause_description(prefect_server, fr, state), 10, "description")
    for part in (
        "### Waiting for approval: Purge the queue",
        "`rabbitmq.purge_queue`",
        f'"queue": "{name}"',
        "**What it does:**",
        "**Why (evidence):**",
        "- **look**:",
        "**Who may approve:** incident-commander — alice, bob, carol",
        "**Expires:**",
        "Slack",
        f"`runbook approve {row.run_id} purge --as USER --deny --reason TEXT`",
        "**Resume here is refused.**",
    ):
        assert part in described, (part, described)
    approval_art = wait_until(
        lambda: [a for a in artifacts(prefect_server, fr) if a["key"] == f"approval-{row.id}"], 10, "artifact"
    )
    assert approval_art[0]["type"] == "markdown" and approval_art[0]["data"] == described
    wait_until(
        lambda: any(
            f"runbook approve {row.run_id} purge" in x["message"] for x in run_logs(prefect_server, fr)
        ),
        15,
        "how to decide in the run's log",
    )
    # someone resumes it in the Prefect UI/API with input that claims an approval
    resume_flow_run(UUID(row.flow_run_id), run_input={"request_id": row.id, "outcome": "approved"})
    refused = wait_until(
        lambda: [e for e in timeline.events(row.run_id) if e.kind == "approval.refused"],
        timeout=20,
        what="refusal",
    )
    assert refused[0].actor == "prefect-api" and refused[0].details["channel"] == "prefect-api"
    wait_until(lambda: paused(prefect_server, approvals), timeout=20, what="paused again")
    again = prefect_state(prefect_server, fr)["message"]
    assert again.startswith("A Resume through Prefect was refused (no decision recorded)"), again
    assert rabbit.ready(ch, name) == 7, "nothing was purged"
    assert approvals.store.get(row.id).status == "pending"  # type: ignore[union-attr]
    click(gateway, block_actions("U0BOB", ApprovalAction.DENY, f"{row.id}:{row.plan_hash}", reason="no"))
    final = run.join()
    assert final.is_cancelled() and final.name == "Denied" and "denied" in (final.message or "")
    assert rabbit.ready(ch, name) == 7
    # the run's log: the timeline, the refusal and the denial (recorded by the gateway) as WARNINGs
    logs = wait_until(
        lambda: (lambda got: got if any("run.finished" in x["message"] for x in got) else None)(
            run_logs(prefect_server, fr)
        ),
        20,
        "the run's end in its log",
    )
    by_kind = {x["message"].split(" ", 1)[0]: x for x in logs if x["name"] == "runbook.run"}
    assert by_kind["run.started"]["level"] == 20 and by_kind["step.succeeded"]["level"] == 20
    assert by_kind["approval.requested"]["level"] == 20
    assert by_kind["approval.refused"]["level"] == 30 and by_kind["approval.denied"]["level"] == 30
    assert "U0BOB" in by_kind["approval.denied"]["message"] or "bob" in by_kind["approval.denied"]["message"]
    assert by_kind["run.finished"]["level"] == 30
    assert not [x for x in logs if "Traceback" in x["message"]]


def test_expiry_inside_a_flow_run_is_a_denial_not_a_pause_timeout(
    prefect_server: str,
    slack_env: Settings,
    timeline: TimelineStore,
    approvals: Approvals,
    queue: Any,
) -> None:
    name, ch = queue
    final = FlowThread("3s", name).join()
    assert final.is_cancelled() and final.name == "Denied", final
    assert final.message.startswith("denied"), final.message
    run_id = str(final.state_details.flow_run_id)
    purge = [e.kind.value for e in timeline.events(run_id) if e.step_id == "purge" and e.kind != "note"]
    assert purge == ["approval.requested", "approval.expired"]
    assert rabbit.ready(ch, name) == 7
    assert "wrapup" in {e.step_id for e in timeline.events(run_id) if e.kind == "step.succeeded"}
