"""docs/FIRST_PLAYBOOK.md works as written: every ```sh block is run, in order, by bash in an empty
temporary folder against the local RabbitMQ and Prefect server, with ``runbook`` on the PATH and a
private store. A command that fails, or output the page promises that does not appear, fails here,
so the walkthrough cannot drift from the product."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "FIRST_PLAYBOOK.md"


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def test_readme_links_the_walkthrough() -> None:
    assert "docs/FIRST_PLAYBOOK.md" in (ROOT / "README.md").read_text()


def test_the_walkthrough_runs_as_written(
    prefect_server: str, rabbitmq_available: None, tmp_path: Path
) -> None:
    blocks = shell_blocks(DOC.read_text())
    assert len(blocks) >= 5, "the walkthrough lost its commands"
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "RUNBOOK_HOME": str(tmp_path / "home"),
        "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'runbook.db'}",
        "NO_COLOR": "1",
    }
    for k in ("SLACK_BOT_TOKEN", "RUNBOOK_PLAYBOOKS", "RUNBOOK_DEBUG"):
        env.pop(k, None)
    work = tmp_path / "work"
    work.mkdir()
    outputs = []
    try:
        for block in blocks:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, (
                f"this block failed:\n{block}\n--- output:\n{done.stdout}{done.stderr}"
            )
            outputs.append(done.stdout + done.stderr)
    finally:  # the cleanup block is the last one; run it even when an earlier one failed
        subprocess.run(["bash", "-c", blocks[-1]], cwd=work, env=env, capture_output=True, timeout=60)
    lint_and_plan = outputs[2]
    assert "ok: my-playbooks/" in lint_and_plan and "purge" in lint_and_plan
    dry = outputs[3]
    assert "step.dry_run" in dry and "purge" in dry and ": completed" in dry
    real = outputs[4]
    assert "holds 3 message(s)" in real and "condition is false" in real and ": completed" in real
    assert real.count("run.finished") == 2  # the run's own output, then `runbook timeline`
