"""One small SQL layer over SQLite (embedded default) and PostgreSQL (shared, production).

runbook's own state (timeline, runs, approvals, webhook dedup, executed destructive steps) lives in
the database named by ``RUNBOOK_DATABASE_URL``. SQL is written once with ``?`` placeholders and
portable types; this module translates for psycopg. Several processes share the store (CLI, gateway,
flow runs, workers on other hosts), so writes are short transactions and SQLite runs in WAL mode.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runbook.core.redact import redact


class StoreError(Exception):
    """The runbook store cannot be reached or refused a statement."""


class IntegrityConflict(StoreError):
    """A unique constraint refused the write (used for dedup and exactly-once records)."""




def _private_sqlite_file(path: Path) -> None:
    """Create the SQLite store's folder (0700 when new) and file 0600, never through a symlink: the
    store holds incidents, parameters and decisions. SQLite gives its -wal/-shm files the mode of
    the database file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StoreError(f"runbook store {str(path)!r} cannot be opened safely: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Database:
    """Thread-safe access to the store. Use :meth:`from_url`."""

    def __init__(self, url: str, schema: tuple[str, ...] = ()) -> None:
        self.url = url
        self.schema = schema
        self.is_postgres = url.startswith(("postgres://", "postgresql://"))
        self._local = threading.local()
        self._schema_done = False
        self._lock = threading.Lock()
        if not self.is_postgres:
            if not url.startswith("sqlite:///"):
                raise StoreError(f"unsupported RUNBOOK_DATABASE_URL scheme: {redact(url)}")
            self.path = url.removeprefix("sqlite:///") or ":memory:"
            if self.path != ":memory:":
                _private_sqlite_file(Path(self.path))

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            if self.is_postgres:
                import psycopg

                return psycopg.connect(self.url, autocommit=False, connect_timeout=5)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"runbook store unreachable: {redact(str(exc))}") from None

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or (self.is_postgres and conn.closed):
            conn = self._connect()
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_postgres else sql

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A short write transaction; SQLite takes its write lock up front (BEGIN IMMEDIATE).

        A PostgreSQL connection the server dropped (restart, failover) is replaced before use."""
        conn = self._conn()
        if self.is_postgres and conn.broken:
            self._local.conn = None
            conn = self._conn()
        try:
            if self.is_postgres:
                with conn.transaction():
                    yield Cursor(self, conn.cursor())
            else:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Cursor(self, conn.cursor())
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except StoreError:
            raise
        except Exception as exc:
            if _is_integrity(exc):
                raise IntegrityConflict(str(exc)) from None
            if self.is_postgres and (conn.closed or conn.broken):
                self._local.conn = None
                raise StoreError(f"runbook store connection lost: {redact(str(exc))}") from None
            raise
        finally:
            if self.is_postgres and not conn.closed and not conn.broken and conn.info.transaction_status != 0:
                conn.rollback()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.transaction() as cur:
            return cur.execute(sql, params)

    def insert_returning_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.transaction() as cur:
            return cur.insert_returning_id(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            return cur.query(sql, params)

    def notify(self, channel: str, payload: str) -> None:
        """PostgreSQL ``NOTIFY`` on ``channel`` (nothing on SQLite, whose readers poll)."""
        if self.is_postgres:
            self.execute("SELECT pg_notify(?, ?)", (channel, payload))

    def listen(self, channel: str, on_payload: Callable[[str], None], stop: threading.Event) -> None:
        """Block until ``stop``, calling ``on_payload`` for each ``NOTIFY`` on ``channel`` (PostgreSQL
        only; a plain identifier). Reconnects after a drop and then calls ``on_payload("")`` so the
        caller looks up what it may have missed."""
        import psycopg

        while not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {channel}")
                    on_payload("")
                    while not stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            on_payload(note.payload)
            except Exception as exc:  # noqa: BLE001 - the store went away: wait, then listen again
                stop.wait(1.0)
                if not stop.is_set():
                    on_payload(f"error: {type(exc).__name__}")

    def ensure_schema(self) -> None:
        """Create the tables this database was given (idempotent; once per process and database)."""
        with self._lock:
            if self._schema_done:
                return
            with self.transaction() as cur:
                if self.is_postgres:  # several processes may create the schema at once
                    cur.execute("SELECT pg_advisory_xact_lock(7723001)")
                for statement in self.schema:
                    sql = statement
                    if self.is_postgres:
                        sql = sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
                    cur.execute(sql)
            self._schema_done = True

    def ping(self) -> bool:
        try:
            self.query("SELECT 1 AS ok")
            return True
        except Exception:  # noqa: BLE001
            self.close()
            return False


def _is_integrity(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    return type(exc).__name__ in {"UniqueViolation", "IntegrityError"}


class Cursor:
    """A cursor that speaks ``?`` placeholders and returns dict rows."""

    def __init__(self, db: Database, cur: Any) -> None:
        self._db = db
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            self._cur.execute(self._db._sql(sql), tuple(params))
        except Exception as exc:
            if _is_integrity(exc):
                raise IntegrityConflict(str(exc)) from None
            raise
        count: int = self._cur.rowcount
        return count

    def insert_returning_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        if self._db.is_postgres:
            self.execute(sql + " RETURNING id", params)
            return int(self._cur.fetchone()[0])
        self.execute(sql, params)
        return int(self._cur.lastrowid)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.execute(sql, params)
        if self._cur.description is None:
            return []
        cols = [c[0] for c in self._cur.description]
        return [dict(zip(cols, row, strict=True)) for row in self._cur.fetchall()]
