"""A playbook compiled to a Prefect flow runs on the real Prefect server: the flow has the
playbook's name and parameter form, each step is a task run named by its step id and tagged with its
action, and the CLI's exit codes follow the run's status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from runbook.compiler.flow import build_flow
from runbook.runtime import from_environment
from runbook.spec.lint import lint_text

TEXT = """
name: flow-test
title: Flow test
owner: me
params:
  queue: {type: string, default: plans, description: queue to inspect}
  limit: {type: integer, default: 5, minimum: 1}
steps:
  - id: compute
    action: core.set
    with: {values: {q: "{{ params.queue }}", twice: "{{ params.limit * 2 }}"}}
  - id: check
    action: core.assert
    with: {that: "{{ steps.compute.values.twice == params.limit * 2 }}", message: doubled}
  - id: skipped_one
    when: "{{ params.limit > 100 }}"
    action: core.assert
    with: {that: true}
finally:
  - id: note
    action: timeline.note
    with: {text: "checked {{ params.queue }}"}
"""


@pytest.fixture
def env_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", url)
    return url


def task_runs(api: str, flow_run_id: str) -> list[dict]:
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 50}
    return httpx.post(f"{api}/task_runs/filter", json=body, timeout=10).json()


def test_flow_has_signature_and_step_named_task_runs(prefect_server: str, env_store: str, registry) -> None:
    pb, problems = lint_text(TEXT, "t.yaml", registry)
    assert not problems
    flow = build_flow(pb, from_environment)
    assert flow.name == "flow-test"
    props = flow.parameters.properties
    assert {"queue", "limit", "incident", "launch", "dry_run"} <= set(props)
    assert not {"requested_by", "trigger"} & set(props)  # who started a run is never a parameter
    assert props["limit"]["default"] == 5 and props["queue"]["type"] == "string"
    state = flow(queue="jobs", limit=7, return_state=True)
    assert state.is_completed(), state.message
    run_id = str(state.state_details.flow_run_id)
    deadline = time.monotonic() + 40  # task-run history reaches the API a little after the flow
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = task_runs(prefect_server, run_id)
        if len(runs) >= 3:
            break
        time.sleep(1)
    by_name = {r["name"]: r for r in runs}
    assert set(by_name) == {"compute", "check", "note"}  # the skipped step never became a task
    assert "core.set" in by_name["compute"]["tags"] and "timeline.note" in by_name["note"]["tags"]
    flow_run = httpx.get(f"{prefect_server}/flow_runs/{run_id}", timeout=10).json()
    assert flow_run["parameters"]["queue"] == "jobs"


def test_flow_rejects_bad_parameter_types(prefect_server: str, env_store: str, registry) -> None:
    pb, _ = lint_text(TEXT, "t.yaml", registry)
    state = build_flow(pb, from_environment)(limit="many", return_state=True)
    assert state.is_failed()


def test_an_identifier_param_can_be_unset(prefect_server: str, env_store: str, registry) -> None:
    """An empty table name means "not set" (coerced to None before the flow); Prefect must accept it,
    so a step guarded by ``when: "{{ params.table }}"`` is skipped instead of the run failing."""
    text = (
        "name: id-test\ntitle: t\nowner: me\n"
        "params:\n  table: {type: identifier, default: attune.queue_stats, description: t}\n"
        "steps:\n  - id: show\n    when: \"{{ params.table }}\"\n"
        "    action: core.set\n    with: {values: {t: \"{{ params.table }}\"}}\n"
    )
    pb, problems = lint_text(text, "t.yaml", registry)
    assert not problems
    for unset in ("", None):
        state = build_flow(pb, from_environment)(table=unset, return_state=True)
        assert state.is_completed(), state.message


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbook.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_run_exit_codes_and_timeline(prefect_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'rb.db'}"}
    ok = tmp_path / "ok.yaml"
    ok.write_text(TEXT)
    res = run_cli("run", str(ok), "-p", "limit=3", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    run_id = res.stdout.split("run ")[-1].split(":")[0].strip()
    timeline = run_cli("timeline", run_id, env=env)
    assert timeline.returncode == 0
    assert (
        "run.started" in timeline.stdout and "check" in timeline.stdout and "run.finished" in timeline.stdout
    )

    failing = tmp_path / "fail.yaml"
    failing.write_text(TEXT.replace("twice == params.limit * 2", "twice == 0"))
    assert run_cli("run", str(failing), env=env).returncode == 1

    bad_param = run_cli("run", str(ok), "-p", "limit=zero", env=env)
    assert bad_param.returncode == 1 and "param limit: expected integer" in bad_param.stderr
    assert "Traceback" not in bad_param.stderr

    plan = run_cli("plan", str(ok), "-p", "queue=jobs", env=env)
    assert plan.returncode == 0 and "q" in plan.stdout and "jobs" in plan.stdout


def test_cli_run_without_prefect_server_says_how_to_start_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'rb.db'}",
    }
    ok = tmp_path / "ok.yaml"
    ok.write_text(TEXT)
    res = run_cli("run", str(ok), env=env)
    assert res.returncode == 1 and "make prefect-server" in res.stderr
