"""Approver policy: roles from the RUNBOOK_APPROVERS file (YAML or JSON), people with several
identities, the two-person rule across identities, role sources (the PagerDuty on-call hook)."""

from __future__ import annotations

from pathlib import Path

from runbook.approvals.gate import GateRequest
from runbook.approvals.policy import ApproverPolicy, Identity, PolicyFile, register_role_source


def request(**kw: object) -> GateRequest:
    base = dict(
        run_id="r",
        playbook="p",
        step_id="s",
        step_title="S",
        action="a.b",
        params={},
        description="d",
        plan_hash="h" * 64,
        approvers=["ic"],
    )
    return GateRequest.model_validate({**base, **kw})


def test_roles_people_and_two_person_across_identities() -> None:
    policy = ApproverPolicy.parse(
        '{"roles": {"ic": ["U1", "bob@example.com", "carol"]}, "people": {"carol": ["U3", "carol@x.io"]}}'
    )
    assert policy.check(request(), Identity("U1")).allowed
    assert policy.check(request(), Identity("U2", email="BOB@example.com")).allowed
    assert policy.check(request(), Identity("U3")).person == "carol"
    nope = policy.check(request(), Identity("U9"))
    assert not nope.allowed and "not in the approver roles" in nope.why
    self_approval = policy.check(request(two_person=True, requested_by="carol@x.io"), Identity("U3"))
    assert not self_approval.allowed and "started this run" in self_approval.why
    assert policy.check(request(two_person=True, requested_by="U1"), Identity("U3")).allowed


def test_no_file_means_nobody_and_the_file_is_reread(tmp_path: Path) -> None:
    assert "RUNBOOK_APPROVERS" in ApproverPolicy().check(request(), Identity("U1")).why
    path = tmp_path / "a.yaml"
    path.write_text("ic: [U1]\n")
    pf = PolicyFile(path)
    assert pf.get().check(request(), Identity("U1")).allowed
    path.write_text("roles:\n  ic: [U2]\n")
    import os

    os.utime(path, (1, 1))
    assert not pf.get().check(request(), Identity("U1")).allowed


def test_role_source_hook_expands_prefixed_members() -> None:
    register_role_source("testsrc", lambda value: ["U7"] if value == "POLICY1" else [])
    policy = ApproverPolicy.parse("roles:\n  oncall: ['testsrc:POLICY1']\n")
    assert policy.check(request(approvers=["oncall"]), Identity("U7")).allowed
    assert not policy.check(request(approvers=["oncall"]), Identity("U8")).allowed
