"""Shared fixtures: real services or a clear failure saying how to start them.

Tests talk to the real RabbitMQ, PostgreSQL and Prefect server on 127.0.0.1 (``make test`` starts
them). A missing service fails the test with the command that starts it; nothing is skipped.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runbook.actions import ActionRegistry, default_registry
from runbook.core.settings import Settings
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore

ROOT = Path(__file__).resolve().parents[1]
PG_MAINTENANCE_URL = "postgresql://root@127.0.0.1:5432/postgres"

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

HOW_TO_START = {
    "RabbitMQ": "start it with `rabbitmq-server -detached` (or `make services`)",
    "RabbitMQ management API": "enable it with `rabbitmq-plugins enable rabbitmq_management`"
    " (or `make services`)",
    "PostgreSQL": "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
    " (or `make services`)",
    "Prefect server": "start it with `make prefect-server` (scripts/prefect_server.sh start)",
}


def require_port(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        pytest.fail(f"{name} is not reachable on {host}:{port} ({exc}); {HOW_TO_START[name]}", pytrace=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly if pytest-xdist stops honouring ``xdist_group``: grouped tests would then run side
    by side (this happened silently with pytest 9.2, whose node ids xdist 3.8 cannot suffix)."""
    config = session.config
    if not hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadgroup":
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(f"xdist_group ignored for {len(lost)} test(s), e.g. {lost[0]}: pin pytest<9")


@pytest.fixture(scope="session")
def rabbitmq_available() -> None:
    require_port("RabbitMQ", "127.0.0.1", 5672)
    require_port("RabbitMQ management API", "127.0.0.1", 15672)


@pytest.fixture(scope="session")
def postgres_available() -> None:
    require_port("PostgreSQL", "127.0.0.1", 5432)


@pytest.fixture(scope="session")
def prefect_server() -> str:
    url = os.environ["PREFECT_API_URL"]
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    require_port("Prefect server", host, int(port or 80))
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings from the environment, with a private SQLite store per test."""
    env = dict(os.environ)
    env["RUNBOOK_DATABASE_URL"] = f"sqlite:///{tmp_path / 'runbook.db'}"
    env.setdefault("DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
    return Settings.from_env(env)


@pytest.fixture
def registry() -> ActionRegistry:
    """A fresh registry per test (no shared mutable state between tests)."""
    return default_registry()


@pytest.fixture
def store(settings: Settings) -> TimelineStore:
    return TimelineStore(open_database(settings.database_url))


@pytest.fixture
def pg_store_url(postgres_available: None) -> Iterator[str]:
    """A fresh PostgreSQL database for one test's runbook store, dropped afterwards.

    A store is shared state: the reaper marks every lost run in it, and listings (pending approvals,
    runs) see every run. Tests run side by side (pytest-xdist), so each gets a database of its own
    rather than the shared ``test`` database."""
    name = f"rbstore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_MAINTENANCE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://root@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_MAINTENANCE_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_store(pg_store_url: str) -> TimelineStore:
    """A timeline store in a fresh PostgreSQL database of its own."""
    return TimelineStore(open_database(pg_store_url))


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
