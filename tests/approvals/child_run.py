"""Run a playbook through the real engine and gate in a child process (a worker a test can kill).

Usage: python -m tests.approvals.child_run PLAYBOOK_FILE RUN_ID  (settings from the environment)."""

from __future__ import annotations

import sys

from runbook.actions import ActionRegistry
from runbook.compiler.engine import Engine, RunOptions
from runbook.core.settings import Settings
from runbook.runtime import Runtime
from runbook.spec.loading import load_playbook
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.approvals.conftest import MODULES


def main() -> int:
    path, run_id = sys.argv[1], sys.argv[2]
    settings = Settings.from_env()
    reg = ActionRegistry.from_modules(MODULES)
    rt = Runtime(settings, reg, TimelineStore(open_database(settings.database_url)))
    pb = load_playbook(path, reg)
    engine = Engine(settings, reg, rt.store, gate=rt.gate(), sinks=rt.sinks(run_id, pb))
    return engine.run(pb, RunOptions(run_id=run_id, params={}, requested_by="someone")).exit_code


if __name__ == "__main__":
    sys.exit(main())
