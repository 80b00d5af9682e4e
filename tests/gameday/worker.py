"""A worker process a test can kill -9: runs one playbook through the real engine, gate and store.

Usage: python -m tests.gameday.worker PLAYBOOK_FILE RUN_ID HEARTBEAT_SECONDS (settings from env).
"""

from __future__ import annotations

import sys

from runbook.actions import ActionRegistry
from runbook.approvals.pausing import NoPauser
from runbook.approvals.waiting import StoreGate
from runbook.compiler.engine import Engine, RunOptions
from runbook.core.settings import Settings
from runbook.runtime import Runtime
from runbook.spec.loading import load_playbook
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore

MODULES = ["runbook.actions.core.actions", "runbook.actions.timeline.actions", "tests.gameday.actions"]


def build_engine(settings: Settings, run_id: str, pb_path: str, heartbeat: float):  # type: ignore[no-untyped-def]
    reg = ActionRegistry.from_modules(MODULES)
    rt = Runtime(settings, reg, TimelineStore(open_database(settings.database_url)), pauser=NoPauser())
    pb = load_playbook(pb_path, reg)
    # Outside a flow run the real gate waits on the store; NoPauser only skips importing Prefect
    # (seconds per process) to look for a flow run context that cannot exist here.
    gate = StoreGate(rt.approvals(), console=True)
    engine = Engine(
        settings, reg, rt.store, gate=gate, sinks=rt.sinks(run_id, pb), heartbeat_seconds=heartbeat
    )
    return engine, pb


def main() -> int:
    path, run_id, heartbeat = sys.argv[1], sys.argv[2], float(sys.argv[3])
    engine, pb = build_engine(Settings.from_env(), run_id, path, heartbeat)
    return engine.run(pb, RunOptions(run_id=run_id, params={}, requested_by="oncall")).exit_code


if __name__ == "__main__":
    sys.exit(main())
