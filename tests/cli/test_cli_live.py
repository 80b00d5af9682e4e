"""``runbook run`` at a terminal, read under a pty with the real command: colour (and none with
``NO_COLOR`` or when not a terminal), the live line while a step runs and while an approval waits,
a decision made by another process (``runbook approve`` in another shell) in the live output, and a
playbook given by a path outside ./playbooks."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.approvers import approvers_yaml, current_login

ROOT = Path(__file__).resolve().parents[2]
ESC = "\x1b["

PLAYBOOK = """name: live-{u}
title: Live line at the terminal
owner: sre
steps:
  - id: sampling
    title: Sample for a few seconds
    action: core.wait
    with:
      {{action: core.set, with: {{values: {{x: 1}}}}, until: "{{{{ false }}}}", interval: 0.5, timeout: 4}}
    on_failure: continue
  - id: fix_by_hand
    title: Restart the consumer by hand
    action: core.manual
    with: {{instructions: "restart the consumer"}}
    approval: {{approvers: [incident-commander], timeout: 10m}}
"""


class Terminal:
    """``runbook ARGS`` with stdout and stderr on a pty, read as it goes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runbook.cli", *args], stdout=slave, stderr=slave, env=env, cwd=ROOT
        )
        os.close(slave)
        self.out = ""

    def read_until(self, pattern: str, timeout: float) -> re.Match[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(pattern, self.out)
            if found:
                return found
            self._read(0.2)
            if self.proc.poll() is not None:
                self._read(0.2)
                break
        found = re.search(pattern, self.out)
        if not found:
            raise AssertionError(f"{pattern!r} not shown in {timeout}s; the terminal showed:\n{self.out}")
        return found

    def _read(self, wait: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                self.out += os.read(self.master, 65536).decode(errors="replace")
            except OSError:
                pass

    def finish(self, timeout: float = 60) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self._read(0.2)
        self._read(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"did not finish in {timeout}s:\n{self.out}")
        os.close(self.master)
        return self.proc.wait()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(
        approvers_yaml({"incident-commander": ["carol"]}, os_user=("carol", current_login()))
    )
    e = {
        **os.environ,
        "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'runbook.db'}",
        "RUNBOOK_HOME": str(tmp_path / "home"),
        "RUNBOOK_APPROVERS": str(approvers),
        "RUNBOOK_PLAYBOOKS": str(tmp_path / "none"),
        "TERM": "xterm",
    }
    for k in ("SLACK_BOT_TOKEN", "NO_COLOR", "RUNBOOK_DEBUG"):
        e.pop(k, None)
    return e


def test_run_by_path_with_live_line_colour_and_a_decision_from_another_process(
    prefect_server: str, env: dict[str, str], tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "live.yaml"  # not under ./playbooks, not RUNBOOK_PLAYBOOKS
    outside.parent.mkdir()
    outside.write_text(PLAYBOOK.format(u=uuid.uuid4().hex[:6]))
    term = Terminal(["run", str(outside)], env)
    # a step that takes time: one line rewritten in place, with its own budget
    term.read_until(r"\r\x1b\[K\x1b\[2mprogress: sampling \ds/4s", 30)
    # the approval wait: how long is left, counting down in place
    term.read_until(r"waiting for approval of fix_by_hand — 9m left", 40)
    run_id = term.read_until(r"runbook approve (\S+) fix_by_hand", 5).group(1)
    # decided in another process, as another shell would
    decided = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "approve", run_id, "fix_by_hand", "--reason", "done"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert decided.returncode == 0, decided.stdout + decided.stderr
    term.read_until(r"approval\.approved\s+fix_by_hand: .*\[carol\]", 30)
    assert term.finish() == 0, term.out
    out = term.out
    assert f"{ESC}32m" in out and f"{ESC}31m" in out  # green successes, the red failed wait
    assert re.search(r"\x1b\[1m\x1b\[32mcompleted\x1b\[0m", out)  # the run's end line
    assert out.count("approval.approved") == 1  # printed once, though seen twice (poll + publish)
    assert "Traceback" not in out


def test_no_colour_with_no_color_or_when_not_a_terminal(env: dict[str, str]) -> None:
    term = Terminal(["plan", "no/such/playbook.yaml"], {**env, "NO_COLOR": "1"})
    assert term.finish() == 1
    assert ESC not in term.out and "no/such/playbook.yaml:1:1: no such file" in term.out

    term = Terminal(["timeline", "no-such-run"], env)
    assert term.finish() == 1
    assert term.out.startswith(f"{ESC}31merror:{ESC}0m no run 'no-such-run'")  # red on a terminal

    piped = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "timeline", "no-such-run"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 1 and piped.stderr.startswith("error: no run") and ESC not in piped.stderr


def test_plan_takes_a_path_outside_playbooks_or_a_name(env: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "mine.yml"
    outside.write_text(PLAYBOOK.format(u="plan"))
    term = Terminal(["plan", str(outside)], {**env, "NO_COLOR": ""})
    assert term.finish() == 0, term.out
    assert "fix_by_hand" in term.out and ESC not in term.out  # NO_COLOR set, even empty
    folder = tmp_path / "team-playbooks"
    folder.mkdir()
    (folder / "restart.yaml").write_text(PLAYBOOK.format(u="named"))
    term = Terminal(["plan", "live-named"], {**env, "RUNBOOK_PLAYBOOKS": str(folder)})
    assert term.finish() == 0, term.out
    assert "fix_by_hand" in term.out
