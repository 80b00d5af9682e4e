"""The demo's scene: who approves, the fault (the drill's, with the demo's knobs), the playbook with
demo defaults, and the environment every piece the demo starts reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from runbook.core.settings import Settings
from runbook_devtools.drills.poison import BacklogPoison

PAGERDUTY_SECRET = "demo-pagerduty-webhook-secret"  # a demo value, printed on purpose
SLACK_SECRET = "demo-slack-signing-secret"  # a demo value
APPROVER_SLACK_ID, APPROVER = "U0DEMOIC", "demo-ic"
SLACK_TEAM = "TDEMO"  # the demo workspace: the only one whose clicks count (RUNBOOK_SLACK_TEAM_ID)
APPROVED_STEPS = {
    "quarantine": "the head message crashed every worker; move it aside",
    "redrive_canary": "queue is healthy again; try a canary from the DLQ",
    "redrive_rest": "the canary was consumed and none came back",
}
DLQ_FAILED = 12  # earlier failures waiting in the DLQ with x-death headers
DEADLINE_SECONDS = 240.0


def _find_root() -> Path:
    """The checkout the demo runs in: the folder holding ``playbooks/backlog_triage.yaml`` above this
    file (an editable install), else the working directory (``make demo`` runs from the checkout)."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "playbooks" / "backlog_triage.yaml").is_file():
            return folder
    return Path.cwd()


ROOT = _find_root()


def say(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)


def demo_fault(tag: str, settings: Settings, prefix: str = "demo-plans") -> BacklogPoison:
    """The drill's poison-backlog fault as the demo stages it: earlier failures dead-lettered into the
    DLQ (so the playbook has something to redrive) and a worker that recovers once the poison message
    is quarantined (so the redriven jobs are really consumed)."""
    return BacklogPoison(tag, settings, prefix=prefix, dead_lettered=DLQ_FAILED, recovers=True)


def demo_playbook(folder: Path, fault: BacklogPoison) -> Path:
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


def demo_environment(tmp: Path, kubeconfig: Path, playbooks: Path) -> dict[str, str]:
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
    return {
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
