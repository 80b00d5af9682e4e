"""Runs one ``rabbitmq.move_messages`` in its own process, so a test can SIGKILL it mid-move.

Usage: python rabbit_move_child.py JSON_PARAMS  (settings from the environment)
"""

from __future__ import annotations

import json
import sys

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke
from runbook.core.settings import Settings


def main() -> None:
    params = json.loads(sys.argv[1])
    registry = ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])
    ctx = ActionContext(Connections(Settings.from_env()))
    result = invoke(registry["rabbitmq.move_messages"], ctx, params)
    print(result.model_dump_json(), flush=True)


if __name__ == "__main__":
    main()
