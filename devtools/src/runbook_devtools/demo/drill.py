"""The demo drill itself: set the scene, start the pieces, follow the run, judge the real system."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runbook.core.settings import Settings
from runbook_devtools.demo.scene import (
    APPROVED_STEPS,
    APPROVER,
    APPROVER_SLACK_ID,
    DEADLINE_SECONDS,
    DLQ_FAILED,
    demo_environment,
    demo_fault,
    demo_playbook,
    say,
)
from runbook_devtools.demo.serve import Serve
from runbook_devtools.demo.vendors import pagerduty_webhook, slack_click
from runbook_devtools.drills.poison import BacklogPoison
from runbook_devtools.drills.targets import NotLoopback
from runbook_devtools.net import UvicornThread


@dataclass
class DemoResult:
    run_id: str | None = None
    status: str | None = None
    verdict: str | None = None
    postmortem: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "completed" and bool(self.checks) and all(self.checks.values())


def run_demo() -> tuple[int, DemoResult]:
    """The whole drill; returns (exit code, result)."""
    from runbook.cli import _quiet_prefect, require_prefect_server
    from runbook.gateway.app import create_app
    from runbook_devtools.kube_api import KubeAPIServer

    _quiet_prefect()
    t0 = time.monotonic()
    result = DemoResult()
    print("runbook demo: a queue-backlog incident, end to end, on the embedded default\n", flush=True)
    problem = require_prefect_server()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1, result
    # the demo's own environment (no real Slack or PagerDuty), handed to every piece it starts;
    # the process environment itself is never changed
    quiet = ("SLACK_BOT_TOKEN", "PAGERDUTY_API_TOKEN", "RUNBOOK_SLACK_CHANNEL", "RUNBOOK_SLACK_API_URL")
    demo_env = {k: v for k, v in os.environ.items() if k not in quiet}
    base = Settings.from_env(demo_env)
    tag = uuid.uuid4().hex[:6]
    try:
        fault = demo_fault(tag, base)
    except NotLoopback as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1, result
    kube = KubeAPIServer(rollout_delay=0.5, replace_delay=0.5)
    serve: Serve | None = None
    gateway: UvicornThread | None = None
    with tempfile.TemporaryDirectory(prefix="runbook-demo-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            say(t0, f"Prefect server {base.prefect_api_url} is up; timeline store {base.database_url}")
            fault.inject()
            say(
                t0,
                f"RabbitMQ: {fault.queue} has a backlog of {fault.backlog + 1} ready messages behind "
                f"{fault.poison_id} (redelivered: a worker crashed on it); the one worker is wedged; "
                f"{DLQ_FAILED} earlier failures wait in {fault.dlq} with x-death headers",
            )
            for note in fault.notes:
                say(t0, f"note: {note}")
            kube.start()
            kube.seed_demo()
            kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig", namespace="orchestrator")
            say(t0, f"Kubernetes: loopback API {kube.url} (deployment orchestrator/orchestrator, 3 pods)")
            say(t0, f"Kubernetes: watch it with `kubectl --kubeconfig {kubeconfig} get deployments,pods -A`")
            playbooks = tmp / "playbooks"
            demo_playbook(playbooks, fault)
            env = demo_environment(tmp, kubeconfig, playbooks)
            demo_env.update(env)
            settings = Settings.from_env(demo_env)
            serve = Serve(tmp / "serve.log", dict(demo_env)).start()
            say(t0, f"runbook serve (pid {serve.proc.pid if serve.proc else '?'}): starting ...")
            serve.wait_ready(env["PREFECT_API_URL"].rstrip("/"), "backlog-triage/backlog-triage")
            say(t0, "runbook serve: backlog-triage/backlog-triage is served (Prefect deployment, fast lane)")
            gateway = UvicornThread(create_app(settings), name="demo-gateway").start()
            say(t0, f"gateway: {gateway.url} (POST /webhooks/pagerduty, POST /slack/interactions)")

            incident_id = f"PDEMO{tag.upper()}"
            title = f"Queue depth > 100 on {fault.queue}: backlog growing"
            body, headers = pagerduty_webhook(incident_id, title)
            r = httpx.post(f"{gateway.url}/webhooks/pagerduty", content=body, headers=headers, timeout=10)
            say(
                t0,
                f"PagerDuty -> POST /webhooks/pagerduty incident.triggered {incident_id} {title!r} "
                f"(signed {headers['X-PagerDuty-Signature'][:15]}...): {r.status_code} {r.text}",
            )
            if r.status_code != 202 or "backlog-triage" not in r.text:
                raise RuntimeError("the gateway did not accept the webhook for backlog-triage")
            result = follow_run(t0, gateway.url, incident_id, result, settings)
            check_system(t0, fault, result)
        except Exception as exc:  # noqa: BLE001 - report, clean up, exit 1
            print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if serve is not None and serve.log_path.exists():
                tail = serve.log_path.read_text(errors="replace").splitlines()[-25:]
                print("last lines of runbook serve:\n  " + "\n  ".join(tail), file=sys.stderr)
        finally:
            if gateway is not None:
                gateway.stop()
            code = serve.stop() if serve is not None else None
            kube.stop()
            fault.cleanup()  # the wedged worker stopped, the demo queues deleted
            say(
                t0,
                "cleaned up: gateway and loopback Kubernetes stopped, runbook serve stopped"
                + (f" (exit {code})" if code is not None else "")
                + f", demo queues {fault.queue}* deleted",
            )
    return (0 if result.ok else 1), result


def _outputs(event: Any, result: DemoResult) -> None:
    from runbook.core.events import Kind

    if event.kind == Kind.STEP_SUCCEEDED and event.step_id == "classify":
        result.verdict = (event.details.get("output") or {}).get("verdict")
    if event.kind == Kind.STEP_SUCCEEDED and event.step_id == "postmortem":
        result.postmortem = (event.details.get("output") or {}).get("path")


def _click(gateway: str, row: Any) -> None:
    """The demo incident commander answers one approval request in "Slack"."""
    approve = row.step_id in APPROVED_STEPS
    reason = APPROVED_STEPS.get(row.step_id, "not part of this drill")
    body, headers = slack_click(row.id, row.plan_hash, approve=approve, reason=reason)
    r = httpx.post(f"{gateway}/slack/interactions", content=body, headers=headers, timeout=10)
    verb = "Approve" if approve else "Deny"
    print(
        f"    >>> Slack: {APPROVER} ({APPROVER_SLACK_ID}) clicks {verb} on {row.step_id!r} — "
        f"{row.request.action} {json.dumps(row.request.params, sort_keys=True)} -> "
        f"POST /slack/interactions {r.status_code} {r.json().get('text', r.text)}",
        flush=True,
    )


def follow_run(
    t0: float, gateway: str, incident_id: str, result: DemoResult, settings: Settings
) -> DemoResult:
    """Wait for the run the gateway started, print its timeline live, click the approvals."""
    from runbook.runtime import build_runtime

    rt = build_runtime(settings)
    store = rt.store
    approvals = rt.approvals()
    end = time.monotonic() + DEADLINE_SECONDS
    run: dict[str, Any] | None = None
    while run is None and time.monotonic() < end:
        run = next((r for r in store.runs(limit=20) if r.get("incident_id") == incident_id), None)
        time.sleep(0.2)
    if run is None:
        raise RuntimeError(f"no run started for incident {incident_id} within {DEADLINE_SECONDS:.0f}s")
    result.run_id = run["run_id"]
    say(t0, f"Prefect flow run {result.run_id} of backlog-triage started by the gateway; its timeline:")
    last, answered = 0, set()
    while time.monotonic() < end:
        for event in store.events(result.run_id, after_id=last):
            last = event.id or last
            print(f"    {event.line()}", flush=True)
            _outputs(event, result)
        for row in approvals.store.pending():
            if row.run_id == result.run_id and row.id not in answered:
                answered.add(row.id)
                _click(gateway, row)
        current = store.get_run(result.run_id) or {}
        if current.get("status") not in (None, "running"):
            for event in store.events(result.run_id, after_id=last):
                print(f"    {event.line()}", flush=True)
                _outputs(event, result)
            result.status = current["status"]
            say(t0, f"run {result.run_id} finished: {result.status}; verdict {result.verdict}")
            return result
        time.sleep(0.3)
    raise RuntimeError(f"run {result.run_id} did not finish within {DEADLINE_SECONDS:.0f}s")


def check_system(t0: float, fault: BacklogPoison, result: DemoResult) -> None:
    """Judge the real system, not the run's own report."""
    end = time.monotonic() + 20
    dlq = main = -1
    while time.monotonic() < end:
        dlq, main = fault.rabbit.counts(fault.dlq)[0], fault.rabbit.counts(fault.queue)[0]
        if dlq == 0 and main == 0:
            break
        time.sleep(0.5)
    quarantined = fault.quarantined_ids()
    result.checks = {
        "verdict is poison_messages": result.verdict == "poison_messages",
        f"{fault.poison_id} is in {fault.quarantine}": quarantined == [fault.poison_id],
        f"{fault.dlq} was redriven (empty)": dlq == 0,
        f"{fault.queue} drained by the recovered worker": main == 0,
        "postmortem draft written": bool(result.postmortem and Path(result.postmortem).is_file()),
    }
    say(t0, "the real system afterwards:")
    for what, ok in result.checks.items():
        print(f"    {'ok ' if ok else 'NO '} {what}", flush=True)
    if result.postmortem and Path(result.postmortem).is_file():
        lines = Path(result.postmortem).read_text(encoding="utf-8").splitlines()
        print(f"\npostmortem draft: {result.postmortem} ({len(lines)} lines); it begins:", flush=True)
        for line in lines[:18]:
            print(f"    {line}", flush=True)
    print(
        f"\nsee it again: .venv/bin/runbook timeline {result.run_id}   |   "
        f".venv/bin/runbook postmortem {result.run_id}",
        flush=True,
    )


def main() -> int:
    started = time.monotonic()
    code, result = run_demo()
    verdict = "found and fixed" if code == 0 else "did NOT complete"
    print(
        f"\ndemo {verdict} in {time.monotonic() - started:.0f}s (run {result.run_id}: {result.status})",
        flush=True,
    )
    return code
