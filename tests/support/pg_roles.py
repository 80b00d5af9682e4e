"""Least-privilege PostgreSQL roles for the tests, as docs/SECURITY.md (PostgreSQL) tells operators
to create them: the actions refuse to run playbook SQL as a superuser, and the local test server's
trust-auth admin (``root``) is one.

- ``runbook_reader``: LOGIN, ``pg_read_all_data`` (and ``pg_monitor``): what ``postgres.query`` and
  ``postgres.activity`` need.
- ``runbook_writer``: the reader's grants plus ``pg_write_all_data``: what a run whose gated steps
  use ``postgres.execute`` needs (in production, grant UPDATE/DELETE/INSERT on the few tables only).

Roles are cluster-wide and shared by concurrent test processes, so creation tolerates a race.
"""

from __future__ import annotations

import psycopg

from tests.support.postgres import ADMIN_URL

READER = "runbook_reader"
WRITER = "runbook_writer"
GRANTS = {
    READER: ("pg_read_all_data", "pg_monitor"),
    WRITER: ("pg_read_all_data", "pg_write_all_data", "pg_monitor"),
}


def url_for(role: str, database: str = "test") -> str:
    return f"postgresql://{role}@127.0.0.1:5432/{database}"


def ensure_role(role: str) -> str:
    """Create ``role`` (LOGIN, NOSUPERUSER, its grants) if missing; its DATABASE_URL."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            try:
                conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            except psycopg.errors.DuplicateObject:
                pass
        for granted in GRANTS[role]:
            conn.execute(f"GRANT {granted} TO {role}")
    return url_for(role)


def reader_url() -> str:
    return ensure_role(READER)


def writer_url() -> str:
    return ensure_role(WRITER)
