"""Render the postmortem draft of a run from its timeline with a Jinja2 template.

The template (``templates/postmortem.md.j2``) receives the run record, every event, and facts derived
from them (impact window, verdict, mitigations taken and declined) so the template stays declarative.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from runbook.redact import redact
from runbook.timeline.events import Event, Kind
from runbook.timeline.store import TimelineStore

DEFAULT_TEMPLATE = "postmortem.md.j2"


def templates_dir() -> Path:
    """``templates/`` of the working directory, else the one beside the source tree."""
    here = Path.cwd() / "templates"
    if (here / DEFAULT_TEMPLATE).is_file():
        return here
    return Path(__file__).resolve().parents[3] / "templates"


def _duration(start: datetime, end: datetime) -> str:
    seconds = int((end - start).total_seconds())
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {sec}s" if hours else f"{minutes}m {sec}s"


def postmortem_facts(run: dict[str, Any], events: list[Event]) -> dict[str, Any]:
    """Everything the template needs, derived once from the events."""
    start = events[0].time if events else None
    end = events[-1].time if events else None
    findings = [e for e in events if e.kind in (Kind.FINDING,)]
    verdict = next((e for e in reversed(events) if e.details.get("verdict")), None)
    decisions = [
        e for e in events if e.kind.value.startswith("approval.") and e.kind != Kind.APPROVAL_REQUESTED
    ]
    taken = [e for e in events if e.kind == Kind.STEP_SUCCEEDED and e.details.get("destructive")]
    declined = [e for e in events if e.kind in (Kind.APPROVAL_DENIED, Kind.APPROVAL_EXPIRED)]
    failed = [e for e in events if e.kind == Kind.STEP_FAILED]
    finished = next((e for e in reversed(events) if e.kind == Kind.RUN_FINISHED), None)
    return {
        "run": run,
        "events": events,
        "start": start,
        "end": end,
        "duration": _duration(start, end) if start and end else "unknown",
        "findings": findings,
        "verdict": verdict.details.get("verdict") if verdict else None,
        "verdict_evidence": verdict.details.get("evidence") if verdict else None,
        "verdict_event": verdict,
        "decisions": decisions,
        "mitigations_taken": taken,
        "mitigations_declined": declined,
        "failures": failed,
        "outcome": finished.details.get("status") if finished else run.get("status"),
        "incident": (run.get("params") or {}).get("incident") or {},
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
    return redact(env.get_template(path.name).render(**postmortem_facts(run, events)))
