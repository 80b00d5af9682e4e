"""Who may approve: every vote resolves to exactly one *person* of ``RUNBOOK_APPROVERS``, or is refused.

The file (YAML or JSON) lists people with their identities, one kind each, and roles of people::

    people:
      alice:
        slack: U01ALICE              # Slack user id, matched exactly (case matters: Slack's ids do)
        email: alice@example.com     # used for Slack only when Slack says the address is confirmed
        unix: alice                  # operating-system user, for `runbook approve` on a worker host
      carol: [U03CAROL, carol@example.com, "unix:carol"]   # short form, typed by shape or prefix
    roles:
      incident-commander: [alice, carol]
      platform-oncall: ["pagerduty:PESCAL1"]   # expanded by a role source into identities of people

Identities are typed, never compared as loose strings: a Slack id is only ever matched against Slack
ids, an email against emails (case-insensitively, as mail does), a Unix user against Unix users. One
identity belongs to at most one person (a file that says otherwise is refused whole), so a person
cannot vote twice through two channels, and quorum and ``two_person`` count persons. A role member
that names nobody of ``people:`` gives nobody the right to approve (it is reported, not guessed).
The file is re-read when it changes. No file, or a broken one, means nobody may approve: a gated
step then waits until it expires, never passes silently.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from runbook.core.gate import GateRequest

log = logging.getLogger("runbook.approvals")

IdentityKind = Literal["slack", "email", "unix"]
KINDS: tuple[IdentityKind, ...] = ("slack", "email", "unix")
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_UNIX = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$", re.I)

RoleSource = Callable[[str], list[str]]
#: ``prefix:value`` role members are expanded by the source registered for ``prefix`` into
#: identities (``slack:U…``, ``email:…``, or untyped strings typed by shape) of listed people.
ROLE_SOURCES: dict[str, RoleSource] = {}


def register_role_source(prefix: str, source: RoleSource) -> None:
    """Let another module (e.g. PagerDuty on-call) expand ``prefix:VALUE`` role members."""
    ROLE_SOURCES[prefix] = source


class PolicyError(ValueError):
    """The approvers file is unusable; nobody may approve until it is fixed."""


def typed(text: str) -> tuple[IdentityKind, str]:
    """``slack:U1`` / ``email:a@b`` / ``unix:root`` or an untyped value typed by its shape."""
    prefix, sep, rest = text.partition(":")
    if sep and prefix in KINDS:
        kind: IdentityKind = prefix
        value = rest.strip()
    elif "@" in text:
        kind, value = "email", text.strip()
    elif _SLACK_ID.match(text.strip()):
        kind, value = "slack", text.strip()
    else:
        kind, value = "unix", text.strip()
    if kind == "email":
        if not _EMAIL.match(value):
            raise PolicyError(f"{text!r} is not an email address")
        value = value.lower()
    elif kind == "slack" and not _SLACK_ID.match(value):
        raise PolicyError(f"{text!r} is not a Slack user id (U… or W…, upper case)")
    elif kind == "unix" and not _UNIX.match(value):
        raise PolicyError(f"{text!r} is not a Unix user name")
    return kind, value


@dataclass(frozen=True)
class Identity:
    """What one channel proved about who acted: at most one identity of each kind.

    Slack gives the user id (and a confirmed email when the bot may read it); the CLI gives the
    operating-system user. Nothing else (a display name, a ``username`` field) is an identity."""

    slack: str | None = None
    email: str | None = None
    unix: str | None = None
    team: str | None = None  # the Slack workspace the click came from (checked by the route)

    def pairs(self) -> list[tuple[IdentityKind, str]]:
        out: list[tuple[IdentityKind, str]] = []
        if self.slack:
            out.append(("slack", self.slack))
        if self.email:
            out.append(("email", self.email.lower()))
        if self.unix:
            out.append(("unix", self.unix))
        return out

    def label(self) -> str:
        """How the timeline names an identity nobody recognised (never a secret)."""
        return ", ".join(f"{k}:{v}" for k, v in self.pairs()) or "unknown"

    @classmethod
    def parse(cls, text: str | None) -> Identity | None:
        """A stored requester (``unix:root``, ``slack:U1`` …) back into an identity; None if not one."""
        if not text:
            return None
        try:
            kind, value = typed(text)
        except PolicyError:
            return None
        if ":" not in text:  # only typed, stored requesters count: "pagerduty" is a trigger, not a user
            return None
        return cls(**{kind: value})


@dataclass(frozen=True)
class Person:
    name: str
    identities: frozenset[tuple[IdentityKind, str]]


@dataclass
class Verdict:
    allowed: bool
    why: str = ""
    person: str = ""  # the person the vote is recorded under ("" when nobody was recognised)


@dataclass
class ApproverPolicy:
    people: dict[str, Person] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    error: str | None = None  # set when the file is unusable: every vote is refused with it
    sources: dict[str, RoleSource] = field(default_factory=dict)  # this process's role sources
    _index: dict[tuple[IdentityKind, str], str] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, text: str, source: str = "") -> ApproverPolicy:
        """The policy in ``text``; a :class:`PolicyError` names what is wrong and where."""
        where = source or "approvers file"
        try:
            data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise PolicyError(f"{where}: not YAML or JSON: {exc}") from None
        if not isinstance(data, dict):
            raise PolicyError(f"{where}: expected a mapping with 'people' and 'roles'")
        people_raw, roles_raw = data.get("people") or {}, data.get("roles") or {}
        unknown = set(data) - {"people", "roles"}
        if unknown:
            raise PolicyError(f"{where}: unknown keys {sorted(unknown)} (expected 'people' and 'roles')")
        if not isinstance(people_raw, dict) or not isinstance(roles_raw, dict):
            raise PolicyError(f"{where}: 'people' and 'roles' must be mappings")
        policy = cls(source=source)
        for name, spec in people_raw.items():
            policy._add_person(str(name), spec, where)
        for role, members in roles_raw.items():
            if not isinstance(members, list):
                raise PolicyError(f"{where}: role {role!r} must list people")
            policy.roles[str(role)] = [str(m) for m in members]
        return policy

    def _add_person(self, name: str, spec: object, where: str) -> None:
        values: list[str] = []
        if isinstance(spec, dict):
            for kind, vals in spec.items():
                if kind not in KINDS:
                    raise PolicyError(f"{where}: person {name!r}: unknown identity kind {kind!r}")
                for v in vals if isinstance(vals, list) else [vals]:
                    values.append(f"{kind}:{v}")
        elif isinstance(spec, list):
            values = [str(v) for v in spec]
        else:
            raise PolicyError(f"{where}: person {name!r} must map kinds to ids or list ids")
        try:
            ids = frozenset(typed(v) for v in values)
        except PolicyError as exc:
            raise PolicyError(f"{where}: person {name!r}: {exc}") from None
        for ident in ids:
            other = self._index.get(ident)
            if other is not None and other != name:
                raise PolicyError(
                    f"{where}: {ident[0]} identity {ident[1]!r} is listed for both {other!r} and {name!r}"
                )
            self._index[ident] = name
        self.people[name] = Person(name, ids)

    # -- resolving -----------------------------------------------------------------------------
    def person_for(self, who: Identity) -> str | None:
        """The one person these identities belong to; None when nobody (or not one person) matches.

        The Slack user id decides when it is listed; a confirmed email only when the id is not."""
        found = {self._index[p] for p in who.pairs() if p in self._index}
        if who.slack and ("slack", who.slack) in self._index:
            return self._index[("slack", who.slack)]
        return found.pop() if len(found) == 1 else None

    def member_people(self, member: str) -> set[str]:
        """The people one role member stands for: a person's name, an identity, or a source's list."""
        if member in self.people:
            return {member}
        prefix, sep, value = member.partition(":")
        sources = {**ROLE_SOURCES, **self.sources}
        if sep and prefix in sources:
            out: set[str] = set()
            try:
                expanded = sources[prefix](value)
            except Exception as exc:  # noqa: BLE001 - an unreachable source only removes its members
                log.warning("role source %s:%s failed: %s", prefix, value, exc)
                return set()
            for m in expanded:
                out |= self.member_people(str(m))
            return out
        try:
            ident = typed(member)
        except PolicyError:
            return set()
        name = self._index.get(ident)
        return {name} if name else set()

    def role_people(self, roles: Iterable[str]) -> set[str]:
        return {p for r in roles for m in self.roles.get(r, []) for p in self.member_people(m)}

    def members(self, roles: Iterable[str]) -> list[str]:
        """Who may approve, for messages: the people's names."""
        return sorted(self.role_people(roles))

    def slack_ids(self, person: str) -> list[str]:
        """A person's Slack ids (to @-mention them)."""
        p = self.people.get(person)
        return sorted(v for k, v in p.identities if k == "slack") if p else []

    def requester(self, req: GateRequest) -> str | None:
        ident = Identity.parse(req.requested_by)
        return self.person_for(ident) if ident is not None else None

    def check(self, req: GateRequest, who: Identity) -> Verdict:
        """May the person behind ``who`` decide ``req``? Every refusal says why in plain words."""
        if self.error:
            return Verdict(False, f"the approvers file is unusable ({self.error}); nobody may approve")
        if not self.people:
            why = "no approvers are configured (set RUNBOOK_APPROVERS to a file with people and roles)"
            return Verdict(False, why)
        person = self.person_for(who)
        if person is None:
            return Verdict(False, f"{who.label()} is not a person listed in the approvers file")
        if req.two_person:
            requester = self.requester(req)
            if requester is None:
                shown = req.requested_by or "nobody recorded"
                why = (
                    f"two_person is on and the run's requester ({shown}) is not a listed person, "
                    "so no one can be shown to be someone else: refused (fails closed)"
                )
                return Verdict(False, why, person)
            if requester == person:
                why = f"{person} started this run and two_person is on: someone else must approve"
                return Verdict(False, why, person)
        allowed = [r for r in req.approvers if person in self.role_people([r])]
        if allowed:
            return Verdict(True, f"member of {', '.join(allowed)}", person)
        return Verdict(
            False,
            f"{person} is not in the approver roles of this step ({', '.join(req.approvers) or 'none'})",
            person,
        )


class PolicyFile:
    """The policy behind ``RUNBOOK_APPROVERS``, re-read when the file's mtime changes."""

    def __init__(self, path: Path | None, sources: dict[str, RoleSource] | None = None) -> None:
        self.path = path
        self.sources = dict(sources or {})
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._policy = ApproverPolicy()

    def get(self) -> ApproverPolicy:
        if self.path is None:
            return ApproverPolicy(sources=self.sources)
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            log.warning("approvers file %s unreadable: %s", self.path, exc)
            return ApproverPolicy(error=f"{self.path} unreadable: {exc.strerror}")
        with self._lock:
            if mtime != self._mtime:
                try:
                    self._policy = ApproverPolicy.parse(self.path.read_text(encoding="utf-8"), str(self.path))
                    self._policy.sources = self.sources
                except (PolicyError, OSError, UnicodeDecodeError) as exc:
                    log.error("approvers file refused: %s", exc)
                    self._policy = ApproverPolicy(error=str(exc), source=str(self.path))
                self._mtime = mtime
            return self._policy


def operating_system_user() -> str:
    """The effective user's login name (environment variables cannot change it)."""
    return pwd.getpwuid(os.geteuid()).pw_name
