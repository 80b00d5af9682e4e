"""``runbook rehearse [PATH...]``: replay rehearsal files (recorded backend results and scripted
approvals) through the real engine, so a team tests its own playbooks without any service.

Each file names its playbook (by name, looked up in ``RUNBOOK_PLAYBOOKS``, or by path). Runs go to a
throwaway store and data directory: a rehearsal never touches the real timeline or writes a
postmortem where production ones live. Exit 0 when every rehearsal holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from runbook.core.settings import Settings

BASELINE = "baseline.yaml"  # shared recorded results, not a rehearsal of its own


def rehearsal_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.yaml") if f.name != BASELINE)
        else:
            files.append(p)
    return files


def rehearse_command(args: argparse.Namespace) -> int:
    from runbook.runtime import cached_registry
    from runbook.spec.lint import PlaybookError
    from runbook.store.schema import open_database
    from runbook.store.timeline import TimelineStore
    from runbook.testing.rehearsal import RehearsalError, run_rehearsal

    files = rehearsal_files(args.paths)
    if not files:
        print(f"error: no rehearsal files in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    base = Settings.from_env()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="runbook-rehearse-") as tmp:
        settings = replace(base, database_url=f"sqlite:///{Path(tmp) / 'rehearsal.db'}")
        store = TimelineStore(open_database(settings.database_url))
        for f in files:
            try:
                report = run_rehearsal(
                    f,
                    registry=cached_registry(),
                    settings=settings,
                    store=store,
                    playbooks_dir=base.playbooks,
                )
            except (RehearsalError, PlaybookError, OSError, ValueError) as exc:
                failed += 1
                print(f"FAIL {f}: {exc}")
                continue
            if report.problems:
                failed += 1
                print(f"FAIL {report.explain()}")
            else:
                print(f"ok   {f} ({report.outcome.status})")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0
