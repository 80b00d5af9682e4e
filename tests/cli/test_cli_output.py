"""What the operator sees at the terminal, read under a pty as a person would see it: exit codes
and every environment variable in ``--help``, one-line errors instead of tracebacks, and a late
``runbook approve`` for a run that already ended refused plainly, quickly, without Prefect noise."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runbook.cli as cli
from runbook.core.gate import GateRequest
from runbook.store.approvals import ApprovalStore
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore

ROOT = Path(__file__).resolve().parents[2]


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 30.0) -> tuple[int, str, float]:
    """``runbook ARGS`` with stdout and stderr on a terminal; (exit code, what it showed, seconds)."""
    master, slave = pty.openpty()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", *args], stdout=slave, stderr=slave, env=env, cwd=ROOT
    )
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            out += chunk
        elif proc.poll() is not None:
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError(f"runbook {args} did not finish in {timeout}s: {out!r}")
    os.close(master)
    code = proc.wait()
    return code, out.decode(errors="replace").replace("\r\n", "\n"), time.monotonic() - start


def settings_variables() -> set[str]:
    """Every environment variable runbook's settings read."""
    found: set[str] = set()
    for f in ("src/runbook/core/settings.py", "src/runbook/core/files.py"):
        found |= set(re.findall(r"""e(?:\.get\(|\[)["']([A-Z_]+)["']""", (ROOT / f).read_text()))
    return found


def test_help_documents_exit_codes_and_every_environment_variable() -> None:
    code, text, _ = run_in_pty(["--help"], dict(os.environ))
    assert code == 0
    assert "exit codes:" in text and "2  the run was aborted or a step denied" in text
    variables = settings_variables()
    assert {"RUNBOOK_APPROVERS", "RABBITMQ_URL", "KUBECONFIG", "DATABASE_URL", "RUNBOOK_HOME"} <= variables
    missing = sorted(v for v in variables if v not in text)
    assert not missing, f"not in runbook --help: {missing}"
    env_part = text.split("environment", 1)[1]
    assert env_part.index("RUNBOOK_PLAYBOOKS") < env_part.index("RUNBOOK_HOME"), "contract variables first"


def test_an_unexpected_error_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: object) -> int:
        raise RuntimeError("the broker said no\nsecond line of detail")

    monkeypatch.setattr(cli, "cmd_timeline", boom)
    monkeypatch.delenv("RUNBOOK_DEBUG", raising=False)
    assert cli.main(["timeline", "r1"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: RuntimeError: the broker said no",
        "  (set RUNBOOK_DEBUG=1 for the full traceback)",
    ]
    assert "Traceback" not in err


def test_approve_after_the_run_ended_is_refused_quickly_and_the_request_voided(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runbook.db'}"
    store = TimelineStore(open_database(url))
    store.start_run("run-ended", "gated", params={})
    req = GateRequest(
        run_id="run-ended",
        playbook="gated",
        step_id="purge",
        step_title="Purge",
        action="rabbitmq.purge_queue",
        params={"queue": "plans"},
        description="purge plans",
        plan_hash="a" * 64,
        approvers=["incident-commander"],
    )
    approvals = ApprovalStore(store.db)
    row, _ = approvals.create(req, None)
    # an ended run (a crashed one is not ended: it is retried and its approvals stay decidable)
    store.finish_run("run-ended", "failed", "an earlier step failed")
    env = {**os.environ, "RUNBOOK_DATABASE_URL": url, "RUNBOOK_HOME": str(tmp_path / "home")}
    for k in ("SLACK_BOT_TOKEN", "RUNBOOK_APPROVERS"):
        env.pop(k, None)
    code, text, seconds = run_in_pty(["approve", "run-ended", "purge"], env)
    assert code == 1
    assert text.strip() == (
        "error: run 'run-ended' has ended (failed): step 'purge' will not run, so there is nothing"
        " to approve or deny"
    )
    assert "ERROR" not in text and "Traceback" not in text
    assert seconds <= 2.0 + 1.5, f"took {seconds:.1f}s"  # ≤ 2 s of work; the rest is interpreter start
    assert approvals.get(row.id).status == "voided"  # type: ignore[union-attr]
    voided = [e for e in store.events("run-ended") if e.kind == "approval.voided"]
    assert len(voided) == 1 and "ended (failed)" in voided[0].summary
