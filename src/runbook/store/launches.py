"""Who started a run, taken from what started it, never from a flow parameter.

Anyone who can start a Prefect run with custom parameters (the UI's "custom run", the API) could
otherwise claim to be PagerDuty, or name the requester so that ``two_person`` lets them approve
their own step. So the requester and trigger come from one of three trusted places:

- **in this process**: the CLI (``runbook run``, the operating-system user), drills and tests wrap
  the flow call in :func:`launched_here`; a context variable cannot be set from outside;
- **the gateway**: it records a :class:`Launch` in the store under a random token in the same
  transaction as the run claim and passes only the token as the flow's ``launch`` parameter; the
  flow run redeems it once (the token is bound to the first flow run that presents it);
- **Prefect's scheduler**: ``auto_scheduled`` on the flow run, which no API client can set.

Anything else (a UI or API run, a token that is unknown or already bound to another run) is a run
with trigger ``prefect`` and no requester: ``two_person`` steps then fail closed.
"""

from __future__ import annotations

import contextvars
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from runbook.core.clock import ts
from runbook.store.database import Database

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_launches (
        token TEXT PRIMARY KEY,
        trigger TEXT NOT NULL,
        requested_by TEXT,
        incident TEXT,
        created_at TEXT NOT NULL,
        flow_run_id TEXT
    )""",
)


@dataclass(frozen=True)
class Launch:
    """What started a run: ``trigger`` (cli, pagerduty, schedule, prefect, drill, rehearsal…),
    ``requested_by`` as a typed identity (``unix:alice``, ``email:bob@x``) or None, the incident."""

    trigger: str
    requested_by: str | None = None
    incident: dict[str, Any] | None = None


_HERE: contextvars.ContextVar[Launch | None] = contextvars.ContextVar("runbook_launch", default=None)


@contextmanager
def launched_here(launch: Launch) -> Iterator[Launch]:
    """Run a flow in this process on behalf of ``launch`` (the CLI, a drill, a test)."""
    token = _HERE.set(launch)
    try:
        yield launch
    finally:
        _HERE.reset(token)


def here() -> Launch | None:
    return _HERE.get()


def issue(cur: Any, launch: Launch) -> str:
    """Record ``launch`` inside the caller's transaction; returns the token to pass to the flow."""
    token = secrets.token_urlsafe(24)
    cur.execute(
        "INSERT INTO runbook_launches (token, trigger, requested_by, incident, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            token,
            launch.trigger,
            launch.requested_by,
            json.dumps(launch.incident, default=str) if launch.incident is not None else None,
            ts(),
        ),
    )
    return token


def redeem(db: Database, token: str, flow_run_id: str) -> Launch | None:
    """The launch behind ``token`` if it is unbound or already bound to this flow run (a retry)."""
    with db.transaction() as cur:
        cur.execute(
            "UPDATE runbook_launches SET flow_run_id = ? WHERE token = ? AND flow_run_id IS NULL",
            (flow_run_id, token),
        )
        rows = cur.query(
            "SELECT trigger, requested_by, incident FROM runbook_launches"
            " WHERE token = ? AND flow_run_id = ?",
            (token, flow_run_id),
        )
    if not rows:
        return None
    row = rows[0]
    incident = json.loads(row["incident"]) if row.get("incident") else None
    return Launch(row["trigger"], row.get("requested_by"), incident)


def resolve(db: Database, token: str | None, flow_run_id: str, *, auto_scheduled: bool) -> Launch:
    """The trusted launch of this flow run (see the module docstring for the order)."""
    local = here()
    if local is not None:
        return local
    if token:
        found = redeem(db, token, flow_run_id)
        if found is not None:
            return found
    if auto_scheduled:
        return Launch("schedule")
    return Launch("prefect")
