"""``make demo``: a full incident drill on the embedded default, through every real moving part.

Why a drill and not a slideshow: the only convincing proof that an executable runbook works is to
watch it handle an incident the way production would. So nothing here calls the engine directly:

1. a real backlog with a poison message is made in the local RabbitMQ (a worker is wedged behind a
   message every worker crashed on; earlier failures wait in the dead-letter queue with real
   ``x-death`` headers);
2. the loopback Kubernetes API (:mod:`runbook_devtools.kube_api`) serves the consumer deployment the
   playbook reads, through ``KUBECONFIG``, as a real cluster would;
3. ``runbook serve`` (a subprocess) serves the shipped ``backlog-triage`` playbook as a Prefect
   deployment — with demo defaults for queue names and windows, because a PagerDuty-started run
   takes the playbook's defaults;
4. the gateway (in-process uvicorn) receives a **signed** PagerDuty V3 ``incident.triggered``
   webhook and starts the run through Prefect;
5. every approval request is answered by a demo incident commander clicking Approve in "Slack": a
   signed Slack interaction posted to the gateway's ``/slack/interactions``, checked against
   ``RUNBOOK_APPROVERS`` like any other click;
6. the run classifies the backlog (poison messages), quarantines the poison message, redrives the
   DLQ with a canary first, verifies, and writes the postmortem draft.

The timeline is printed as it happens, then the real system is checked (not the run's own claims).
Everything the demo started is stopped and its queues are deleted; exit 0 only when the drill
found and fixed the fault.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pika
import yaml

from runbook.core.settings import Settings
from runbook_devtools.drills.local import Consumer, LocalRabbit, wait_for

ROOT = Path(__file__).resolve().parents[2]
PAGERDUTY_SECRET = "demo-pagerduty-webhook-secret"  # a demo value, printed on purpose
SLACK_SECRET = "demo-slack-signing-secret"  # a demo value
APPROVER_SLACK_ID, APPROVER = "U0DEMOIC", "demo-ic"
SLACK_TEAM = "TDEMO"  # the demo workspace: the only one whose clicks count (RUNBOOK_SLACK_TEAM_ID)
APPROVED_STEPS = {
    "quarantine": "the head message crashed every worker; move it aside",
    "redrive_canary": "queue is healthy again; try a canary from the DLQ",
    "redrive_rest": "the canary was consumed and none came back",
}
BACKLOG, DLQ_FAILED = 300, 12
DEADLINE_SECONDS = 240.0


def _say(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the fault ---------------------------------------------------------------------------------------


@dataclass
class PoisonBacklog:
    """The fault: a backlog behind a poison message, a wedged worker, failed jobs in the DLQ."""

    amqp_url: str
    mgmt_url: str
    queue: str
    consumer: Any = None
    poison_id: str = ""
    notes: list[str] = field(default_factory=list)
    rabbit: LocalRabbit = field(init=False, repr=False)

    @property
    def dlq(self) -> str:
        return f"{self.queue}-dlq"

    @property
    def quarantine(self) -> str:
        return f"{self.queue}-quarantine"

    def __post_init__(self) -> None:
        self.rabbit = LocalRabbit(self.amqp_url, self.mgmt_url)

    def inject(self) -> None:
        self.delete()
        conn = self.rabbit.connect()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            for q in (self.dlq, self.quarantine):
                ch.queue_declare(q, durable=True)
            ch.queue_declare(
                self.queue,
                durable=True,
                arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dlq},
            )
            # jobs that failed earlier today: rejected by a worker, dead-lettered with x-death
            for i in range(DLQ_FAILED):
                self._publish(ch, f"failed-{i}", {"job-type": "render"})
            for _ in range(DLQ_FAILED):
                method, _, _ = ch.basic_get(self.queue)
                ch.basic_nack(method.delivery_tag, requeue=False)
        finally:
            conn.close()
        def dead_lettered() -> bool:
            return self.rabbit.counts(self.dlq)[0] == DLQ_FAILED

        wait_for(dead_lettered, 20, "dead-lettering into the DLQ", 0.2)
        # one worker, wedged behind the poison message until it is gone from the queue
        self.consumer = Consumer(
            self.amqp_url, self.queue, "held", release=lambda: self.rabbit.counts(self.quarantine)[0] > 0
        ).start()
        self.poison_id = f"poison-{self.queue.rsplit('-', 1)[-1]}"
        conn = self.rabbit.connect()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            self._publish(ch, "in-flight", {"job-type": "render"})
            wait_for(lambda: self.rabbit.counts(self.queue)[0] == 0, 20, "the worker to take its job", 0.2)
            self._publish(ch, self.poison_id, {"job-type": "render", "tenant": "t-13"})
            method, _, _ = ch.basic_get(self.queue)  # a worker took it and crashed: redelivered
            ch.basic_nack(method.delivery_tag, requeue=True)
            for i in range(BACKLOG):
                self._publish(ch, f"job-{i}", {"job-type": "render"})
        finally:
            conn.close()
        self._settle()

    def _publish(self, ch: Any, message_id: str, headers: dict[str, Any]) -> None:
        ch.basic_publish(
            "",
            self.queue,
            json.dumps({"job": message_id}).encode(),
            pika.BasicProperties(delivery_mode=2, message_id=message_id, headers=headers),
        )

    def _settle(self) -> None:
        """The playbook reads the management API: wait until it shows the backlog and the consumer,
        so the snapshot sees what is really there."""
        want = BACKLOG + 2  # ready backlog + poison + the wedged worker's unacked job
        if not self.rabbit.settle(self.queue, want, 1, timeout=30):
            self.notes.append("management stats did not settle within 30 s; the snapshot may lag")

    def delete(self) -> None:
        for q in (self.queue, self.dlq, self.quarantine):
            self.rabbit.mgmt("DELETE", self.rabbit.queue_path(q))

    def quarantined_ids(self) -> list[str]:
        return [str(i) for i in self.rabbit.peek_ids(self.quarantine, 10)]

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
            self.consumer = None


# -- the pieces that run -------------------------------------------------------------------------------


def demo_playbook(folder: Path, fault: PoisonBacklog) -> Path:
    """The shipped backlog-triage with demo defaults: a PagerDuty-started run takes the defaults, so
    this is where the demo's queue names and short windows go. The steps are the shipped ones."""
    source = Path(os.environ.get("RUNBOOK_PLAYBOOKS") or ROOT / "playbooks")
    if not source.is_absolute() and not source.is_dir():
        source = ROOT / source
    doc = yaml.safe_load((source / "backlog_triage.yaml").read_text(encoding="utf-8"))
    defaults = {
        "queue": fault.queue,
        "dlq": fault.dlq,
        "quarantine_queue": fault.quarantine,
        "depth_threshold": 100,
        "progress_window": 5,
        "poll_interval": 0.5,
        "verify_timeout": 30,
        "canary_count": 5,
        "kafka_enabled": False,
    }
    for name, value in defaults.items():
        doc["params"][name]["default"] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "backlog_triage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


class GatewayThread:
    """The real gateway app under uvicorn on a free loopback port, in this process."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from runbook.gateway.app import create_app

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="demo-gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayThread:
        self.thread.start()
        end = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class Serve:
    """``runbook serve`` as a subprocess in its own process group (stopped with SIGTERM, which does
    not pause schedules: ``pause_on_shutdown=False``)."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        self.started_at = time.time()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from runbook.cli import main; sys.exit(main())", "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(ROOT),
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, api: str, deployment: str, timeout: float = 90.0) -> None:
        """Until the deployment was (re)applied by this serve process and its fast lane can see it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"runbook serve exited ({self.proc.returncode}); see {self.log_path}")
            if b"serving" in self.log_path.read_bytes():
                try:
                    r = httpx.get(f"{api}/deployments/name/{deployment}", timeout=5)
                    if r.status_code == 200 and _after(r.json().get("updated"), self.started_at):
                        time.sleep(0.5)  # one fast-lane poll to resolve the deployment id
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise RuntimeError(f"runbook serve did not serve {deployment} in {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)


def _after(stamp: str | None, epoch: float) -> bool:
    from datetime import datetime

    if not stamp:
        return False
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= epoch - 1


# -- PagerDuty and Slack, as they would call us -------------------------------------------------------


def pagerduty_webhook(incident_id: str, title: str) -> tuple[bytes, dict[str, str]]:
    """A V3 ``incident.triggered`` delivery, signed as PagerDuty signs it (HMAC-SHA256, ``v1=``)."""
    payload = {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": "incident.triggered",
            "resource_type": "incident",
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "agent": {
                "id": "PDEMOAG",
                "summary": "RabbitMQ queue depth monitor",
                "type": "service_reference",
            },
            "client": {"name": "Monitoring"},
            "data": {
                "id": incident_id,
                "type": "incident",
                "number": int(time.time()) % 100000,
                "status": "triggered",
                "title": title,
                "urgency": "high",
                "html_url": f"https://demo.pagerduty.com/incidents/{incident_id}",
                "service": {"id": "PDEMOSV", "summary": "queue-platform", "type": "service_reference"},
                "escalation_policy": {
                    "id": "PDEMOEP",
                    "summary": "Queue on-call",
                    "type": "escalation_policy_reference",
                },
                "assignees": [{"id": "PDEMOUS", "summary": "Demo On-call", "type": "user_reference"}],
                "teams": [],
            },
        }
    }
    body = json.dumps(payload).encode()
    signature = "v1=" + hmac.new(PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-Webhook-Id": str(uuid.uuid4()),
        "X-PagerDuty-Signature": signature,
    }
    return body, headers


def slack_click(
    request_id: int, plan_hash: str, *, approve: bool, reason: str
) -> tuple[bytes, dict[str, str]]:
    """An Approve/Deny ``block_actions`` interaction, signed as Slack signs it (v0)."""
    from runbook.slack.blocks import REASON_ACTION, REASON_BLOCK, ApprovalAction

    action = ApprovalAction.APPROVE if approve else ApprovalAction.DENY
    payload = {
        "type": "block_actions",
        "user": {"id": APPROVER_SLACK_ID, "username": APPROVER, "name": APPROVER, "team_id": SLACK_TEAM},
        "team": {"id": SLACK_TEAM, "domain": "demo"},
        "container": {"type": "message", "channel_id": "CDEMOINC"},
        "channel": {"id": "CDEMOINC"},
        "state": {"values": {REASON_BLOCK: {REASON_ACTION: {"type": "plain_text_input", "value": reason}}}},
        "actions": [{"action_id": action.value, "value": f"{request_id}:{plan_hash}", "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SLACK_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }
    return body, headers


# -- the drill -------------------------------------------------------------------------------------------


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


def _environment(tmp: Path, kubeconfig: Path, playbooks: Path) -> dict[str, str]:
    """What the gateway, ``runbook serve`` and the run read. Real Slack and PagerDuty are switched
    off: the demo incident must not page anyone or post to a real channel."""
    approvers = tmp / "approvers.yaml"
    approvers.write_text(
        yaml.safe_dump(
            {
                "roles": {"incident-commander": [APPROVER], "queue-owner": [APPROVER], "dba": [APPROVER]},
                "people": {APPROVER: [APPROVER_SLACK_ID, f"{APPROVER}@demo.invalid"]},
            }
        ),
        encoding="utf-8",
    )
    os.chmod(approvers, 0o600)
    env = {
        "RUNBOOK_PLAYBOOKS": str(playbooks),
        "RUNBOOK_PAGERDUTY_WEBHOOK_SECRETS": PAGERDUTY_SECRET,
        "RUNBOOK_SLACK_SIGNING_SECRET": SLACK_SECRET,
        "RUNBOOK_SLACK_TEAM_ID": SLACK_TEAM,
        "RUNBOOK_APPROVERS": str(approvers),
        "KUBECONFIG": str(kubeconfig),
        "DATABASE_URL": os.environ.get("DATABASE_URL") or "postgresql://root@127.0.0.1:5432/postgres",
        "PREFECT_API_URL": os.environ.get("PREFECT_API_URL") or "http://127.0.0.1:4200/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL") or "WARNING",
        "RUNBOOK_HEARTBEAT_SECONDS": "2",
    }
    return env


def run_demo() -> tuple[int, DemoResult]:
    """The whole drill; returns (exit code, result)."""
    from runbook.cli import _quiet_prefect, require_prefect_server

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

    from runbook_devtools.kube_api import KubeAPIServer

    base = Settings.from_env(demo_env)
    tag = uuid.uuid4().hex[:6]
    fault = PoisonBacklog(base.rabbitmq_url, base.rabbitmq_management_url, f"demo-plans-{tag}")
    kube = KubeAPIServer(rollout_delay=0.5, replace_delay=0.5)
    serve: Serve | None = None
    gateway: GatewayThread | None = None
    with tempfile.TemporaryDirectory(prefix="runbook-demo-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            _say(
                t0,
                f"Prefect server {base.prefect_api_url} is up; timeline store {base.database_url}",
            )
            fault.inject()
            _say(
                t0,
                f"RabbitMQ: {fault.queue} has a backlog of {BACKLOG + 1} ready messages behind "
                f"{fault.poison_id} (redelivered: a worker crashed on it); the one worker is wedged; "
                f"{DLQ_FAILED} earlier failures wait in {fault.dlq} with x-death headers",
            )
            kube.start()
            kube.seed_demo()
            kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig", namespace="orchestrator")
            _say(t0, f"Kubernetes: loopback API {kube.url} (deployment orchestrator/orchestrator, 3 pods)")
            _say(t0, f"Kubernetes: watch it with `kubectl --kubeconfig {kubeconfig} get deployments,pods -A`")
            playbooks = tmp / "playbooks"
            demo_playbook(playbooks, fault)
            env = _environment(tmp, kubeconfig, playbooks)
            demo_env.update(env)
            settings = Settings.from_env(demo_env)
            serve = Serve(tmp / "serve.log", dict(demo_env)).start()
            _say(t0, f"runbook serve (pid {serve.proc.pid if serve.proc else '?'}): starting ...")
            serve.wait_ready(env["PREFECT_API_URL"].rstrip("/"), "backlog-triage/runbook")
            _say(t0, "runbook serve: backlog-triage/runbook is served (Prefect deployment, fast lane on)")
            gateway = GatewayThread(settings).start()
            _say(t0, f"gateway: {gateway.url} (POST /webhooks/pagerduty, POST /slack/interactions)")

            incident_id = f"PDEMO{tag.upper()}"
            title = f"Queue depth > 100 on {fault.queue}: backlog growing"
            body, headers = pagerduty_webhook(incident_id, title)
            r = httpx.post(f"{gateway.url}/webhooks/pagerduty", content=body, headers=headers, timeout=10)
            _say(
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
            fault.stop()
            kube.stop()
            fault.delete()
            _say(
                t0,
                "cleaned up: gateway and loopback Kubernetes stopped, runbook serve stopped"
                + (f" (exit {code})" if code is not None else "")
                + f", demo queues {fault.queue}* deleted",
            )
    return (0 if result.ok else 1), result


def follow_run(
    t0: float, gateway: str, incident_id: str, result: DemoResult, settings: Settings
) -> DemoResult:
    """Wait for the run the gateway started, print its timeline live, click the approvals."""
    from runbook.core.events import Kind
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
    _say(t0, f"Prefect flow run {result.run_id} of backlog-triage started by the gateway; its timeline:")
    last, answered = 0, set()
    while time.monotonic() < end:
        for event in store.events(result.run_id, after_id=last):
            last = event.id or last
            print(f"    {event.line()}", flush=True)
            if event.kind == Kind.STEP_SUCCEEDED and event.step_id == "classify":
                result.verdict = (event.details.get("output") or {}).get("verdict")
            if event.kind == Kind.STEP_SUCCEEDED and event.step_id == "postmortem":
                result.postmortem = (event.details.get("output") or {}).get("path")
        for row in approvals.store.pending():
            if row.run_id != result.run_id or row.id in answered:
                continue
            answered.add(row.id)
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
        current = store.get_run(result.run_id) or {}
        if current.get("status") not in (None, "running"):
            for event in store.events(result.run_id, after_id=last):
                print(f"    {event.line()}", flush=True)
                if event.kind == Kind.STEP_SUCCEEDED and event.step_id == "postmortem":
                    result.postmortem = (event.details.get("output") or {}).get("path")
            result.status = current["status"]
            _say(t0, f"run {result.run_id} finished: {result.status}; verdict {result.verdict}")
            return result
        time.sleep(0.3)
    raise RuntimeError(f"run {result.run_id} did not finish within {DEADLINE_SECONDS:.0f}s")


def check_system(t0: float, fault: PoisonBacklog, result: DemoResult) -> None:
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
    _say(t0, "the real system afterwards:")
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


if __name__ == "__main__":
    sys.exit(main())
