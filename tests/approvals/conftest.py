"""Fixtures for approval tests: a loopback Slack API, an approvers file, settings that point at
both, the decision service, a gateway app with the Slack route, and signed block_actions clicks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from runbook_devtools.signing import slack_headers

from runbook.actions import ActionRegistry
from runbook.approvals.pausing import NoPauser
from runbook.approvals.service import Approvals
from runbook.core.settings import Settings
from runbook.gateway.slack_routes import get_approvals, router
from runbook.runtime import Runtime, cached_registry
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.approvals.helpers import BackgroundRun
from tests.support.approvers import approvers_yaml, current_login
from tests.support.slack_api import SlackAPI
from tests.support.waiting import wait_until  # noqa: F401 - re-exported to the approval tests

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TEAM = "T0TEAM"
#: carol is the person behind the operating-system user running the tests (the CLI channel)
APPROVERS = approvers_yaml(
    {"incident-commander": ["alice", "bob", "carol"], "sre": ["dave"]},
    extra={
        "alice": ["U0ALICE"],
        "bob": ["U0BOB", "bob@example.com"],
        "carol": ["U0CAROL", "carol@example.com"],
        "dave": ["U0DAVE"],
    },
    os_user=("carol", current_login()),
)
MODULES = [
    "runbook.actions.core.actions",
    "runbook.actions.timeline.actions",
    "tests.approvals.gated_actions",
]


@pytest.fixture
def slack() -> Iterator[SlackAPI]:
    api = SlackAPI().start()
    api.users["U0BOB"] = {"id": "U0BOB", "profile": {"email": "bob@example.com"}}
    yield api
    api.down()


@pytest.fixture
def approvers_file(tmp_path: Path) -> Path:
    path = tmp_path / "approvers.yaml"
    path.write_text(APPROVERS, encoding="utf-8")
    return path


def env_for(tmp_path: Path, slack: SlackAPI | None, approvers_file: Path) -> dict[str, str]:
    env = {
        "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'runbook.db'}",
        "RUNBOOK_APPROVERS": str(approvers_file),
        "RUNBOOK_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "RUNBOOK_SLACK_TEAM_ID": SLACK_TEAM,
    }
    if slack is not None:
        env.update(
            {
                "SLACK_BOT_TOKEN": slack.token,
                "RUNBOOK_SLACK_API_URL": slack.url,
                "RUNBOOK_SLACK_CHANNEL": "C0INCIDENTS",
            }
        )
    return env


@pytest.fixture
def slack_env(
    tmp_path: Path, slack: SlackAPI, approvers_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings (and the process environment, for flows and the CLI) with Slack on."""
    for k, v in env_for(tmp_path, slack, approvers_file).items():
        monkeypatch.setenv(k, v)
    return Settings.from_env()


@pytest.fixture
def console_env(tmp_path: Path, approvers_file: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with no Slack token: the console channel."""
    for k in ("SLACK_BOT_TOKEN", "RUNBOOK_SLACK_API_URL", "RUNBOOK_SLACK_CHANNEL"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env_for(tmp_path, None, approvers_file).items():
        monkeypatch.setenv(k, v)
    return Settings.from_env()


@pytest.fixture
def timeline(slack_env: Settings) -> TimelineStore:
    return TimelineStore(open_database(slack_env.database_url))


@pytest.fixture
def approvals(slack_env: Settings, timeline: TimelineStore) -> Approvals:
    # wired as the composition root wires it (Slack thread, flusher), without Prefect: no flow runs here
    return Runtime(slack_env, cached_registry(), timeline, pauser=NoPauser()).approvals()


@pytest.fixture
def reg() -> ActionRegistry:
    return ActionRegistry.from_modules(MODULES)


@pytest.fixture
def gateway(approvals: Approvals) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_approvals] = lambda: approvals
    return TestClient(app)


def sign(body: bytes, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a Slack request signed with ``secret`` (v0), stamped now unless ``timestamp``."""
    return slack_headers(body, secret, timestamp)


def block_actions(
    user: str,
    action_id: str,
    value: str,
    *,
    reason: str | None = None,
    channel: str = "C0INCIDENTS",
    message_ts: str = "1700000000.000100",
) -> dict[str, Any]:
    """A click in Slack's real block_actions shape (docs.slack.dev, interaction payloads)."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{uuid.uuid4().int % 10**12}.123.abc",
        "team": {"id": "T0TEAM", "domain": "example"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "incidents"},
        "message": {"type": "message", "ts": message_ts, "text": "Approval needed", "blocks": []},
        "state": {
            "values": {
                "runbook_reason": {"runbook_reason_input": {"type": "plain_text_input", "value": reason}}
            }
        },
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "runbook_decide_1",
                "type": "button",
                "value": value,
                "style": "primary" if action_id.endswith("approve") else "danger",
                "text": {"type": "plain_text", "text": "Approve", "emoji": True},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def click(gateway: TestClient, payload: dict[str, Any], **sign_kw: Any) -> Any:
    body = form(payload)
    return gateway.post("/slack/interactions", content=body, headers=sign(body, **sign_kw))


@dataclass
class SlackDesk:
    """Everything a Slack approval test touches, as one fixture: the engine's registry and settings,
    the timeline, the approval service behind the gateway route, and the loopback Slack API."""

    reg: ActionRegistry
    settings: Settings
    timeline: TimelineStore
    approvals: Approvals
    gateway: TestClient
    slack: SlackAPI
    tmp_path: Path

    def start(self, text: str, run_id: str, **kw: Any) -> BackgroundRun:
        """Run ``text`` through the real engine and gate in a background thread."""
        return BackgroundRun(text, self.reg, self.settings, self.timeline, run_id=run_id, **kw)

    def click(self, user: str, action: str, value: str, **kw: Any) -> Any:
        """A signed ``block_actions`` click by ``user`` through the gateway route."""
        return click(self.gateway, block_actions(user, action, value, **kw))


@pytest.fixture
def desk(
    reg: ActionRegistry,
    slack_env: Settings,
    timeline: TimelineStore,
    approvals: Approvals,
    gateway: TestClient,
    slack: SlackAPI,
    tmp_path: Path,
) -> SlackDesk:
    return SlackDesk(reg, slack_env, timeline, approvals, gateway, slack, tmp_path)
