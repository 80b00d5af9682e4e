"""Runs under Prefect API faults: real ``runbook run`` processes whose PREFECT_API_URL is a
:class:`runbook_devtools.faultproxy.FaultProxy`, four kinds of playbook (plain, gated, with
retries, with finally steps), gated ones approved through the real ``runbook approve`` command.

``run_suite`` returns one :class:`Outcome` per run with what the tests and the benchmark check:
the run's end state, how often each destructive step started and succeeded, and whether the
timeline is complete (started, every step accounted for, finished). Shared by
``tests/compiler/test_prefect_faults.py`` (CI size) and ``benchmarks/prefect_faults.py`` (full).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAYBOOKS: dict[str, tuple[str, str, dict[str, int]]] = {
    # kind: (yaml, expected run status, {step: expected step.succeeded count})
    "plain": (
        """name: chaos-plain
title: plain
owner: chaos
steps:
  - {id: a, action: core.assert, with: {that: "{{ 1 + 1 == 2 }}"}}
  - {id: b, action: core.set, with: {values: {x: 1}}}
  - {id: c, action: core.assert, with: {that: "{{ steps.b.values.x == 1 }}"}}
""",
        "completed",
        {"a": 1, "b": 1, "c": 1},
    ),
    "gated": (
        """name: chaos-gated
title: gated
owner: chaos
steps:
  - {id: look, action: core.assert, with: {that: "{{ true }}"}}
  - id: fix
    action: core.manual
    with: {instructions: "chaos: nothing to do"}
    approval: {approvers: [ic], timeout: 5m}
  - {id: after, action: core.assert, with: {that: "{{ true }}"}}
""",
        "completed",
        {"look": 1, "fix": 1, "after": 1},
    ),
    "retries": (
        """name: chaos-retries
title: retries
owner: chaos
steps:
  - id: slow
    action: core.wait
    with: {action: core.assert, with: {that: "{{ true }}"}, until: "{{ false }}", interval: 0.2, timeout: 30}
    timeout: 1s
    retries: 2
    retry_delay: 1s
    on_failure: continue
  - {id: next, action: core.assert, with: {that: "{{ true }}"}}
""",
        "completed",
        {"slow": 0, "next": 1},
    ),
    "finally": (
        """name: chaos-finally
title: finally
owner: chaos
steps:
  - {id: boom, action: core.assert, with: {that: "{{ 1 == 2 }}"}}
  - {id: never, action: core.assert, with: {that: "{{ true }}"}}
finally:
  - {id: note, action: timeline.note, with: {text: "wrap-up"}}
""",
        "failed",
        {"never": 0, "note": 1},
    ),
}


@dataclass
class Outcome:
    kind: str
    run_id: str | None
    exit_code: int
    status: str | None
    expected_status: str
    succeeded: dict[str, int] = field(default_factory=dict)
    expected_succeeded: dict[str, int] = field(default_factory=dict)
    manual_started: int = 0
    complete_timeline: bool = False
    prefect_notes: int = 0
    seconds: float = 0.0
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.status == self.expected_status
            and self.succeeded == self.expected_succeeded
            and self.complete_timeline
            and (self.kind != "gated" or self.manual_started == 1)
        )


def write_playbooks(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, (text, _, _) in PLAYBOOKS.items():
        paths[kind] = folder / f"chaos-{kind}.yaml"
        paths[kind].write_text(text)
    return paths


def _approve_when_waiting(
    env: dict[str, str], store: Any, playbook: str, since: str, deadline: float
) -> None:
    from runbook.store.approvals import ApprovalStore

    approvals = ApprovalStore(store.db)
    done: set[int] = set()
    while time.monotonic() < deadline:
        for row in approvals.pending():
            run = store.get_run(row.run_id) or {}
            if row.id in done or run.get("playbook") != playbook or run.get("started_at", "") < since:
                continue
            res = subprocess.run(
                [sys.executable, "-m", "runbook.cli", "approve", row.run_id, row.step_id, "--as", "chaos"],
                env=env,
                capture_output=True,
                text=True,
            )
            if res.returncode == 0:
                done.add(row.id)
                return
        time.sleep(0.2)


def _one(kind: str, path: Path, env: dict[str, str], store: Any, timeout: float) -> Outcome:
    from runbook.core.clock import ts

    since = ts()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", "run", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if kind == "gated":
        _approve_when_waiting(env, store, f"chaos-{kind}", since, started + timeout)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    text, expected, succeeded = PLAYBOOKS[kind]
    runs = [r for r in store.runs(limit=500) if r["playbook"] == f"chaos-{kind}" and r["started_at"] >= since]
    outcome = Outcome(kind, None, proc.returncode, None, expected, expected_succeeded=succeeded)
    outcome.seconds = round(time.monotonic() - started, 2)
    outcome.stderr_tail = err[-600:]
    mine = [r for r in runs if r["run_id"] in out]
    if not mine:
        return outcome
    run = mine[0]
    outcome.run_id, outcome.status = run["run_id"], run["status"]
    events = store.events(run["run_id"])
    kinds = [e.kind.value for e in events]
    while len(kinds) > 1 and kinds[-1] == "note":  # Prefect's record reconciled after the run ended
        kinds.pop()
    for step in succeeded:
        outcome.succeeded[step] = sum(1 for e in events if e.step_id == step and e.kind == "step.succeeded")
    outcome.manual_started = sum(1 for e in events if e.step_id == "fix" and e.kind == "step.started")
    outcome.prefect_notes = sum(1 for e in events if e.kind == "note" and e.actor == "runbook")
    finished = [e for e in events if e.kind == "run.finished"]
    started = [e.step_id for e in events if e.kind == "step.started"]
    ended = [e.step_id for e in events if e.kind in ("step.succeeded", "step.failed")]
    outcome.complete_timeline = (
        bool(kinds)
        and kinds[0] == "run.started"
        and len(finished) == 1
        and kinds[-1] == "run.finished"
        and all(ended.count(step) >= started.count(step) for step in set(started))
    )
    return outcome


def run_suite(
    prefect_url: str, workdir: Path, *, rounds: int = 1, parallel: int = 4, timeout: float = 240
) -> list[Outcome]:
    """``rounds`` of each playbook kind, ``parallel`` at a time, against ``prefect_url``."""
    from runbook.store.schema import open_database
    from runbook.store.timeline import TimelineStore

    paths = write_playbooks(workdir / "playbooks")
    (workdir / "approvers.yaml").write_text(
        f"people:\n  chaos: ['unix:chaos', 'unix:{_login()}']\nroles:\n  ic: [chaos]\n"
    )
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_API_URL": prefect_url,
            "RUNBOOK_APPROVERS": str(workdir / "approvers.yaml"),
            "RUNBOOK_DATABASE_URL": suite_database_url(workdir),
            "RUNBOOK_HOME": str(workdir / "home"),
            "PREFECT_LOGGING_LEVEL": "ERROR",
        }
    )
    for k in ("SLACK_BOT_TOKEN", "RUNBOOK_SLACK_CHANNEL", "PAGERDUTY_API_TOKEN"):
        env.pop(k, None)
    store = TimelineStore(open_database(env["RUNBOOK_DATABASE_URL"]))
    jobs = [kind for _ in range(rounds) for kind in PLAYBOOKS]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(lambda kind: _one(kind, paths[kind], env, store, timeout), jobs))


def missing_log_lines(api: str, run_id: str, database_url: str) -> list[str]:
    """Timeline events of the run (up to its end) that are not a line of its flow run's log on the
    Prefect server at ``api`` (read directly, not through the fault proxy)."""
    import httpx

    from runbook.compiler.prefect_log import RUN_LOGGER, log_line
    from runbook.store.schema import open_database
    from runbook.store.timeline import TimelineStore

    events = TimelineStore(open_database(database_url)).events(run_id)
    end = next((i for i, e in enumerate(events) if e.kind == "run.finished"), len(events) - 1)
    lines: set[str] = set()
    offset = 0
    while True:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": offset}
        page = httpx.post(f"{api.rstrip('/')}/logs/filter", json=body, timeout=10).json()
        lines.update(x["message"] for x in page if x["name"] == RUN_LOGGER)
        if len(page) < 200:
            break
        offset += 200
    return [log_line(e) for e in events[: end + 1] if log_line(e) not in lines]


def suite_database_url(workdir: Path) -> str:
    """The runbook store :func:`run_suite` uses for ``workdir``."""
    return os.environ.get("RUNBOOK_DATABASE_URL") or f"sqlite:///{workdir / 'runbook.db'}"


def _login() -> str:
    from runbook.approvals.policy import operating_system_user

    return operating_system_user()
