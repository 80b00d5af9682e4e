"""Loading playbooks, in one place: files of a folder, one file, a playbook by name or path, and a
whole folder for serving (strict) or for intake (a broken file skipped and named, never fatal).

``runbook lint``, ``plan``/``run``, ``runbook serve``, the Prefect entrypoints (``flows/``), the
gateway's catalog and the rehearsal runner all load through these functions, so a playbook means
the same thing to every one of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from runbook.actions.registry import ActionRegistry
from runbook.spec.lint import PLAYBOOK_SUFFIXES, PlaybookError, lint_text
from runbook.spec.models import Playbook
from runbook.spec.yamlsource import Problem, UnreadableSource, load_source, read_source_text


def playbook_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            # not only regular files: a FIFO or device named like a playbook is reported, not skipped silently
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in PLAYBOOK_SUFFIXES and not f.is_dir()))
        elif p.exists() or p.is_symlink():
            files.append(p)
        else:
            problems.append(Problem(str(p), 1, 1, "no such file or directory"))
    return files, problems


def load_playbook(path: str | Path, registry: ActionRegistry) -> Playbook:
    """The validated playbook at ``path``; :class:`PlaybookError` lists every problem otherwise."""
    p = Path(path)
    try:
        text = read_source_text(p)
    except UnreadableSource as exc:
        raise PlaybookError([exc.problem]) from None
    playbook, problems = lint_text(text, str(p), registry)
    if problems or playbook is None:
        raise PlaybookError(problems)
    return playbook


def find_playbook(name_or_path: str, folder: Path, registry: ActionRegistry) -> Playbook:
    """A playbook by file path, or by name inside ``folder`` (``stuck-queue`` or ``stuck_queue``)."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return load_playbook(candidate, registry)
    if "/" in name_or_path or os.sep in name_or_path or candidate.suffix in PLAYBOOK_SUFFIXES:
        # a path (``./my.yaml``, ``/srv/playbooks/x.yml``): anywhere, but it has to exist
        problem = "no such file" if not candidate.exists() else "not a regular file"
        raise PlaybookError([Problem(name_or_path, 1, 1, f"{problem} (a playbook is a file path or a name)")])
    for suffix in PLAYBOOK_SUFFIXES:
        for stem in {name_or_path, name_or_path.replace("-", "_"), name_or_path.replace("_", "-")}:
            f = folder / f"{stem}{suffix}"
            if f.is_file():
                return load_playbook(f, registry)
    for f in playbook_files([folder])[0]:
        try:
            src = load_source(read_source_text(f), str(f))
        except UnreadableSource:
            continue  # reported by ``runbook lint``; it cannot be the playbook asked for by name
        if isinstance(src.data, dict) and src.data.get("name") == name_or_path:
            return load_playbook(f, registry)
    raise PlaybookError([Problem(name_or_path, 1, 1, f"no playbook named '{name_or_path}' in {folder}/")])


def load_folder(folder: Path, registry: ActionRegistry) -> list[Playbook]:
    """Every playbook of ``folder``; :class:`PlaybookError` listing all problems of a bad one (what a
    deployment wants: serving half a folder would silently drop a schedule)."""
    files, problems = playbook_files([folder])
    if problems:
        raise PlaybookError(problems)
    return [load_playbook(f, registry) for f in files]
