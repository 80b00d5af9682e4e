"""PagerDuty V3 webhooks: signature check, event parsing and trigger matching.

Pure functions (no I/O besides reading playbook files), so the HTTP layer stays thin and every rule
here is tested directly. Neither pdpyras nor its successor verifies V3 signatures, hence our own:
HMAC-SHA256 of the raw body with each configured secret, compared in constant time against every
``v1=`` value of ``X-PagerDuty-Signature`` (several during secret rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.spec.models import PagerDutyTrigger, Playbook

log = logging.getLogger("runbook.gateway")

#: Event types whose ``event.data`` is the incident itself.
INCIDENT_DATA_TYPES = {"incident"}
#: Event types that reference an incident under ``event.data.incident``.
INCIDENT_REF_TYPES = {"incident_note", "incident_status_update", "incident_responder"}


def verify_signature(body: bytes, header: str | None, secrets: tuple[str, ...] | list[str]) -> bool:
    """True when one ``v1=`` signature in ``header`` is the HMAC-SHA256 of ``body`` under a secret.

    Every secret is checked against every signature (no early exit on the first mismatch), so timing
    tells an attacker nothing about which secret or which position almost matched."""
    if not header or not secrets:
        return False
    offered = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    if not offered:
        return False
    ok = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        for candidate in offered:
            ok |= hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii", "replace"))
    return ok


def sign(body: bytes, secret: str) -> str:
    """The ``v1=<hex>`` value PagerDuty would send for ``body`` (tests and the benchmark use it)."""
    return "v1=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class MalformedEvent(ValueError):
    """The JSON is valid but is not a V3 webhook (no ``event`` object)."""


@dataclass(frozen=True)
class WebhookEvent:
    """The parts of a V3 event runbook acts on."""

    event_id: str
    event_type: str
    occurred_at: str | None
    incident: dict[str, Any] | None
    agent: str | None = None


def _ref(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    return {"id": obj.get("id"), "summary": obj.get("summary"), "html_url": obj.get("html_url")}


def incident_from(data: dict[str, Any]) -> dict[str, Any]:
    """The ``incident`` run parameter: what a playbook may read as ``incident.<field>``."""
    priority = data.get("priority")
    service = _ref(data.get("service")) or {"id": None, "summary": None, "html_url": None}
    return {
        "id": data.get("id"),
        "number": data.get("number"),
        "title": data.get("title") or data.get("summary") or "",
        "status": data.get("status"),
        "urgency": data.get("urgency"),
        "priority": priority.get("summary") if isinstance(priority, dict) else priority,
        "service": service,
        "html_url": data.get("html_url"),
        "incident_key": data.get("incident_key"),
        "created_at": data.get("created_at"),
        "escalation_policy": _ref(data.get("escalation_policy")),
        "assignees": [
            a for a in (_ref(x) for x in data.get("assignees") or []) if a is not None and a.get("id")
        ],
        "teams": [t for t in (_ref(x) for x in data.get("teams") or []) if t is not None],
    }


def parse_event(payload: Any) -> WebhookEvent:
    """Read a decoded V3 payload; :class:`MalformedEvent` when it has no usable ``event``."""
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise MalformedEvent("payload has no event.event_type")
    raw_data = event.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    incident: dict[str, Any] | None = None
    if data.get("type") in INCIDENT_DATA_TYPES and data.get("id"):
        incident = incident_from(data)
    elif data.get("type") in INCIDENT_REF_TYPES and isinstance(data.get("incident"), dict):
        ref = data["incident"]
        incident = incident_from({"id": ref.get("id"), "title": ref.get("summary"), **ref})
    agent = event.get("agent")
    return WebhookEvent(
        event_id=str(event.get("id") or ""),
        event_type=event["event_type"],
        occurred_at=event.get("occurred_at"),
        incident=incident,
        agent=agent.get("summary") if isinstance(agent, dict) else None,
    )


def trigger_matches(trigger: PagerDutyTrigger, event: WebhookEvent) -> bool:
    """One ``triggers.pagerduty`` entry against one event: every condition it states must hold."""
    if event.event_type not in trigger.event_types or event.incident is None:
        return False
    inc = event.incident
    if trigger.service is not None:
        svc = inc.get("service") or {}
        wanted = trigger.service.strip().lower()
        if wanted not in {str(svc.get("id") or "").lower(), str(svc.get("summary") or "").lower()}:
            return False
    if trigger.title is not None and not re.search(trigger.title, inc.get("title") or ""):
        return False
    if trigger.urgency is not None and inc.get("urgency") != trigger.urgency:
        return False
    return True


def matching_playbooks(playbooks: list[Playbook], event: WebhookEvent) -> list[Playbook]:
    return [pb for pb in playbooks if any(trigger_matches(t, event) for t in pb.triggers.pagerduty)]


_Stamp = tuple[int, int, int, int]  # (device, inode, size, mtime_ns) of the file a path names


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except OSError:
        try:
            st = path.lstat()  # a dangling symlink: still a file to report
        except OSError:
            return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class PlaybookCatalog:
    """The playbooks of a folder, reloaded when a file changes (no gateway restart to add one).

    A playbook that cannot be read, does not lint, or reuses another's name is left out with **one**
    log line per change of that file (not one per request), and :meth:`status` says which and why
    (``/healthz`` shows it). One broken file never stops intake for the others: every failure while
    loading a file, whatever its kind, is that file's skip reason. Unchanged files are not re-read."""

    folder: Path
    registry: Any = None
    _files: dict[Path, tuple[_Stamp | None, Playbook | None, str | None]] = field(default_factory=dict)
    _playbooks: list[Playbook] = field(default_factory=list)
    _skipped: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def playbooks(self) -> list[Playbook]:
        """The loaded playbooks (blocking file I/O on a change: call it from a worker thread)."""
        from runbook.spec.loading import playbook_files

        files, _ = playbook_files([self.folder]) if self.folder.is_dir() else ([], [])
        stamps = {f: _stamp(f) for f in files}
        with self._lock:
            if stamps.keys() == self._files.keys() and all(
                self._files[f][0] == st for f, st in stamps.items()
            ):
                return self._playbooks
            if self.registry is None:
                from runbook.runtime import cached_registry

                self.registry = cached_registry()
            files_now: dict[Path, tuple[_Stamp | None, Playbook | None, str | None]] = {}
            for f, st in stamps.items():
                known = self._files.get(f)
                if known is not None and known[0] == st:
                    files_now[f] = known
                    continue
                playbook, reason = self._load(f)
                if reason is not None:
                    log.error("playbook %s skipped: %s", f, reason)
                files_now[f] = (st, playbook, reason)
            loaded: list[Playbook] = []
            skipped: dict[str, str] = {}
            names: dict[str, Path] = {}
            for f, (_st, playbook, reason) in files_now.items():
                if playbook is not None and playbook.name in names:
                    reason = (
                        f"playbook name '{playbook.name}' is also used by {self._label(names[playbook.name])}"
                    )
                    if self._files.get(f, (None, None, None))[2] != reason:
                        log.error("playbook %s skipped: %s", f, reason)
                    files_now[f] = (_st, playbook, reason)
                    playbook = None
                if playbook is not None:
                    names[playbook.name] = f
                    loaded.append(playbook)
                elif reason is not None:
                    skipped[self._label(f)] = reason
            self._files, self._playbooks, self._skipped = files_now, loaded, skipped
            return loaded

    def status(self) -> dict[str, Any]:
        """``{"loaded": N, "skipped": {file: reason}}`` after a refresh (for ``/healthz``)."""
        loaded = self.playbooks()
        with self._lock:
            out: dict[str, Any] = {"loaded": len(loaded), "skipped": dict(self._skipped)}
        if not self.folder.is_dir():
            out["error"] = f"{self.folder} is not a folder"
        return out

    def _label(self, f: Path) -> str:
        try:
            return str(f.relative_to(self.folder))
        except ValueError:
            return str(f)

    def _load(self, f: Path) -> tuple[Playbook | None, str | None]:
        from runbook.spec.lint import PlaybookError
        from runbook.spec.loading import load_playbook

        try:
            return load_playbook(f, self.registry), None
        except PlaybookError as exc:
            first = exc.problems[0] if exc.problems else None
            where = f"line {first.line}:{first.col}: {first.message}" if first else "?"
            more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            return None, f"{where}{more}"
        except Exception as exc:  # noqa: BLE001 - any failure is this file's, never intake's
            return None, f"could not load: {type(exc).__name__}: {str(exc)[:200]}"
