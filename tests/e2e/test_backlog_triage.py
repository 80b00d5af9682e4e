"""backlog-triage end to end: a real backlog behind a poison message, failed jobs in the DLQ.

The fault is the one ``make demo`` drills (a wedged worker behind a message every worker crashed on;
earlier failures dead-lettered with real x-death headers); here the run is started directly as its
Prefect flow and the approvals come through ``runbook approve``."""

from __future__ import annotations

import uuid
from pathlib import Path

from runbook_devtools.demo import DLQ_FAILED, demo_fault
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, ready, run_playbook, wait_until


def test_poison_backlog_is_quarantined_and_dlq_redriven(e2e_env: Settings, kube: KubeAPIServer) -> None:
    tag = uuid.uuid4().hex[:8]
    kube.add_deployment("orchestrator", "orchestrator", replicas=2, labels={"app": "orchestrator"})
    fault = demo_fault(tag, e2e_env, prefix="e2e-backlog")  # the drill's fault, staged as the demo does
    try:
        fault.inject()
        script = {"quarantine": "approve", "redrive_canary": "approve", "redrive_rest": "approve"}
        with Approver(e2e_env, f"e2e-{tag}", script) as approver:
            result = run_playbook(
                "backlog-triage",
                {
                    "queue": fault.queue,
                    "dlq": fault.dlq,
                    "quarantine_queue": fault.quarantine,
                    "depth_threshold": 100,
                    "progress_window": 5,
                    "poll_interval": 0.5,
                    "verify_timeout": 30,
                    "canary_count": 5,
                    "database": "test",
                },
                f"e2e-{tag}",
            )
        assert result.status == "completed", result.text()
        assert result.verdict == "poison_messages", result.text()
        assert fault.poison_id in result.output("classify")["evidence"]
        # the gated steps proposed, with their rendered calls, in order
        assert approver.steps() == ["quarantine", "redrive_canary", "redrive_rest"], approver.outputs
        q = approver.request("quarantine")
        assert q.action == "queue.quarantine"
        assert q.params["queue"] == fault.queue and q.params["quarantine_queue"] == fault.quarantine
        assert q.params["ids"] == [fault.poison_id]  # exactly the suspect, by id
        assert set(q.approvers) == {"incident-commander", "queue-owner"}
        canary = approver.request("redrive_canary").params
        assert (canary["dlq"], canary["queue"], canary["count"]) == (fault.dlq, fault.queue, 5)
        assert approver.request("redrive_rest").params.get("count") is None  # the rest
        assert all("-> 0" in line for line in approver.outputs), approver.outputs
        # the system afterwards: poison aside, DLQ redriven into the queue and consumed
        assert fault.quarantined_ids() == [fault.poison_id]
        assert wait_until(lambda: ready(fault.dlq) == 0 and ready(fault.queue) == 0 or None, 20, "drained")
        assert result.output("redrive_canary")["moved"] + result.output("redrive_rest")["moved"] == DLQ_FAILED
        assert fault.consumer is not None and fault.consumer.acked >= 300 + DLQ_FAILED
        path = Path(result.output("postmortem")["path"])
        text = path.read_text(encoding="utf-8")
        assert "poison_messages" in text and "demo-ic" not in text and "ic-alice" in text
    finally:
        fault.cleanup()
