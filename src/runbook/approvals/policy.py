"""Who may approve: roles → people from ``RUNBOOK_APPROVERS``, plus pluggable role sources.

The file (YAML or JSON) maps roles to Slack user ids, emails or names of people::

    roles:
      incident-commander: [U01ALICE, bob@example.com, carol]
      platform-oncall: ["pagerduty:PESCAL1"]     # resolved by a role source, when one is installed
    people:                                      # optional: one person, several identities
      carol: [U03CAROL, carol@example.com]

A clicker is matched by every identity we know for them (Slack id, email, CLI name) so "the person
who started the run may not approve" holds across channels. The file is re-read when it changes, so
fixing the approver list while a request waits takes effect at the next click. No file means nobody
may approve: a gated step then waits until it expires, never passes silently.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runbook.approvals.gate import GateRequest

log = logging.getLogger("runbook.approvals")

RoleSource = Callable[[str], list[str]]
#: ``prefix:value`` entries are expanded by the source registered for ``prefix`` (e.g. PagerDuty on-call).
ROLE_SOURCES: dict[str, RoleSource] = {}


def register_role_source(prefix: str, source: RoleSource) -> None:
    """Let another module (e.g. ``runbook.actions.pagerduty``) expand ``prefix:VALUE`` role members."""
    ROLE_SOURCES[prefix] = source


def _pagerduty_oncall(policy_id: str) -> list[str]:
    """Hook for PagerDuty on-call: used only if ``runbook.actions.pagerduty`` offers ``oncall_identities``."""
    try:
        from runbook.actions import pagerduty
    except ImportError:
        return []
    fn = getattr(pagerduty, "oncall_identities", None)
    if not callable(fn):
        return []
    try:
        return [str(x) for x in fn(policy_id)]
    except Exception as exc:  # noqa: BLE001 - an unreachable PagerDuty only removes that source
        log.warning("pagerduty on-call lookup for %s failed: %s", policy_id, exc)
        return []


ROLE_SOURCES.setdefault("pagerduty", _pagerduty_oncall)


@dataclass(frozen=True)
class Identity:
    """Who clicked or typed: a Slack user id and/or email and/or a CLI name."""

    user: str
    email: str | None = None
    name: str | None = None

    def keys(self) -> set[str]:
        return {k.lower() for k in (self.user, self.email, self.name) if k}


@dataclass
class Verdict:
    allowed: bool
    why: str = ""
    person: str = ""  # the canonical name the vote is recorded under


@dataclass
class ApproverPolicy:
    roles: dict[str, list[str]] = field(default_factory=dict)
    people: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def parse(cls, text: str, source: str = "") -> ApproverPolicy:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        data = data or {}
        if not isinstance(data, dict):
            raise ValueError(f"{source or 'approvers file'}: expected a mapping of roles to people")
        roles = data.get("roles", data if "people" not in data else {})
        people = data.get("people", {}) or {}
        for what, mapping in (("roles", roles), ("people", people)):
            if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
                raise ValueError(f"{source or 'approvers file'}: {what} must map names to lists")
        return cls(
            {str(k): [str(x) for x in v] for k, v in roles.items()},
            {str(k): [str(x) for x in v] for k, v in people.items()},
            source,
        )

    def canonical(self, who: Identity) -> str:
        """The person's name from ``people`` when one of their identities is listed, else their id."""
        keys = who.keys()
        for name, ids in self.people.items():
            if name.lower() in keys or keys & {i.lower() for i in ids}:
                return name
        return who.user

    def identities(self, member: str) -> set[str]:
        """Every identity one role member stands for (a person's ids, a source's expansion)."""
        prefix, sep, value = member.partition(":")
        if sep and prefix in ROLE_SOURCES:
            found: set[str] = set()
            for m in ROLE_SOURCES[prefix](value):
                found |= self.identities(m)
            return found
        out = {member.lower()}
        for name, ids in self.people.items():
            if member.lower() == name.lower() or member.lower() in {i.lower() for i in ids}:
                out |= {name.lower(), *(i.lower() for i in ids)}
        return out

    def members(self, roles: Iterable[str]) -> list[str]:
        """Who may approve, for messages (role members as written)."""
        return sorted({m for r in roles for m in self.roles.get(r, [])})

    def check(self, req: GateRequest, who: Identity) -> Verdict:
        person = self.canonical(who)
        keys = who.keys() | {person.lower()}
        if req.two_person and req.requested_by:
            if keys & self.identities(req.requested_by):
                return Verdict(
                    False,
                    f"{person} started this run and two_person is on: someone else must approve",
                    person,
                )
        allowed_roles = [
            r for r in req.approvers if any(keys & self.identities(m) for m in self.roles.get(r, []))
        ]
        if allowed_roles:
            return Verdict(True, f"member of {', '.join(allowed_roles)}", person)
        if not self.roles:
            why = "no approvers are configured (set RUNBOOK_APPROVERS to a roles file)"
            return Verdict(False, why, person)
        return Verdict(
            False,
            f"{person} is not in the approver roles of this step ({', '.join(req.approvers) or 'none'})",
            person,
        )


class PolicyFile:
    """The policy behind ``RUNBOOK_APPROVERS``, re-read when the file's mtime changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._policy = ApproverPolicy()

    def get(self) -> ApproverPolicy:
        if self.path is None:
            return ApproverPolicy()
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            log.warning("approvers file %s unreadable: %s", self.path, exc)
            return ApproverPolicy()
        with self._lock:
            if mtime != self._mtime:
                self._policy = ApproverPolicy.parse(self.path.read_text(encoding="utf-8"), str(self.path))
                self._mtime = mtime
            return self._policy
