"""Every gated step of a shipped playbook says which earlier steps its approver reads as evidence
(``evidence:``), instead of whatever happened to run last (a facts dump, a failed notification)."""

from __future__ import annotations

from pathlib import Path

from runbook.runtime import cached_registry
from runbook.spec.loading import load_playbook, playbook_files

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def test_every_shipped_gated_step_declares_its_evidence() -> None:
    missing = []
    files, problems = playbook_files([PLAYBOOKS])
    assert files and not problems
    for path in files:
        playbook = load_playbook(path, cached_registry())
        ids = [s.id for s in playbook.all_steps()]
        for i, step in enumerate(playbook.all_steps()):
            if step.gated:
                if not step.evidence:
                    missing.append(f"{path.name}: {step.id}")
                assert set(step.evidence) <= set(ids[:i]), f"{path.name}: {step.id} names a later step"
    assert not missing, f"gated steps without evidence: {missing}"
