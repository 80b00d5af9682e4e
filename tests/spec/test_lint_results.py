"""Golden tests for the checks that know what steps return and who may approve: exact
``FILE:LINE:COL: message`` for a misspelt result field (with did-you-mean) and, when an approvers
file is configured, an approver role it does not define (a warning: lint still exits 0 for it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runbook.actions import ActionRegistry
from runbook.runtime import cached_registry
from runbook.spec.lint import lint_paths

CASES = Path(__file__).parent / "cases"
CASE = CASES / "result_fields.yaml"
FIELDS = [
    "13:11: steps.snapshot.mesages: 'rabbitmq.queue_stats' returns no field 'mesages'"
    " (did you mean 'messages'?)",
    "15:13: steps.snapshot.consumerz: 'rabbitmq.queue_stats' returns no field 'consumerz'"
    " (did you mean 'consumers'?)",
    "24:18: steps.purge.zzz: 'rabbitmq.purge_queue' returns no field 'zzz'"
    " (it returns purged, queue, summary)",
]
ROLE = (
    "19:28: warning: approver role 'incident-comander' is not in the approvers file"
    " (did you mean 'incident-commander'?) (it defines incident-commander, queue-owner)"
)
APPROVERS = "people:\n  alice: [U0ALICE]\nroles:\n  incident-commander: [alice]\n  queue-owner: [alice]\n"


def lines(problems: list) -> list[str]:
    return [str(p).removeprefix(f"{CASE}:") for p in problems]


def test_result_fields_are_checked_with_did_you_mean() -> None:
    registry: ActionRegistry = cached_registry()
    assert lines(lint_paths([CASE], registry)) == FIELDS
    # roles are only checked against a configured approvers file
    assert lines(lint_paths([CASE], registry, roles=["incident-commander", "queue-owner"])) == [*FIELDS, ROLE]


def test_runbook_lint_warns_about_unknown_roles_from_runbook_approvers(tmp_path: Path) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(APPROVERS)
    clean = tmp_path / "clean.yaml"
    text = CASE.read_text().replace("mesages", "messages").replace("['consumerz']", "['consumers']")
    clean.write_text(text.replace("{{ steps.purge.zzz }}", "{{ steps.purge.purged }}"))
    env = {**os.environ, "RUNBOOK_APPROVERS": str(approvers)}
    out = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "lint", str(clean)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{clean}:{ROLE}"]
    env.pop("RUNBOOK_APPROVERS")
    out = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "lint", str(clean)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and out.stdout == ""


def test_runbook_actions_lists_result_fields() -> None:
    out = subprocess.run([sys.executable, "-m", "runbook.cli", "actions"], capture_output=True, text=True)
    assert out.returncode == 0
    block = out.stdout.split("rabbitmq.purge_queue  (DESTRUCTIVE)", 1)[1].split("\n\n", 1)[0]
    assert (
        "returns (steps.<id>.<field>): summary, queue, purged" in block or "purged" in block.splitlines()[-1]
    )
