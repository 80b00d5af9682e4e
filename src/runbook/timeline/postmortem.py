"""Render the postmortem draft of a run from its timeline with a Jinja2 template.

The template (``templates/postmortem.md.j2``) receives the run record, every event, and facts derived
from them (impact window, steps, decisions, verdict, mitigations taken and declined, follow-ups) so
the template stays declarative. Follow-ups come from ``templates/followups.yaml`` (verdict -> the
seeds' long-term remediation ideas), so teams edit remediation advice without touching code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from runbook.redact import redact
from runbook.timeline.events import Event, Kind
from runbook.timeline.store import TimelineStore

DEFAULT_TEMPLATE = "postmortem.md.j2"
FOLLOWUPS_FILE = "followups.yaml"
STEP_END = {
    Kind.STEP_SUCCEEDED: "succeeded",
    Kind.STEP_FAILED: "failed",
    Kind.STEP_SKIPPED: "skipped",
    Kind.STEP_DRY_RUN: "dry_run",
}
DECIDED = {
    Kind.APPROVAL_APPROVED: "approved",
    Kind.APPROVAL_DENIED: "denied",
    Kind.APPROVAL_EXPIRED: "expired",
    Kind.APPROVAL_REFUSED: "refused",
    Kind.APPROVAL_VOIDED: "voided",
}


def templates_dir() -> Path:
    """``templates/`` of the working directory, else the one beside the source tree."""
    here = Path.cwd() / "templates"
    if (here / DEFAULT_TEMPLATE).is_file():
        return here
    return Path(__file__).resolve().parents[3] / "templates"


def _duration(start: datetime, end: datetime) -> str:
    seconds = max(0, int((end - start).total_seconds()))
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {sec}s" if hours else f"{minutes}m {sec}s"


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def load_followups(folder: Path) -> dict[str, list[str]]:
    """Verdict -> follow-ups; an absent or unreadable file gives none (the draft still renders)."""
    path = folder / FOLLOWUPS_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): [str(item) for item in v or []] for k, v in data.items() if isinstance(v, list)}


def _steps(events: list[Event]) -> list[dict[str, Any]]:
    """One row per step in the order it first appeared: final status, summary, when it ended."""
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        if not e.step_id:
            continue
        row = rows.setdefault(
            e.step_id, {"id": e.step_id, "status": "started", "summary": "", "time": e.time}
        )
        if e.kind in STEP_END:
            row.update(status=STEP_END[e.kind], summary=e.summary, time=e.time)
        elif e.kind == Kind.APPROVAL_DENIED or e.kind == Kind.APPROVAL_EXPIRED:
            row.update(status=DECIDED[e.kind], summary=e.summary, time=e.time)
    return list(rows.values())


def _decisions(events: list[Event]) -> list[dict[str, Any]]:
    """Each approval asked, with who decided what and when (the request's time too)."""
    asked: dict[str, Event] = {}
    out: list[dict[str, Any]] = []
    for e in events:
        if e.kind == Kind.APPROVAL_REQUESTED and e.step_id:
            asked[e.step_id] = e
        elif e.kind in DECIDED:
            req = asked.get(e.step_id or "")
            out.append(
                {
                    "step_id": e.step_id,
                    "outcome": DECIDED[e.kind],
                    "who": e.actor or ", ".join(e.details.get("approvers") or []) or "nobody",
                    "reason": e.details.get("reason"),
                    "asked_at": req.time if req else None,
                    "decided_at": e.time,
                    "waited": _duration(req.time, e.time) if req else "?",
                    "summary": e.summary,
                }
            )
    return out


def postmortem_facts(
    run: dict[str, Any], events: list[Event], followups: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Everything the template needs, derived once from the events."""
    start = events[0].time if events else None
    end = events[-1].time if events else None
    findings = [e for e in events if e.kind == Kind.FINDING]
    verdict_event = next((e for e in events if e.details.get("verdict")), None)
    verdict = verdict_event.details.get("verdict") if verdict_event else None
    decisions = [
        e for e in events if e.kind.value.startswith("approval.") and e.kind != Kind.APPROVAL_REQUESTED
    ]
    taken = [e for e in events if e.kind == Kind.STEP_SUCCEEDED and e.details.get("destructive")]
    declined = [e for e in events if e.kind in (Kind.APPROVAL_DENIED, Kind.APPROVAL_EXPIRED)]
    failed = [e for e in events if e.kind == Kind.STEP_FAILED and not e.details.get("will_retry")]
    finished = next((e for e in reversed(events) if e.kind == Kind.RUN_FINISHED), None)
    incident = (run.get("params") or {}).get("incident") or {}
    alert_at = _parse_time(incident.get("created_at"))
    impact_start = alert_at or start
    mitigated_at = taken[0].time if taken else None
    table = followups or {}
    chosen = list(table.get(verdict, table.get("unknown", []))) if verdict else []
    return {
        "run": run,
        "events": events,
        "start": start,
        "end": end,
        "duration": _duration(start, end) if start and end else "unknown",
        "impact_start": impact_start,
        "impact_source": "incident created" if alert_at else "run started",
        "detected_at": start,
        "mitigated_at": mitigated_at,
        "impact_duration": _duration(impact_start, end) if impact_start and end else "unknown",
        "steps": _steps(events),
        "findings": findings,
        "verdict": verdict,
        "verdict_evidence": verdict_event.details.get("evidence") if verdict_event else None,
        "verdict_event": verdict_event,
        "also_matched": [v for v in (verdict_event.details.get("also_matched") or []) if v != verdict]
        if verdict_event and isinstance(verdict_event.details.get("also_matched"), list)
        else [],
        "decisions": decisions,
        "approvals": _decisions(events),
        "mitigations_taken": taken,
        "mitigations_declined": declined,
        "failures": failed,
        "outcome": finished.details.get("status")
        if finished
        else "in progress (draft written before the run finished; `runbook postmortem RUN_ID` re-renders it)",
        "outcome_reason": finished.details.get("reason") if finished else run.get("reason"),
        "incident": incident,
        "followups": chosen,
        "followups_always": list(table.get("always", [])),
    }


def render_postmortem(store: TimelineStore, run_id: str, template: str | Path | None = None) -> str:
    run = store.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} in the timeline store")
    events = store.events(run["run_id"])
    path = Path(template) if template else templates_dir() / DEFAULT_TEMPLATE
    env = Environment(
        loader=FileSystemLoader(str(path.parent)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["hms"] = lambda dt: dt.strftime("%H:%M:%S") if dt else "?"
    env.filters["stamp"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "?"
    env.filters["cell"] = lambda text: " ".join(str(text or "").split()).replace("|", "/")
    followups = load_followups(path.parent) or load_followups(templates_dir())
    return redact(env.get_template(path.name).render(**postmortem_facts(run, events, followups)))
