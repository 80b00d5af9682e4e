from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runbook.core.settings import Settings
from tests.support.pagerduty_gateway import write_playbook

SECRET = "whsec-current-0123456789"
OLD_SECRET = "whsec-previous-9876543210"


@pytest.fixture
def playbook_name(unique: str) -> str:
    return f"gw-test-{unique}"


@pytest.fixture
def gw_settings(
    settings: Settings, tmp_path: Path, playbook_name: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    folder = tmp_path / "playbooks"
    write_playbook(folder, playbook_name)
    write_playbook(folder, f"{playbook_name}-other", service="PQUEUE1", title="(?i)ünïcode|流量")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))  # the spool lives under it
    return dataclasses.replace(settings, playbooks=folder, pagerduty_webhook_secrets=(SECRET,))
