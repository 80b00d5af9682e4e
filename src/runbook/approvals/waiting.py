"""The gate a run blocks on: record the request, announce it, wait for the store to hold a decision.

The store is the only source of decisions and the waiting run hears of one by push: a decision
recorded in the same process wakes it at once (:data:`runbook.approvals.pausing.decisions`), one
recorded elsewhere arrives by PostgreSQL LISTEN/NOTIFY when the store is PostgreSQL, and a SQLite
store is polled by one short query per tick for every waiter of the process (:class:`Watcher`).
The orchestrator is bookkeeping: the :class:`RunPauser` parks the run there while it waits (the
Prefect UI shows what is waiting, with a typed input) and unparks it in the background once the
decision is known, so the step starts without waiting on Prefect's poll or its API. Whatever a
resume through the orchestrator claims, the gate trusts only the store: a resume without a recorded
decision (e.g. forged in the Prefect UI) is refused, recorded, and the run is parked again. If the
orchestrator cannot be reached the run still waits and goes on; the timeline says so. A decision
recorded while no process waited is found in the store when the run comes back.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runbook.approvals.pausing import NOTIFY_CHANNEL, decisions
from runbook.approvals.service import Approvals, short
from runbook.core.durations import format_duration
from runbook.core.events import Kind
from runbook.core.gate import Decision, GateRequest, Recorder
from runbook.core.states import ApprovalStatus
from runbook.store.approvals import RequestRow

log = logging.getLogger("runbook.approvals")

PAUSE_MARGIN_SECONDS = 120.0
#: SQLite store: how often one query checks every waiter of the process (PostgreSQL pushes)
SQLITE_POLL_SECONDS = 0.05
#: PostgreSQL store: a safety poll behind LISTEN/NOTIFY
POSTGRES_POLL_SECONDS = 1.0
#: how often a waiting run checks that the orchestrator still shows it parked (forged resumes)
PARK_CHECK_SECONDS = 2.0


@dataclass
class _Waiter:
    request_id: int
    expires_at: datetime
    recorder: Recorder
    flow_run_id: str | None
    done: threading.Event = field(default_factory=threading.Event)
    status: str = ApprovalStatus.PENDING


class Watcher:
    """One thread per process and store watching every waiting request: one query per tick, however
    many wait; woken early by a decision in this process or a NOTIFY from another."""

    def __init__(self, approvals: Approvals, interval: float | None = None) -> None:
        self.approvals = approvals
        postgres = approvals.timeline.db.is_postgres
        self.interval = interval or (POSTGRES_POLL_SECONDS if postgres else SQLITE_POLL_SECONDS)
        self._waiters: dict[int, _Waiter] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        decisions.subscribe(self._poke)

    def _poke(self, request_id: int | str) -> None:
        self._wake.set()

    def add(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters[waiter.request_id] = waiter
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="approval-watcher", daemon=True)
                self._thread.start()
            db = self.approvals.timeline.db
            if db.is_postgres and (self._listener is None or not self._listener.is_alive()):
                self._listener = threading.Thread(
                    target=db.listen,
                    args=(NOTIFY_CHANNEL, self._poke, self._stop),
                    name="approval-listener",
                    daemon=True,
                )
                self._listener.start()
        self._wake.set()

    def remove(self, request_id: int) -> None:
        with self._lock:
            self._waiters.pop(request_id, None)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                waiters = list(self._waiters.values())
            if not waiters:
                continue
            try:
                self._tick(waiters)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the watcher
                log.warning("approval watcher: %s", exc)

    def _tick(self, waiters: list[_Waiter]) -> None:
        statuses = self.approvals.store.statuses([w.request_id for w in waiters])
        now = datetime.now(UTC)
        for w in waiters:
            status = statuses.get(w.request_id, ApprovalStatus.PENDING)
            if status == ApprovalStatus.PENDING and now >= w.expires_at:
                row = self.approvals.store.get(w.request_id)
                if row is not None:
                    self.approvals.expire(row, w.recorder)
                status = self.approvals.store.statuses([w.request_id]).get(w.request_id, status)
            if status == ApprovalStatus.PENDING:
                continue
            w.status = status
            w.done.set()


_watchers: dict[str, Watcher] = {}
_watchers_lock = threading.Lock()


def watcher_for(approvals: Approvals) -> Watcher:
    with _watchers_lock:
        key = approvals.timeline.db.url
        if key not in _watchers:
            _watchers[key] = Watcher(approvals)
        _watchers[key].approvals = approvals
        return _watchers[key]


class StoreGate:
    """The real gate (``Runtime.gate()``): durable requests, policy-checked channels, expiry."""

    def __init__(self, approvals: Approvals, *, console: bool = False) -> None:
        self.approvals = approvals
        self.console = console

    def request(self, req: GateRequest, recorder: Recorder) -> Decision:
        flow_run_id = self.approvals.pauser.current_run_id()
        earlier = self._earlier(req)
        if isinstance(earlier, Decision):
            return earlier
        if earlier is not None:
            row, created = earlier, False  # the same call is already waiting: wait on it, don't re-ask
            if flow_run_id and row.flow_run_id != flow_run_id:
                self.approvals.store.set_flow_run(row.id, flow_run_id)
        else:
            row, created = self.approvals.store.create(req, flow_run_id)
        if row.decided:
            return row.decision(self.approvals.store.votes(row.id))
        if created or not self._announced(row):
            self._announce(row, recorder)  # also when a worker died between recording and announcing
        waiter = _Waiter(row.id, row.expires_at, recorder, flow_run_id)
        watcher = watcher_for(self.approvals)
        watcher.add(waiter)
        try:
            if flow_run_id:
                self._pause_until_decided(row, waiter, recorder)
            else:
                waiter.done.wait()
        finally:
            watcher.remove(row.id)
        final = self.approvals.store.get(row.id)
        assert final is not None
        return final.decision(self.approvals.store.votes(row.id))

    def _earlier(self, req: GateRequest) -> Decision | RequestRow | None:
        """The step's newest earlier request, after a restart or a re-ask.

        Same call: its decision stands (made while nobody waited, it is not lost) or we keep waiting
        on it. An approval of a *different* call found after a restart (the attempt counter started
        again) is handed back once, marked void, so the engine voids it and asks again; on the
        engine's own re-ask (higher attempt) it is only marked void. A pending request for a
        different call is superseded."""
        prev = self.approvals.store.latest(req.run_id, req.step_id)
        if prev is None:
            return None
        if prev.plan_hash == req.plan_hash and prev.status != ApprovalStatus.VOIDED:
            return prev.decision(self.approvals.store.votes(prev.id)) if prev.decided else prev
        if prev.status == ApprovalStatus.PENDING:
            self.approvals.store.close(prev.id, ApprovalStatus.VOIDED, "superseded: the call changed")
        elif prev.status == ApprovalStatus.APPROVED:
            voided = self.approvals.store.close(
                prev.id, ApprovalStatus.VOIDED, "the call changed", from_status=ApprovalStatus.APPROVED
            )
            if voided is not None and req.attempt <= prev.request.attempt:
                return prev.decision(self.approvals.store.votes(prev.id))
        return None

    def _announced(self, row: RequestRow) -> bool:
        return any(
            e.kind == Kind.APPROVAL_REQUESTED and e.details.get("request_id") == row.id
            for e in self.approvals.timeline.events(row.run_id)
        )

    def _announce(self, row: RequestRow, recorder: Recorder) -> None:
        req = row.request
        policy = self.approvals.policy.get()
        who = policy.members(req.approvers)
        need = f"{req.min_approvals} approvals" if req.min_approvals > 1 else "1 approval"
        recorder.emit(
            Kind.APPROVAL_REQUESTED,
            f"{req.step_title}: needs {need} from {', '.join(req.approvers)} within "
            f"{format_duration(req.timeout_seconds)} — {req.description} (plan {short(req.plan_hash)})",
            step_id=req.step_id,
            actor=req.requested_by,
            details=req.timeline_details(
                request_id=row.id,
                roles=req.approvers,
                approvers=who,
                expires_at=row.expires_at.isoformat(),
            ),
        )
        if not policy.members(req.approvers):
            recorder.emit(
                Kind.NOTE,
                f"{req.step_title}: nobody is configured for roles "
                f"{', '.join(req.approvers)} (RUNBOOK_APPROVERS); this request will expire unless "
                "the approvers file is fixed",
                step_id=req.step_id,
            )
        if self.console:
            print(console_instructions(row, who), flush=True)

    def _pause_until_decided(self, row: RequestRow, waiter: _Waiter, recorder: Recorder) -> None:
        """Wait for the store's answer while the orchestrator shows the run parked for it."""
        assert waiter.flow_run_id is not None
        run = waiter.flow_run_id
        pauser = self.approvals.pauser
        parked = self._park(row, run)
        ever_parked = parked
        if not parked:
            recorder.emit(
                Kind.NOTE,
                f"{row.request.step_title}: Prefect did not answer; the run waits for the decision in"
                " the runbook store, and its Prefect record is brought up to date when Prefect is back",
                step_id=row.step_id,
                actor="runbook",
                details={"request_id": row.id, "prefect": "unreachable"},
            )
        while not waiter.done.wait(PARK_CHECK_SECONDS):
            if not parked:
                parked = ever_parked = self._park(row, run) or ever_parked
                continue
            if pauser.still_parked(run, row.id) is not False or self._decided(row.id):
                continue
            self._refuse_forged(row, recorder)
            parked = self._park(row, run, refused=True)
        if ever_parked:
            pauser.unpark(
                run, row.id, waiter.status, lambda line: self._bookkeeping_note(row, recorder, line)
            )

    def _park(self, row: RequestRow, flow_run_id: str, *, refused: bool = False) -> bool:
        left = (row.expires_at - datetime.now(UTC)).total_seconds()
        timeout = int(math.ceil(max(left, 0) + PAUSE_MARGIN_SECONDS))
        try:
            who = self.approvals.policy.get().members(row.request.approvers)
        except Exception as exc:  # noqa: BLE001 - the pause's text must not stop the wait
            log.warning("approvers for the pause description: %s", exc)
            who = []
        return self.approvals.pauser.park(
            flow_run_id,
            row.id,
            uuid.uuid4().hex[:8],
            timeout,
            description=request_markdown(row, who, slack=not self.console),
            message=pause_message(row, refused=refused, slack=not self.console),
        )

    def _decided(self, request_id: int) -> bool:
        current = self.approvals.store.get(request_id)
        return current is not None and current.decided

    @staticmethod
    def _bookkeeping_note(row: RequestRow, recorder: Recorder, line: str) -> None:
        try:
            recorder.emit(
                Kind.NOTE, line, step_id=row.step_id, actor="runbook", details={"request_id": row.id}
            )
        except Exception as exc:  # noqa: BLE001 - a note about Prefect must not fail anything
            log.warning("prefect bookkeeping note: %s", exc)

    @staticmethod
    def _refuse_forged(row: RequestRow, recorder: Recorder) -> None:
        recorder.emit(
            Kind.APPROVAL_REFUSED,
            f"{row.request.step_title}: a resume arrived through the Prefect API without a recorded "
            "decision; ignored — still waiting for an approval through Slack or `runbook approve`",
            step_id=row.step_id,
            actor="prefect-api",
            details={"request_id": row.id, "plan_hash": row.plan_hash, "channel": "prefect-api"},
        )


def console_instructions(row: RequestRow, who: list[str]) -> str:
    """What the console channel prints: the request and exactly how to answer it."""
    req = row.request
    import json

    evidence = "; ".join(f"{k}: {v}" for k, v in req.evidence.items()) or "(none)"
    cmd = f"runbook approve {req.run_id} {req.step_id}"
    return "\n".join(
        [
            f"  ┌ APPROVAL NEEDED — {req.step_title} (step {req.step_id}, attempt {req.attempt})",
            f"  │ call:    {req.action} {json.dumps(req.params, sort_keys=True, default=str)}",
            f"  │ does:    {req.description}",
            f"  │ why:     {evidence}",
            f"  │ plan:    {short(req.plan_hash)}",
            f"  │ who:     {', '.join(req.approvers)} ({', '.join(who) or 'nobody configured'}); "
            f"{req.min_approvals} needed" + ("; not the requester" if req.two_person else ""),
            f"  │ expires: {row.expires_at.strftime('%H:%M:%S')} UTC "
            f"({format_duration(req.timeout_seconds)})",
            f"  │ approve: {cmd} --as USER [--reason TEXT]",
            f"  └ deny:    {cmd} --as USER --deny --reason TEXT",
        ]
    )


#: the exact call shown in an orchestrator's description is clipped here (the fence is always closed)
MARKDOWN_CALL_LIMIT = 6000
REFUSED_HERE = (
    "**Resume here is refused.** A Resume in the Prefect UI or API records no decision: runbook"
    " refuses it, records the refusal in the run's timeline and keeps this run paused."
)


def _decide_commands(req: GateRequest) -> tuple[str, str]:
    cmd = f"runbook approve {req.run_id} {req.step_id}"
    return f"{cmd} --as USER [--reason TEXT]", f"{cmd} --as USER --deny --reason TEXT"


def request_markdown(row: RequestRow, who: list[str], *, slack: bool) -> str:
    """The request as Markdown for an orchestrator's UI (the Prefect pause description and the
    approval artifact): step, exact call, what it does, evidence, approvers, expiry, how to decide."""
    import json

    req = row.request
    call = json.dumps(req.params, indent=2, sort_keys=False, default=str)
    if len(call) > MARKDOWN_CALL_LIMIT:
        call = f"{call[:MARKDOWN_CALL_LIMIT]}\n… (clipped; the full call: `runbook timeline {req.run_id}`)"
    call = call.replace("```", "`\u200b``")
    left = max((row.expires_at - datetime.now(UTC)).total_seconds(), 0)
    need = f"{req.min_approvals} approvals" if req.min_approvals > 1 else "1 approval"
    rules = need + ("; not the person who started the run" if req.two_person else "")
    evidence = [f"- **{k}**: {_one_line(v)}" for k, v in req.evidence.items()] or ["- (none recorded)"]
    approve, deny = _decide_commands(req)
    how = []
    if slack:
        how.append("- **Slack**: the Approve / Deny buttons on this request in the incident channel")
    how += [f"- **CLI** approve: `{approve}`", f"- **CLI** deny: `{deny}`"]
    waiting = "Waiting for a human" if req.kind == "manual" else "Waiting for approval"
    return "\n".join(
        [
            f"### {waiting}: {req.step_title}",
            f"Step `{req.step_id}` of playbook `{req.playbook}` (attempt {req.attempt}), run `{req.run_id}`",
            "",
            f"**What it does:** {req.description}",
            "",
            f"**Exact call** `{req.action}` (plan `{short(req.plan_hash)}`):",
            "```json",
            call,
            "```",
            "**Why (evidence):**",
            *evidence,
            "",
            f"**Who may approve:** {', '.join(req.approvers) or '(no role)'}"
            f" — {', '.join(who) or 'nobody configured (RUNBOOK_APPROVERS)'}; {rules}",
            "",
            f"**Expires:** {row.expires_at.strftime('%Y-%m-%d %H:%M:%S')} UTC (in {format_duration(left)});"
            " not decided by then, it is a denial",
            "",
            "**How to decide:**",
            *how,
            "",
            REFUSED_HERE,
        ]
    )


def pause_message(row: RequestRow, *, refused: bool = False, slack: bool = True) -> str:
    """One line for the paused state: which step waits, until when, where to answer."""
    req = row.request
    approve, _ = _decide_commands(req)
    head = (
        "A Resume through Prefect was refused (no decision recorded); still waiting" if refused else "Waiting"
    )
    return (
        f"{head} for approval of {req.step_title} (step {req.step_id}) by {', '.join(req.approvers)}"
        f" until {row.expires_at.strftime('%H:%M')} UTC; decide {'in Slack or with ' if slack else 'with '}"
        f"`{approve}`."
        " Resume here is refused."
    )


def _one_line(value: Any, limit: int = 400) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gate_kwargs(settings: Any) -> dict[str, Any]:
    return {"console": not settings.slack_bot_token}
