"""The whole store schema, assembled explicitly from each table module's ``SCHEMA``.

Listing the modules here (rather than letting them register themselves at import, or importing them
by name at run time) means a table module that is not listed is a visible omission in review, and a
typo is an ImportError at start-up, never a silently missing table.
"""

from __future__ import annotations

from runbook.store import alerts, approvals, intake, launches, ledger, slack, timeline
from runbook.store.database import Database

SCHEMA: tuple[str, ...] = (
    *timeline.SCHEMA,
    *launches.SCHEMA,
    *approvals.SCHEMA,
    *slack.SCHEMA,
    *intake.SCHEMA,
    *ledger.SCHEMA,
    *alerts.SCHEMA,
)


def open_database(url: str) -> Database:
    """The runbook store at ``url`` with every table created: how every process opens it."""
    db = Database(url, SCHEMA)
    db.ensure_schema()
    return db
