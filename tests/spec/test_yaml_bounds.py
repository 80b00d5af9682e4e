"""Playbook loading is bounded before any work grows with the input: aliases, anchors, size, depth,
files that are not regular files, bytes that are not UTF-8. Each is a FILE:LINE:COL problem from
``runbook lint``, never a hang or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runbook.actions import ActionRegistry
from runbook.spec.lint import PlaybookError, lint_paths, lint_text
from runbook.spec.loading import load_playbook
from runbook.spec.yamlsource import MAX_BYTES, MAX_NODES, load_source

ROOT = Path(__file__).resolve().parents[2]


def billion_laughs(levels: int = 9) -> str:
    lines = ["name: laughs", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def messages(text: str, file: str = "p.yaml") -> list[str]:
    return [str(p) for p in load_source(text, file).problems]


def test_billion_laughs_is_refused_at_the_first_anchor_without_expanding() -> None:
    text = billion_laughs()
    assert len(text) < 600  # a few hundred bytes that would expand to 9**10 scalars
    found = messages(text)
    assert found[0] == "p.yaml:2:5: YAML anchors (&a0) are not allowed in playbooks; write the value out"
    assert "p.yaml:3:10: YAML aliases (*a0) are not allowed in playbooks; write the value out" in found
    assert len(found) == 19  # each anchor, and the first use of each: not 81 lines for one mistake


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: &a [*a]\n", ["p.yaml:1:4: YAML anchors (&a) are not allowed", "p.yaml:1:8: YAML aliases (*a)"]),
        ("a: &a {b: *a}\n", ["p.yaml:1:4: YAML anchors (&a)", "p.yaml:1:11: YAML aliases (*a)"]),
        ("x: &x 1\ny: *x\n", ["p.yaml:1:4: YAML anchors (&x)", "p.yaml:2:4: YAML aliases (*x)"]),
        ("x: &x {a: 1}\ny:\n  <<: *x\n", ["p.yaml:1:4: YAML anchors (&x)", "p.yaml:3:7: YAML aliases (*x)"]),
        ("y: *nowhere\n", ["p.yaml:1:4: YAML aliases (*nowhere)"]),
    ],
)
def test_cyclic_and_plain_aliases_are_problems_not_tracebacks(text: str, expected: list[str]) -> None:
    found = messages(text)
    assert len(found) == len(expected)
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start)


def test_depth_and_node_count_are_capped() -> None:
    assert messages("x: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "p.yaml:1:67: YAML nested more than 64 levels deep"
    ]
    many = "x: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n"
    [problem] = messages(many)
    assert problem.endswith(f"more than {MAX_NODES} YAML nodes in one playbook")


def test_size_is_capped_before_parsing(tmp_path: Path, registry: ActionRegistry) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_BYTES + "\nname: big\n")
    with pytest.raises(PlaybookError) as exc:
        load_playbook(big, registry)
    assert str(exc.value.problems[0]).startswith(f"{big}:1:1: file is {big.stat().st_size} bytes, over the")
    assert messages("#" * (MAX_BYTES + 1))[0].endswith(f"playbook is over the {MAX_BYTES} byte limit")


def test_files_that_are_not_regular_are_reported_not_read(tmp_path: Path, registry: ActionRegistry) -> None:
    folder = tmp_path / "pb"
    folder.mkdir()
    (folder / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.yml")
    (folder / "latin.yaml").write_bytes(b"name: triage\ntitle: caf\xe9\n")
    found = sorted(str(p) for p in lint_paths([folder, folder / "fifo.yml"], registry))
    not_regular = "cannot read: not a regular file (a FIFO, device or socket is never read)"
    assert found == sorted(
        [
            f"{folder / 'fifo.yml'}:1:1: {not_regular}",
            f"{folder / 'fifo.yml'}:1:1: {not_regular}",
            f"{folder / 'latin.yaml'}:2:11: not UTF-8: byte 0xe9 cannot be decoded",
            f"{folder / 'zero.yaml'}:1:1: {not_regular}",
        ]
    )


def test_a_valid_playbook_still_lints_clean(registry: ActionRegistry) -> None:
    text = (ROOT / "playbooks" / "backlog_triage.yaml").read_text()
    playbook, problems = lint_text(text, "backlog_triage.yaml", registry)
    assert problems == [] and playbook is not None


def test_runbook_lint_cli_on_hostile_files_ends_quickly_with_problems(tmp_path: Path) -> None:
    (tmp_path / "laughs.yaml").write_text(billion_laughs())
    (tmp_path / "cyclic.yaml").write_text("name: c\nsteps: &s [*s]\n")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "lint", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip() == ""
    out = done.stdout.splitlines()
    assert (
        f"{tmp_path / 'cyclic.yaml'}:2:8: YAML anchors (&s) are not allowed in playbooks; write the value out"
        in out
    )
    assert any(line.startswith(f"{tmp_path / 'laughs.yaml'}:2:5: YAML anchors (&a0)") for line in out)
    assert any(
        line.startswith(f"{tmp_path / 'zero.yaml'}:1:1: cannot read: not a regular file") for line in out
    )
    assert any(
        line.startswith(f"{tmp_path / 'fifo.yaml'}:1:1: cannot read: not a regular file") for line in out
    )
