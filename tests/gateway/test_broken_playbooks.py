"""One broken playbook never breaks intake for the others (issue 12, class 6).

A playbook folder holding a cyclic alias, a billion-laughs file, a non-UTF-8 file, a symlink to
/dev/zero and a FIFO, next to the shipped backlog-triage: signed webhooks through the real gateway app
are still accepted (202) and claim backlog-triage runs; each broken file is logged once (not once per
request) and ``/healthz`` names it with the reason. Also: a replayed signed body with a fresh (unsigned)
X-Webhook-Id is a duplicate."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runbook.core.settings import Settings
from runbook.gateway.app import create_app
from tests.conftest import ROOT
from tests.gateway.conftest import SECRET
from tests.spec.test_yaml_bounds import billion_laughs
from tests.support.pagerduty_payloads import encode, headers, incident_event

URL = "/webhooks/pagerduty"
BROKEN = ("cyclic.yaml", "laughs.yaml", "latin.yaml", "zero.yaml", "fifo.yaml")


def within(seconds: float, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, failing the test (not hanging it) if it takes longer than ``seconds``."""
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            err.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {seconds}s (a hang)"
    if err:
        raise err[0]
    return out[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    shutil.copy(ROOT / "playbooks" / "backlog_triage.yaml", folder / "backlog_triage.yaml")
    (folder / "cyclic.yaml").write_text("name: cyclic\nsteps: &s [*s]\n")
    (folder / "laughs.yaml").write_text(billion_laughs())
    (folder / "latin.yaml").write_bytes(b"name: latin\ntitle: caf\xe9\n")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.yaml")
    return folder


@pytest.fixture
def client(settings: Settings, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    s = dataclasses.replace(settings, playbooks=folder, pagerduty_webhook_secrets=(SECRET,))
    with TestClient(create_app(s, run_starter=False)) as c:
        yield c


def post(client: TestClient, body: bytes, webhook_id: str | None = None):
    return client.post(URL, content=body, headers=headers(body, SECRET, webhook_id=webhook_id))


def backlog_event(incident_id: str, **kw: Any) -> bytes:
    return encode(
        incident_event(incident_id=incident_id, title=f"Queue plans: backlog growing ({incident_id})", **kw)
    )


def test_broken_playbooks_are_skipped_and_backlog_triage_still_claims_runs(client, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="runbook.gateway"):
        for i in range(3):
            r = within(30, post, client, backlog_event(f"PBRK00{i}"))
            assert r.status_code == 202, r.text
            assert r.json() == {"status": "accepted", "runs": ["backlog-triage"], "noted": 0}
            [claim] = client.app.state.gateway.intake.claims(f"PBRK00{i}")
            assert claim["playbook"] == "backlog-triage" and claim["status"] == "pending"
    skipped_lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped_lines) == len(BROKEN), skipped_lines  # once per file, not per request
    for name in BROKEN:
        assert sum(name in line for line in skipped_lines) == 1
    assert "Traceback" not in caplog.text


def test_healthz_names_each_skipped_playbook_and_why(client) -> None:
    r = within(30, client.get, "/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["store"] == "ok"
    assert body["playbooks"]["loaded"] == 1
    skipped = body["playbooks"]["skipped"]
    assert sorted(skipped) == sorted(BROKEN)
    assert skipped["cyclic.yaml"].startswith("line 2:8: YAML anchors (&s) are not allowed in playbooks")
    assert skipped["laughs.yaml"].startswith("line 2:5: YAML anchors (&a0) are not allowed")
    assert skipped["latin.yaml"] == "line 2:11: not UTF-8: byte 0xe9 cannot be decoded"
    assert skipped["zero.yaml"].startswith("line 1:1: cannot read: not a regular file")
    assert skipped["fifo.yaml"].startswith("line 1:1: cannot read: not a regular file")


def test_a_file_change_is_logged_once_and_a_fixed_file_is_loaded(client, folder: Path, caplog) -> None:
    within(30, post, client, backlog_event("PCHG000"))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="runbook.gateway"):
        (folder / "cyclic.yaml").write_text("name: cyclic\nsteps: &t [*t, 1]\n")  # still broken, changed
        for i in range(1, 4):
            assert within(30, post, client, backlog_event(f"PCHG00{i}")).status_code == 202
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cyclic.yaml skipped" in lines[0], lines  # only the changed file
    # a duplicate name is skipped too, with the file it clashes with
    shutil.copy(folder / "backlog_triage.yaml", folder / "backlog_triage_copy.yaml")
    status = within(30, client.get, "/healthz").json()["playbooks"]
    assert status["loaded"] == 1
    assert status["skipped"]["backlog_triage_copy.yaml"] == (
        "playbook name 'backlog-triage' is also used by backlog_triage.yaml"
    )


def test_replayed_signed_body_with_a_new_webhook_id_is_a_duplicate(client) -> None:
    """X-Webhook-Id is not signed: dedup keys on the signed event id, else the body's sha256."""
    with_id = backlog_event("PRPL001", event_id="01EVENTIDREPLAY")
    assert post(client, with_id, webhook_id="wh-a").json()["status"] == "accepted"
    assert post(client, with_id, webhook_id="wh-b").json()["status"] == "duplicate"

    payload = incident_event(incident_id="PRPL002", title="Queue plans: backlog growing")
    payload["event"].pop("id")  # an event without an id: only the body identifies it
    body = encode(payload)
    gw = client.app.state.gateway
    assert post(client, body, webhook_id="wh-1").json() == {
        "status": "accepted",
        "runs": ["backlog-triage"],
        "noted": 0,
    }
    deliveries = gw.intake.delivery_count()
    for fresh in ("wh-2", "wh-3", None):  # the attacker's fresh ids (None: a random uuid)
        r = post(client, body, webhook_id=fresh)
        assert r.status_code == 202 and r.json()["status"] == "duplicate"
    assert gw.intake.delivery_count() == deliveries
    assert len(gw.intake.claims("PRPL002")) == 1
    # a genuinely new event (different signed body) for the same incident is a new delivery, no new run
    payload["event"]["occurred_at"] = "2020-04-09T15:17:00.000Z"
    r = post(client, encode(payload), webhook_id="wh-1")
    assert r.json() == {"status": "accepted", "runs": [], "noted": 0}
