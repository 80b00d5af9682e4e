"""Render the postmortem draft of a run from its timeline with a Jinja2 template.

The template (packaged ``runbook/templates/postmortem.md.j2``) receives the run record, every event,
and facts derived from them (impact window, steps, decisions, verdict, mitigations taken and
declined, follow-ups) so the template stays declarative. Follow-ups come from ``followups.yaml``
(verdict -> the seeds' long-term remediation ideas), so teams edit remediation advice without
touching code.

Templates are trusted code, incident text is not. So:

- a template is a **name**, looked up in the operator's folder (``RUNBOOK_TEMPLATES``) and then in
  the templates packaged with runbook (``importlib.resources``); absolute paths, ``..``, NUL bytes
  and symlinks that leave the folder are refused (:class:`TemplateRefused`), and so is anything
  that resolves inside the data directory (dumps, exports, earlier drafts: files a run wrote, whose
  content outsiders influence, are never rendered as templates);
- rendering uses the same immutable, bounded sandbox as playbook expressions
  (:class:`runbook.core.sandbox.BoundedSandbox`, 2 MB of text at most);
- incident titles and descriptions only ever enter as *data* in the context: ``{{ 7*7 }}`` in a
  PagerDuty title is printed as those characters, never evaluated.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound

from runbook.core import files
from runbook.core.events import Event, Kind
from runbook.core.redact import redact
from runbook.core.sandbox import MAX_POSTMORTEM_CHARS, BoundedSandbox, ExpressionError
from runbook.store.timeline import TimelineStore

DEFAULT_TEMPLATE = "postmortem.md.j2"
FOLLOWUPS_FILE = "followups.yaml"
#: bytes a template (or followups.yaml) may have
MAX_TEMPLATE_BYTES = 256 * 1024
#: loop iterations and calls one postmortem render may make (events x a few per event)
POSTMORTEM_STEPS = 500_000
_FROM_SETTINGS: Any = object()
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


class TemplateRefused(ValueError):
    """A template name that is not a file of the packaged templates or the configured folder."""


def packaged_templates() -> Traversable:
    """The templates shipped inside the ``runbook`` package (a wheel includes them)."""
    return resources.files("runbook").joinpath("templates")


def _configured_folder() -> Path | None:
    from runbook.core.settings import Settings

    return Settings.from_env().templates_dir


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _read_from_folder(folder: Path, name: str) -> tuple[str, str] | None:
    """``(text, path)`` of template ``name`` in the operator's ``folder``; None when it has none.

    The name is relative and stays inside the folder once symlinks are resolved; a file that
    resolves inside the data directory is refused whatever the folder says."""
    parts = files.relative_parts(name)
    root = folder.expanduser().resolve()
    target = root.joinpath(*parts)
    if not os.path.lexists(target):
        return None
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a symlink loop, a dangling link
        raise TemplateRefused(f"template {name!r} cannot be resolved: {exc}") from None
    data = files.data_dir().expanduser().resolve()
    if _inside(real, data):
        raise TemplateRefused(
            f"template {name!r} resolves inside the runbook data directory {str(data)!r}: "
            "files a run wrote are never rendered as templates"
        )
    if not _inside(real, root):
        raise TemplateRefused(f"template {name!r} resolves outside the templates folder {str(root)!r}")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise TemplateRefused(f"template {name!r} cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TemplateRefused(f"template {name!r} is not a regular file")
        raw = fh.read(MAX_TEMPLATE_BYTES + 1)
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise TemplateRefused(f"template {name!r} is larger than {MAX_TEMPLATE_BYTES} bytes")
    return raw.decode("utf-8"), str(real)


def _read_packaged(name: str) -> tuple[str, str] | None:
    node: Traversable = packaged_templates()
    for part in files.relative_parts(name):
        node = node.joinpath(part)
    if not node.is_file():
        return None
    return node.read_text(encoding="utf-8"), f"runbook/templates/{name}"


def read_template(name: object, folder: Path | None) -> tuple[str, str]:
    """``(text, where)`` of template ``name``: the configured ``folder`` first, then the packaged
    templates. Raises :class:`TemplateRefused` for a path or a name that is neither."""
    if not isinstance(name, str) or not name:
        raise TemplateRefused("a template is named by a non-empty string")
    try:
        found = (_read_from_folder(folder, name) if folder is not None else None) or _read_packaged(name)
    except files.UnsafePath as exc:
        raise TemplateRefused(
            f"template {name!r} refused: a template is a name inside the templates folder, not a path ({exc})"
        ) from None
    if found is None:
        where = f"{str(folder)!r} or " if folder is not None else ""
        raise TemplateRefused(f"no template {name!r} in {where}the packaged templates")
    return found


class _TemplateLoader(BaseLoader):
    """Jinja loader over :func:`read_template` (``include``/``extends`` get the same checks)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        try:
            text, where = read_template(template, self.folder)
        except TemplateRefused as exc:
            if str(exc).startswith("no template"):
                raise TemplateNotFound(template) from None
            raise
        return text, where, lambda: True


def postmortem_environment(folder: Path | None = None) -> BoundedSandbox:
    """The sandbox postmortems render in: immutable, bounded, templates by name only."""
    env = BoundedSandbox(
        output_limit=MAX_POSTMORTEM_CHARS,
        max_steps=POSTMORTEM_STEPS,
        loader=_TemplateLoader(folder),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["hms"] = lambda dt: dt.strftime("%H:%M:%S") if dt else "?"
    env.filters["stamp"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "?"
    env.filters["cell"] = lambda text: " ".join(str(text or "").split()).replace("|", "/")
    return env


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


#: SRE-book action item types, guessed from a plain follow-up's first word (a mapping in
#: followups.yaml says its own ``type`` and ``owner``)
ITEM_TYPES = {
    "alert": "detect",
    "add": "prevent",
    "fix": "repair",
    "find": "investigate",
    "write": "process",
    "update": "process",
    "schedule": "process",
    "follow": "mitigate",
    "never": "prevent",
    "review": "prevent",
}
#: actions that tell people about the incident: never a mitigation, never evidence
NOTIFICATION_PREFIXES = ("pagerduty.", "slack.")
UNASSIGNED = "_unassigned_"


def _item(raw: Any) -> dict[str, str] | None:
    if isinstance(raw, dict) and raw.get("item"):
        text = str(raw["item"])
        kind, owner = raw.get("type"), raw.get("owner")
    elif isinstance(raw, str | int | float) and str(raw).strip():
        text, kind, owner = str(raw), None, None
    else:
        return None
    guess = ITEM_TYPES.get(text.split(maxsplit=1)[0].lower().strip(",:"), "prevent") if text else "prevent"
    return {"item": text, "type": str(kind or guess), "owner": str(owner or UNASSIGNED)}


def load_followups(folder: Path | None = None) -> dict[str, list[dict[str, str]]]:
    """Verdict -> action items ``{item, type, owner}`` from ``followups.yaml`` of the operator's
    ``folder`` (else the packaged one); an entry is a string or ``{item, type, owner}``. An absent
    file gives none (the draft still renders)."""
    try:
        text, _ = read_template(FOLLOWUPS_FILE, folder)
    except TemplateRefused:
        return {}
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): [i for i in (_item(raw) for raw in v or []) if i is not None]
        for k, v in data.items()
        if isinstance(v, list)
    }


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


def is_notification(event: Event) -> bool:
    """A step that tells people (PagerDuty notes, Slack posts): it mitigates nothing."""
    return str(event.details.get("action") or "").startswith(NOTIFICATION_PREFIXES)


def _alert_time(run: dict[str, Any], incident: dict[str, Any]) -> tuple[datetime | None, str]:
    """When the alert itself fired: PagerDuty's ``created_at``, Alertmanager's ``startsAt``."""
    params = run.get("params") or {}
    alert: dict[str, Any] = params["alert"] if isinstance(params.get("alert"), dict) else {}
    for value, source in (
        (incident.get("created_at"), "PagerDuty incident created"),
        (incident.get("startsAt") or incident.get("starts_at"), "Alertmanager alert started"),
        (alert.get("startsAt"), "Alertmanager alert started"),
    ):
        when = _parse_time(value)
        if when is not None:
            return when, source
    return None, ""


KEY_KINDS = {
    Kind.RUN_STARTED,
    Kind.FINDING,
    Kind.APPROVAL_APPROVED,
    Kind.APPROVAL_DENIED,
    Kind.APPROVAL_EXPIRED,
    Kind.APPROVAL_REFUSED,
    Kind.APPROVAL_VOIDED,
    Kind.RUN_FINISHED,
}


def _key_events(events: list[Event]) -> list[Event]:
    """The timeline a reader wants: findings, decisions, actions taken, failures; not every step."""
    out = []
    for e in events:
        if (
            e.kind in KEY_KINDS
            or (e.kind == Kind.STEP_FAILED and not e.details.get("will_retry"))
            or (e.kind == Kind.STEP_SUCCEEDED and e.details.get("destructive"))
            or (e.kind == Kind.NOTE and e.actor in ("alertmanager", "pagerduty"))
        ):
            out.append(e)
    return out


def postmortem_facts(
    run: dict[str, Any], events: list[Event], followups: dict[str, list[dict[str, str]]] | None = None
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
    taken = [
        e
        for e in events
        if e.kind == Kind.STEP_SUCCEEDED and e.details.get("destructive") and not is_notification(e)
    ]
    declined = [e for e in events if e.kind in (Kind.APPROVAL_DENIED, Kind.APPROVAL_EXPIRED)]
    ended_failed = [e for e in events if e.kind == Kind.STEP_FAILED and not e.details.get("will_retry")]
    failed = [e for e in ended_failed if not is_notification(e)]
    notifications_failed = [e for e in ended_failed if is_notification(e)]
    finished = next((e for e in reversed(events) if e.kind == Kind.RUN_FINISHED), None)
    incident = (run.get("params") or {}).get("incident") or {}
    alert_at, alert_source = _alert_time(run, incident)
    impact_start = alert_at or start
    mitigated_at = taken[0].time if taken else None
    table = followups or {}
    chosen = list(table.get(verdict, table.get("unknown", []))) if verdict else []
    also = verdict_event.details.get("also_matched") if verdict_event else None
    return {
        "run": run,
        "events": events,
        "key_events": _key_events(events),
        "start": start,
        "end": end,
        "duration": _duration(start, end) if start and end else "unknown",
        "impact_start": impact_start,
        "impact_source": ("incident created" if "PagerDuty" in alert_source else "alert started")
        if alert_at
        else "run started",
        "detected_at": alert_at or start,
        "detection_source": alert_source or "run started (no alert time recorded)",
        "response_delay": _duration(alert_at, start) if alert_at and start else None,
        "mitigated_at": mitigated_at,
        "impact_duration": _duration(impact_start, end) if impact_start and end else "unknown",
        "steps": _steps(events),
        "findings": findings,
        "verdict": verdict,
        "verdict_evidence": verdict_event.details.get("evidence") if verdict_event else None,
        "verdict_event": verdict_event,
        "also_matched": [v for v in also if v != verdict] if isinstance(also, list) else [],
        "decisions": decisions,
        "approvals": _decisions(events),
        "mitigations_taken": taken,
        "mitigations_declined": declined,
        "failures": failed,
        "notifications_failed": notifications_failed,
        "finished": finished is not None,
        "outcome": finished.details.get("status")
        if finished
        else "in progress (draft written before the run finished; `runbook postmortem RUN_ID` re-renders it)",
        "outcome_reason": finished.details.get("reason") if finished else run.get("reason"),
        "incident": incident,
        "followups": chosen,
        "followups_always": list(table.get("always", [])),
        "action_items": chosen + list(table.get("always", [])),
    }


def render_postmortem(
    store: TimelineStore, run_id: str, template: str | None = None, *, folder: Path | None = _FROM_SETTINGS
) -> str:
    """The draft of ``run_id`` rendered with template NAME ``template`` (default
    ``postmortem.md.j2``) from ``folder`` (default: ``RUNBOOK_TEMPLATES``) or the packaged
    templates. Raises :class:`TemplateRefused` for a template that is not one of those, and
    :class:`~runbook.core.sandbox.ExpressionError` when rendering fails or passes its bounds."""
    if folder is _FROM_SETTINGS:
        folder = _configured_folder()
    run = store.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} in the timeline store")
    events = store.events(run["run_id"])
    env = postmortem_environment(folder)
    name = DEFAULT_TEMPLATE if template is None else template
    try:
        tmpl = env.get_template(name)
    except TemplateNotFound:
        where = f"{str(folder)!r} or " if folder is not None else ""
        raise TemplateRefused(f"no template {name!r} in {where}the packaged templates") from None
    followups = load_followups(folder)
    try:
        text = env.render_bounded(tmpl, postmortem_facts(run, events, followups))
    except TemplateError as exc:  # a refused attribute, an undefined name, a missing include
        raise ExpressionError(f"template {name!r}: {exc}") from None
    return redact(text)
