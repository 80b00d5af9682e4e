"""Game-day fixtures: a store on SQLite *and* PostgreSQL, an approvers file, a killable worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.core.settings import Settings
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.support.approvers import approvers_yaml, current_login
from tests.support.waiting import wait_until  # noqa: F401 - re-exported to the game-day tests

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgresql://root@127.0.0.1:5432/test"
#: carol is the person behind the operating-system user running the tests (``runbook approve``)
APPROVERS = approvers_yaml(
    {"incident-commander": ["carol", "dave"], "queue-owner": ["erin"], "dba": ["dana"]},
    os_user=("carol", current_login()),
)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_store_url")  # a database of its own: the reaper is global
        return url
    return f"sqlite:///{tmp_path / 'runbook.db'}"


@pytest.fixture
def gd_env(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Process environment (for child workers and the CLI) and settings: console approvals."""
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(APPROVERS, encoding="utf-8")
    for k in ("SLACK_BOT_TOKEN", "RUNBOOK_SLACK_API_URL", "RUNBOOK_SLACK_CHANNEL", "PAGERDUTY_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", store_url)
    monkeypatch.setenv("RUNBOOK_APPROVERS", str(approvers))
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    return Settings.from_env()


@pytest.fixture
def gd_store(gd_env: Settings) -> TimelineStore:
    return TimelineStore(open_database(gd_env.database_url))


class Worker:
    """``python -m tests.gameday.worker`` in a child process; :meth:`kill` is SIGKILL (-9)."""

    def __init__(self, playbook: Path, run_id: str, heartbeat: float = 0.2) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.gameday.worker", str(playbook), run_id, str(heartbeat)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL, self.stderr()

    def stderr(self) -> str:
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.alive():
            w.proc.kill()
            w.proc.wait(10)
