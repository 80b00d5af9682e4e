"""PagerDuty on-call approvers (``approvers: [pagerduty:<id>]`` role members) resolve to the people
on call now, through PagerDuty's REST API (``responses`` intercepts pdpyras), and only to people of
the approvers file; an unreachable PagerDuty gives nobody the right, never everybody."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import requests
import responses

from runbook.approvals.policy import Identity
from runbook.approvals.service import Approvals
from runbook.core.gate import GateRequest
from runbook.core.settings import Settings
from runbook.runtime import build_runtime

API = "https://api.pagerduty.com"
FILE = """
people:
  alice: [U01ALICE, alice@example.com]
  bob: [U02BOB, bob@example.com]
roles:
  oncall: ["pagerduty:PT20YPA", "pagerduty:schedule/PSCHED1"]
"""


def oncall_page(*emails: str) -> dict:
    return {
        "oncalls": [
            {"escalation_level": 1, "user": {"id": f"P{i}X", "name": e, "email": e}}
            for i, e in enumerate(emails)
        ],
        "limit": 100,
        "offset": 0,
        "more": False,
        "total": None,
    }


def request() -> GateRequest:
    return GateRequest(
        run_id="r",
        playbook="p",
        step_id="s",
        step_title="S",
        action="a.b",
        params={},
        description="d",
        plan_hash="h" * 64,
        approvers=["oncall"],
    )


def approvals(tmp_path: Path) -> Approvals:
    (tmp_path / "approvers.yaml").write_text(FILE)
    settings = dataclasses.replace(
        Settings(),
        database_url=f"sqlite:///{tmp_path / 'rb.db'}",
        approvers_file=tmp_path / "approvers.yaml",
        pagerduty_api_token="pd-token-for-tests",
    )
    return build_runtime(settings).approvals()  # the composition root wires the on-call source


def test_on_call_people_may_approve_and_others_may_not(tmp_path: Path) -> None:
    svc = approvals(tmp_path)
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/oncalls", json=oncall_page("alice@example.com", "stranger@example.com"))
        rs.get(f"{API}/oncalls", json=oncall_page())
        policy = svc.policy.get()
        assert policy.check(request(), Identity(slack="U01ALICE")).allowed
        assert not policy.check(request(), Identity(slack="U02BOB")).allowed  # listed, not on call
        assert not policy.check(request(), Identity(email="stranger@example.com")).allowed  # not a person
        urls = [c.request.url for c in rs.calls]
    assert any("escalation_policy_ids%5B%5D=PT20YPA" in u for u in urls)
    assert any("schedule_ids%5B%5D=PSCHED1" in u for u in urls)
    assert len(urls) == 2, "answers are cached: three checks, one call per source"


def test_pagerduty_down_gives_nobody(tmp_path: Path) -> None:
    svc = approvals(tmp_path)
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/oncalls", body=requests.ConnectionError("refused"))
        rs.get(f"{API}/oncalls", body=requests.ConnectionError("refused"))
        verdict = svc.policy.get().check(request(), Identity(slack="U01ALICE"))
    assert not verdict.allowed and "not in the approver roles" in verdict.why
