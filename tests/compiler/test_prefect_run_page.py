"""What the Prefect run page shows of a run (real Prefect server, asserted through its API): the run
form's fields carry the playbook's descriptions, enums and bounds; the timeline is the run's log (INFO,
WARNING for a tolerated failure, never a traceback for an expected action error); the verdict and the
postmortem draft are Markdown artifacts; a failure that stops the run is still red ``Failed``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runbook.compiler.flow import build_flow
from runbook.runtime import from_environment
from runbook.spec.lint import lint_text

TEXT = """
name: run-page-test
title: Run page test
description: Checks what the Prefect run page shows.
owner: me
params:
  queue: {type: string, default: plans, description: queue to inspect}
  system: {type: string, default: rabbitmq, enum: [rabbitmq, kafka], description: which queue system}
  stale_minutes: {type: integer, default: 10, minimum: 1, maximum: 120, description: how old is stuck}
steps:
  - id: verdict
    action: timeline.note
    with:
      text: "Root cause: consumer_outage — 0 consumers on {{ params.queue }}"
      finding: true
      details: {verdict: consumer_outage, evidence: "0 consumers"}
  - id: tolerated
    action: core.assert
    with: {that: "{{ params.stale_minutes > 1000 }}", message: "the backlog is older than that"}
    on_failure: continue
  - id: gate_check
    action: core.assert
    with: {that: "{{ params.queue != 'fail-here' }}", message: "asked to fail"}
finally:
  - id: report
    action: timeline.postmortem
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'rb.db'}")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    return tmp_path


def post(api: str, path: str, body: dict[str, Any]) -> Any:
    return httpx.post(f"{api}/{path}", json=body, timeout=10).json()


def settled_logs(api: str, flow_run_id: str) -> list[dict[str, Any]]:
    """The run's logs once its end is among them (logs reach the API in batches)."""
    deadline = time.monotonic() + 30
    logs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200, "sort": "TIMESTAMP_ASC"}
        logs = post(api, "logs/filter", body)
        if any(x["message"].startswith("run.finished") for x in logs):
            time.sleep(1.5)  # Prefect's own last lines come in the next batch
            return post(api, "logs/filter", body)
        time.sleep(0.5)
    raise AssertionError(f"run.finished never reached the run's log: {[x['message'] for x in logs]}")


def test_run_form_shows_descriptions_enums_and_bounds(env: Path, registry: Any) -> None:
    pb, problems = lint_text(TEXT, "t.yaml", registry)
    assert not problems, problems
    props = build_flow(pb, from_environment).parameters.model_dump()["properties"]
    assert props["queue"]["description"] == "queue to inspect" and props["queue"]["default"] == "plans"
    assert props["system"]["enum"] == ["rabbitmq", "kafka"]
    assert props["system"]["description"] == "which queue system"
    limits = props["stale_minutes"]
    assert (limits["minimum"], limits["maximum"], limits["type"]) == (1, 120, "integer")
    assert limits["description"] == "how old is stuck"
    assert "dry_run" in props and "read-only" in props["dry_run"]["description"]


def test_timeline_is_the_run_log_and_verdict_and_postmortem_are_artifacts(
    prefect_server: str, env: Path, registry: Any
) -> None:
    pb, _ = lint_text(TEXT, "t.yaml", registry)
    state = build_flow(pb, from_environment)(queue="jobs", return_state=True)
    assert state.is_completed(), state.message
    run_id = str(state.state_details.flow_run_id)
    logs = settled_logs(prefect_server, run_id)
    ours = [x for x in logs if x["name"] == "runbook.run"]
    kinds = [x["message"].split(" ", 1)[0] for x in ours]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished", kinds
    assert {"finding", "step.failed", "step.succeeded"} <= set(kinds)
    failed = next(x for x in ours if x["message"].startswith("step.failed"))
    assert failed["level"] == 30 and "tolerated: " in failed["message"], failed
    assert not [x for x in logs if x["level"] >= 40], [x["message"] for x in logs if x["level"] >= 40]
    assert not [x for x in logs if "Traceback" in x["message"]]
    arts = {
        a["key"]: a
        for a in post(
            prefect_server,
            "artifacts/filter",
            {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 20},
        )
    }
    assert arts["verdict"]["type"] == "markdown"
    assert arts["verdict"]["data"].startswith("### Root cause: consumer_outage — 0 consumers on jobs")
    assert "| verdict | consumer_outage |" in arts["verdict"]["data"]
    assert arts["postmortem"]["type"] == "markdown" and "consumer_outage" in arts["postmortem"]["data"]
    draft = next((env / "home" / "postmortems").glob("*.md")).read_text()
    assert arts["postmortem"]["data"] == draft  # the final draft, re-rendered after the run ended


def test_a_failure_that_stops_the_run_is_failed_without_a_traceback(
    prefect_server: str, env: Path, registry: Any
) -> None:
    pb, _ = lint_text(TEXT, "t.yaml", registry)
    state = build_flow(pb, from_environment)(queue="fail-here", return_state=True)
    assert state.is_failed() and state.name == "Failed", state
    assert "asked to fail" in (state.message or "")
    logs = settled_logs(prefect_server, str(state.state_details.flow_run_id))
    errors = [x for x in logs if x["level"] >= 40]
    assert any(x["message"].startswith("step.failed gate_check") for x in errors), errors
    assert not [x for x in logs if "Traceback" in x["message"]]
