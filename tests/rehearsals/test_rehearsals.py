"""Every rehearsal under tests/rehearsals/ runs the real engine over a shipped playbook.

A rehearsal replays recorded backend results (see ``runbook.testing.rehearsal``), so these tests need no
service: they prove each playbook's logic — the verdict paths, what is gated, what a denial skips,
what ``finally`` does — and break when an action's params or result model changes under a playbook.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions import ActionRegistry
from runbook.core.settings import Settings
from runbook.spec.lint import lint_paths
from runbook.store.timeline import TimelineStore
from runbook.testing.rehearsal import run_rehearsal

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
PLAYBOOKS = ROOT / "playbooks"
FILES = sorted(p for p in HERE.rglob("*.yaml") if p.name != "baseline.yaml")


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Postmortem drafts and dumps go to a per-test RUNBOOK_HOME, never the user's."""
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HERE)) for p in FILES])
def test_rehearsal(path: Path, registry: ActionRegistry, settings: Settings, store: TimelineStore) -> None:
    report = run_rehearsal(path, registry=registry, settings=settings, store=store, playbooks_dir=PLAYBOOKS)
    assert not report.problems, report.explain()


def test_shipped_playbooks_lint_clean(registry: ActionRegistry) -> None:
    problems = lint_paths([PLAYBOOKS], registry)
    assert not problems, "\n".join(str(p) for p in problems)


def test_every_playbook_has_at_least_two_rehearsals() -> None:
    stems = sorted(p.stem for p in PLAYBOOKS.glob("*.yaml"))
    counts = {stem: len(list((HERE / stem).glob("*.yaml"))) for stem in stems}
    assert all(n >= 2 for n in counts.values()), counts


def test_runbook_rehearse_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a team runs in CI for its own playbooks: ``runbook rehearse PATH``, exit 0 when all hold."""
    from runbook.cli import main

    assert main(["rehearse", str(HERE / "stuck_queue")]) == 0
    assert " passed, 0 failed" in capsys.readouterr().out
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        (HERE / "stuck_queue" / "hung_consumers_purge.yaml").read_text().replace("completed", "failed")
    )
    assert main(["rehearse", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0 passed, 1 failed" in out
