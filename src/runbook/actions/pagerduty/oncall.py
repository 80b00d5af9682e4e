"""Who is on call now: the ``pagerduty.oncall`` action's body and the ``pagerduty:<id>`` approvers.

The role source parses the approvers entry, caches answers for a minute and asks
:func:`runbook.actions.pagerduty.client.oncall_emails` (the HTTP part) on a miss. The composition
root hands it to the approval policy; approvals never import PagerDuty.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from runbook.actions.context import ActionContext
from runbook.actions.pagerduty.client import call, oncall_emails, session
from runbook.actions.pagerduty.models import ID, OnCallParams, OnCallResult, OnCallUser
from runbook.core.settings import Settings

ONCALL_CACHE_SECONDS = 60.0


def oncall(ctx: ActionContext, params: OnCallParams) -> OnCallResult:
    """The people on call for the policy, lowest level first (see ``pagerduty.oncall``)."""
    rows = call(
        f"on-call for {params.escalation_policy_id}",
        lambda: list(
            session(ctx).iter_all(
                "oncalls",
                params={"escalation_policy_ids[]": [params.escalation_policy_id], "include[]": ["users"]},
            )
        ),
    )
    seen: dict[str, OnCallUser] = {}
    for row in sorted(rows, key=lambda r: r.get("escalation_level") or 99):
        level = row.get("escalation_level")
        if params.level is not None and level != params.level:
            continue
        user = row.get("user") or {}
        if user.get("id") and user["id"] not in seen:
            seen[user["id"]] = OnCallUser(
                id=user["id"],
                name=user.get("name") or user.get("summary") or "",
                email=user.get("email"),
                level=level,
            )
    users = list(seen.values())
    names = ", ".join(f"{u.name} (L{u.level})" for u in users) or "nobody"
    return OnCallResult(
        users=users,
        emails=[u.email for u in users if u.email],
        summary=f"on call for {params.escalation_policy_id}: {names}",
    )


def oncall_role_source(
    settings: Settings, *, cache_seconds: float = ONCALL_CACHE_SECONDS
) -> Callable[[str], list[str]]:
    """A role source for ``approvers`` members ``pagerduty:<id>``: who is on call *now*.

    ``<id>`` is an escalation policy id (``pagerduty:PESCAL1``) or, with a prefix, a schedule
    (``pagerduty:schedule/PSCHED1``) or a policy (``pagerduty:escalation_policy/PESCAL1``). The
    people on call are returned as ``email:`` identities, which the approvers file maps to persons
    (an on-call user who is not a listed person approves nothing). Answers are cached for a minute
    so a burst of clicks costs one API call; an unreachable PagerDuty gives nobody (and a warning),
    never everybody."""
    lock = threading.Lock()
    cache: dict[str, tuple[float, list[str]]] = {}

    def source(value: str) -> list[str]:
        kind, sep, ident = value.partition("/")
        if not sep:
            kind, ident = "escalation_policy", value
        if kind not in ("schedule", "escalation_policy") or not re.match(ID, ident):
            raise ValueError(f"pagerduty:{value}: expected an id, schedule/<id> or escalation_policy/<id>")
        now = time.monotonic()
        with lock:
            hit = cache.get(value)
            if hit and now - hit[0] < cache_seconds:
                return hit[1]
        emails = oncall_emails(settings, kind, ident, label=value, timeout=5.0)
        with lock:
            cache[value] = (now, emails)
        return emails

    return source
