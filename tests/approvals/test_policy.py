"""Approver policy: every vote resolves to exactly one person of the approvers file, or is refused.

Attacks tried: case variants of a Slack id, a Slack id and the same person's email counted twice,
an identity claimed for two people, a role member who is nobody, two_person with an empty, unknown
or non-person requester, a broken file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook.approvals.policy import (
    ApproverPolicy,
    Identity,
    PolicyError,
    PolicyFile,
    register_role_source,
)
from runbook.core.gate import GateRequest

FILE = """
people:
  alice: {slack: U01ALICE, email: Alice@Example.com, unix: alice}
  bob: [U02BOB, bob@example.com]
  carol: ["unix:carol", U03CAROL]
roles:
  ic: [alice, bob, carol]
  dba: [bob]
  ghosts: [U09NOBODY, nobody@example.com, mallory]
"""


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


@pytest.fixture
def policy() -> ApproverPolicy:
    return ApproverPolicy.parse(FILE, "approvers.yaml")


def test_identities_are_typed_and_exact(policy: ApproverPolicy) -> None:
    assert policy.check(request(), Identity(slack="U01ALICE")).person == "alice"
    assert policy.check(request(), Identity(email="ALICE@example.COM")).person == "alice"  # mail is caseless
    assert policy.check(request(), Identity(unix="alice")).person == "alice"
    # a Slack id differs from its lower-case spelling, and a Slack id is never a Unix login
    for who in (Identity(slack="u01alice"), Identity(unix="U01ALICE"), Identity(slack="alice")):
        verdict = policy.check(request(), who)
        assert not verdict.allowed and "not a person listed" in verdict.why, who


def test_one_person_across_channels_is_one_person(policy: ApproverPolicy) -> None:
    by_id = policy.check(request(), Identity(slack="U02BOB"))
    by_mail = policy.check(request(), Identity(slack="U0OTHER", email="bob@example.com"))
    assert by_id.person == by_mail.person == "bob"
    # the Slack id decides when the email belongs to someone else
    assert policy.check(request(), Identity(slack="U01ALICE", email="bob@example.com")).person == "alice"


def test_role_members_that_name_nobody_give_nobody_the_right(policy: ApproverPolicy) -> None:
    assert policy.members(["ghosts"]) == []
    for who in (Identity(slack="U09NOBODY"), Identity(email="nobody@example.com"), Identity(unix="mallory")):
        assert not policy.check(request(approvers=["ghosts"]), who).allowed


def test_an_identity_listed_for_two_people_refuses_the_file() -> None:
    with pytest.raises(PolicyError, match="both 'alice' and 'eve'"):
        ApproverPolicy.parse("people:\n  alice: [U01ALICE]\n  eve: [U01ALICE]\nroles: {ic: [alice]}\n")
    with pytest.raises(PolicyError, match="both"):
        ApproverPolicy.parse("people:\n  a: [X@Example.com]\n  b: [x@example.com]\n")


@pytest.mark.parametrize(
    "requester", [None, "", "pagerduty", "schedule", "unix:mallory", "slack:U09NOBODY", "carol"]
)
def test_two_person_fails_closed_without_a_known_requester(policy: ApproverPolicy, requester: object) -> None:
    verdict = policy.check(request(two_person=True, requested_by=requester), Identity(slack="U01ALICE"))
    assert not verdict.allowed and "fails closed" in verdict.why


def test_two_person_across_identities(policy: ApproverPolicy) -> None:
    req = request(two_person=True, requested_by="unix:carol")
    assert not policy.check(req, Identity(slack="U03CAROL")).allowed  # same person, other channel
    assert "started this run" in policy.check(req, Identity(slack="U03CAROL")).why
    assert policy.check(req, Identity(email="alice@example.com")).allowed


def test_no_file_a_broken_file_and_rereading(tmp_path: Path) -> None:
    assert "RUNBOOK_APPROVERS" in ApproverPolicy().check(request(), Identity(slack="U1AA")).why
    path = tmp_path / "a.yaml"
    path.write_text("people:\n  u: [U1AA]\nroles:\n  ic: [u]\n")
    pf = PolicyFile(path)
    assert pf.get().check(request(), Identity(slack="U1AA")).allowed
    path.write_text("people:\n  u: [U1AA]\n  v: [U1AA]\nroles:\n  ic: [u]\n")
    os.utime(path, (1, 1))
    broken = pf.get().check(request(), Identity(slack="U1AA"))
    assert not broken.allowed and "unusable" in broken.why
    path.write_text("roles:\n  ic: [U1AA]\n")  # the old roles-only form names no person
    os.utime(path, (2, 2))
    assert not pf.get().check(request(), Identity(slack="U1AA")).allowed


def test_role_source_members_resolve_to_people() -> None:
    register_role_source("testsrc", lambda value: ["U7AA", "stranger@example.com"] if value == "P1" else [])
    policy = ApproverPolicy.parse("people:\n  g: [U7AA]\n  h: [U8AA]\nroles:\n  oncall: ['testsrc:P1']\n")
    assert policy.check(request(approvers=["oncall"]), Identity(slack="U7AA")).allowed
    assert not policy.check(request(approvers=["oncall"]), Identity(slack="U8AA")).allowed
    assert not policy.check(request(approvers=["oncall"]), Identity(email="stranger@example.com")).allowed
