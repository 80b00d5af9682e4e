"""When a run ends, nothing of it may stay waiting: its pending approval requests are voided.

A request left pending after its run ended (the worker died, the flow was cancelled, the run
finished on another path) would keep live Approve buttons in Slack and let ``runbook approve``
say "approved" for a step that will never run. :func:`void_pending` closes every pending request
of the run as ``voided`` with the reason, records ``approval.voided``, and queues the Slack update
of each request message that was posted (the header then says Voided and the buttons go), which
any runbook process sharing the store posts. Called for ``run.finished`` by the recorder. Not for a
run the reaper marks crashed: that run is retried with the same run id, and a decision recorded
while no worker waited is honoured then.
"""

from __future__ import annotations

from collections.abc import Callable

from runbook.core.events import Event, Kind
from runbook.core.states import ApprovalStatus
from runbook.store.approvals import ApprovalStore
from runbook.store.slack import SlackStore
from runbook.store.timeline import TimelineStore


def void_pending(
    store: TimelineStore, run_id: str, why: str, publish: Callable[[Event], None] | None = None
) -> list[int]:
    """Void the run's pending requests; returns their ids. ``publish`` gets each ``approval.voided``
    event (the run's live sinks) — without it, posted Slack messages are updated through the outbox."""
    approvals = ApprovalStore(store.db)
    run = store.get_run(run_id) or {}
    voided: list[int] = []
    for row in approvals.pending():
        if row.run_id != run_id:
            continue
        closed = approvals.close(row.id, ApprovalStatus.VOIDED, why)
        if closed is None:
            continue  # decided or expired at the same moment: that outcome stands
        event = store.append(
            Event(
                run_id=run_id,
                kind=Kind.APPROVAL_VOIDED,
                summary=f"{row.request.step_title}: approval void — {why}",
                step_id=row.step_id,
                actor="runbook",
                incident_id=run.get("incident_id"),
                details={"request_id": row.id, "plan_hash": row.plan_hash, "reason": why, "run_ended": True},
            )
        )
        if publish is not None:
            publish(event)
        elif closed.slack_ts:
            SlackStore(approvals.db).enqueue(run_id, "update", {"request_id": row.id})
        voided.append(row.id)
    return voided
