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

The pieces: :mod:`.scene` (approver, the fault — the drill's
:class:`~runbook_devtools.drills.poison.BacklogPoison` with a dead-lettered DLQ and a worker that
recovers —, the playbook's demo defaults, the environment), :mod:`.serve` (``runbook serve``),
:mod:`.vendors` (signed PagerDuty and Slack requests), :mod:`.drill` (the drill and its verdict).
``python -m runbook_devtools.demo`` runs :func:`main`.
"""

from __future__ import annotations

from runbook_devtools.demo.drill import DemoResult, check_system, follow_run, main, run_demo
from runbook_devtools.demo.scene import DLQ_FAILED, demo_fault, demo_playbook

__all__ = [
    "DLQ_FAILED",
    "DemoResult",
    "check_system",
    "demo_fault",
    "demo_playbook",
    "follow_run",
    "main",
    "run_demo",
]
