"""Secrets: one canary value planted in every credential — RabbitMQ AMQP and management passwords
(a real user created for the test), the PostgreSQL password of the inspected database *and* of the
runbook store (a real role), the Slack bot token and signing secret, the PagerDuty API token and
webhook secrets, the kubeconfig bearer token — then a full incident run through the real Prefect flow
(shipped backlog-triage with an incident, approvals answered on the CLI channel, a postmortem) plus
a run whose steps fail against every backend. Everything the runs produced is scanned: all log
records (DEBUG, every logger), stdout/stderr, the store's rows (timeline, runs, approvals, Slack
outbox, ledger), Slack messages received, PagerDuty request bodies, the Prefect flow run (parameters,
state message), its task runs and its logs through the Prefect API, exception text and the postmortem."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import responses

from runbook.core import redact
from runbook.core.settings import Settings
from runbook.store.launches import Launch, launched_here
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.gameday.conftest import wait_until
from tests.support.kube_api import KubeAPIServer
from tests.support.slack_api import SlackAPI

MGMT = "http://127.0.0.1:15672"
GUEST = ("guest", "guest")
PD = "https://api.pagerduty.com"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # noqa: BLE001
            self.lines.append(f"unformattable record {record.name}: {exc}")


@pytest.fixture
def canary() -> str:
    return f"CANARY{uuid.uuid4().hex[:12]}"


@pytest.fixture
def rabbit_user(rabbitmq_available: None, canary: str) -> Iterator[tuple[str, str]]:
    user, pw = f"rbcanary_{uuid.uuid4().hex[:6]}", f"{canary}-amqp"
    httpx.put(
        f"{MGMT}/api/users/{user}", json={"password": pw, "tags": "monitoring"}, auth=GUEST, timeout=10
    ).raise_for_status()
    httpx.put(
        f"{MGMT}/api/permissions/%2F/{user}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
        auth=GUEST,
        timeout=10,
    ).raise_for_status()
    yield user, pw
    httpx.delete(f"{MGMT}/api/users/{user}", auth=GUEST, timeout=10)


@pytest.fixture
def pg_role(postgres_available: None, canary: str) -> Iterator[tuple[str, str]]:
    """Localhost uses trust auth, so the password is not checked — but it is in every URL we use."""
    role, pw = f"rb_canary_{uuid.uuid4().hex[:6]}", f"{canary}-pg"
    with psycopg.connect("postgresql://root@127.0.0.1:5432/test", autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'")
        c.execute(f"GRANT pg_monitor TO {role}")
        c.execute(f"CREATE DATABASE {role} OWNER {role}")  # the runbook store, owned by the role
    yield role, pw
    with psycopg.connect("postgresql://root@127.0.0.1:5432/test", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        c.execute(f"DROP ROLE {role}")


def prefect_texts(run_id: str) -> list[str]:
    api = os.environ["PREFECT_API_URL"].rstrip("/")
    fr = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
    body = {"task_runs": {"flow_run_id": {"any_": [run_id]}}}
    tasks = wait_until(
        lambda: httpx.post(f"{api}/task_runs/filter", json=body, timeout=10).json(),
        30,
        "task runs to reach the Prefect API",
    )
    logs = httpx.post(
        f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}}, timeout=10
    ).json()
    return [json.dumps(fr), json.dumps(tasks), json.dumps(logs)]


def store_texts(store: TimelineStore, run_ids: list[str]) -> list[str]:
    out = []
    for table in (
        "runbook_runs",
        "runbook_events",
        "runbook_approval_requests",
        "runbook_slack_outbox",
        "runbook_executions",
    ):
        for rid in run_ids:
            out.append(
                json.dumps(store.db.query(f"SELECT * FROM {table} WHERE run_id = ?", (rid,)), default=str)
            )
    out.append(json.dumps(store.db.query("SELECT * FROM runbook_approval_votes"), default=str))
    return out


FAILING = """name: canary-failures-{u}
title: Every backend failing, with credentials everywhere
owner: sre
params:
  queue: {{type: string}}
steps:
  - id: missing_queue
    action: rabbitmq.queue_stats
    with: {{queue: "no-such-queue-{u}"}}
    on_failure: continue
  - id: amqp_canary
    action: rabbitmq.publish_canary
    with: {{queue: "no-such-queue-{u}"}}
    on_failure: continue
  - id: bad_sql
    action: postgres.query
    with: {{sql: "SELECT * FROM no_such_table_{u}"}}
    on_failure: continue
  - id: missing_deployment
    action: kubernetes.get_deployment
    with: {{namespace: orchestrator, deployment: nope-{u}}}
    on_failure: continue
  - id: pd_note
    action: pagerduty.add_note
    with: {{incident_id: PT4KHLK, content: "runbook run {{{{ run.id }}}}"}}
    on_failure: continue
  - id: purge
    action: rabbitmq.purge_queue
    with: {{queue: "{{{{ params.queue }}}}"}}
    approval: {{approvers: [incident-commander], timeout: 60s}}
finally:
  - id: postmortem
    action: timeline.postmortem
"""


def test_canary_secret_never_leaks(
    canary: str,
    rabbit_user: tuple[str, str],
    pg_role: tuple[str, str],
    prefect_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from runbook_devtools.drills import DrillApprover, _approvers_file

    from runbook.compiler.flow import build_flow
    from runbook.runtime import cached_registry, from_environment
    from runbook.spec.lint import lint_text
    from runbook.spec.loading import find_playbook

    user, amqp_pw = rabbit_user
    role, pg_pw = pg_role
    slack = SlackAPI(token=f"xoxb-{canary}-slack").start()
    kube = KubeAPIServer(token=f"{canary}-kube", rollout_delay=0.05, replace_delay=0.05).start()
    kube.seed_demo()
    q = f"canary-{uuid.uuid4().hex[:6]}"
    for name in (q, f"{q}-dlq", f"{q}-quarantine"):
        httpx.put(f"{MGMT}/api/queues/%2F/{name}", json={"durable": True}, auth=GUEST, timeout=10)
    env = {
        "RABBITMQ_URL": f"amqp://{user}:{amqp_pw}@127.0.0.1:5672/",
        "RABBITMQ_MANAGEMENT_URL": f"http://{user}:{amqp_pw}@127.0.0.1:15672",
        "DATABASE_URL": f"postgresql://{role}:{pg_pw}@127.0.0.1:5432/test",
        "RUNBOOK_DATABASE_URL": f"postgresql://{role}:{pg_pw}@127.0.0.1:5432/{role}",
        "SLACK_BOT_TOKEN": slack.token,
        "RUNBOOK_SLACK_API_URL": slack.url,
        "RUNBOOK_SLACK_CHANNEL": "C0CANARY",
        "RUNBOOK_SLACK_SIGNING_SECRET": f"{canary}-signing",
        "PAGERDUTY_API_TOKEN": f"u+{canary}-pd",
        "PAGERDUTY_FROM_EMAIL": "ops@example.com",
        "RUNBOOK_PAGERDUTY_WEBHOOK_SECRETS": f"{canary}-wh1,{canary}-wh2",
        "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        "RUNBOOK_HOME": str(tmp_path / "home"),
        "RUNBOOK_APPROVERS": "",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cap = Capture()
    watched = [
        logging.getLogger(),
        *(
            logging.getLogger(n)
            for n in ("prefect", "runbook", "urllib3", "kubernetes", "httpx", "slack_sdk", "pika", "psycopg")
        ),
    ]
    old_levels = [lg.level for lg in watched]
    for lg in watched:
        lg.addHandler(cap)
        lg.setLevel(logging.DEBUG)
    texts: list[str] = []
    run_ids: list[str] = []
    try:
        reg = cached_registry()
        triage = find_playbook("backlog-triage", Path("playbooks"), reg)
        failing, problems = lint_text(FAILING.format(u=q[-6:]), "f.yaml", reg)
        assert not problems, problems
        monkeypatch.setenv("RUNBOOK_APPROVERS", str(_approvers_file(failing, tmp_path)))
        settings = Settings.from_env()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
            rs.add_passthru("http://127.0.0.1")
            rs.add(
                responses.POST, f"{PD}/incidents/PT4KHLK/notes", status=500, json={"error": {"message": "x"}}
            )
            rs.add(
                responses.POST,
                f"{PD}/incidents/PCANARY/notes",
                status=201,
                json={"note": {"id": "PN1", "content": "ok", "created_at": "2026-11-23T00:00:00Z"}},
            )
            for pb, params, incident in (
                (
                    triage,
                    {
                        "queue": q,
                        "dlq": f"{q}-dlq",
                        "quarantine_queue": f"{q}-quarantine",
                        "progress_window": 5,
                        "depth_threshold": 1,
                    },
                    {"id": "PCANARY", "title": "backlog on plans", "service": {"summary": "queue-platform"}},
                ),
                (failing, {"queue": q}, None),
            ):
                approver = DrillApprover(settings, f"canary-{pb.name}", approve=True).start()
                try:
                    with launched_here(Launch("pagerduty", f"unix:canary-{pb.name}", incident)):
                        state = build_flow(pb, from_environment)(**params, return_state=True)
                finally:
                    approver.stop()
                run_ids.append(str(state.state_details.flow_run_id))
                texts.append(repr(state) + str(state.message))
            texts += [
                c.request.body.decode() if isinstance(c.request.body, bytes) else str(c.request.body)
                for c in rs.calls
            ]
        store = TimelineStore(open_database(settings.database_url))
        assert {store.get_run(r)["status"] for r in run_ids} <= {"completed", "failed"}
        failed = [e.summary for e in store.events(run_ids[1]) if e.kind == "step.failed"]
        assert len(failed) >= 4, failed  # the failures (and their exception text) really happened
        texts += store_texts(store, run_ids)
        texts += [json.dumps(c) for c in slack.calls]
        for rid in run_ids:
            texts += prefect_texts(rid)
        texts += [p.read_text() for p in (tmp_path / "home").rglob("*") if p.is_file()]
    finally:
        for lg, level in zip(watched, old_levels, strict=True):
            lg.removeHandler(cap)
            lg.setLevel(level)
        kube.stop()
        slack.down()
        for name in (q, f"{q}-dlq", f"{q}-quarantine"):
            httpx.delete(f"{MGMT}/api/queues/%2F/{name}", auth=GUEST, timeout=10)
    out, err = capfd.readouterr()
    everything = {"logs": "\n".join(cap.lines), "stdout": out, "stderr": err, "artifacts": "\n".join(texts)}
    assert len(slack.calls) > 5 and "postmortem" in everything["artifacts"].lower()
    leaks = {where: _context(text, canary) for where, text in everything.items() if canary in text}
    assert not leaks, f"canary leaked: {json.dumps(leaks, indent=1)[:4000]}"
    assert redact.redact(f"x {canary}-amqp y") == "x *** y"


def _context(text: str, needle: str) -> list[str]:
    out, i = [], text.find(needle)
    while i >= 0 and len(out) < 5:
        out.append(text[max(0, i - 200) : i + 60])
        i = text.find(needle, i + 1)
    return out
