"""Prefect entrypoints: every playbook as a module-level flow named after it.

``prefect deploy`` and every worker load flows by entrypoint (``flows/playbooks.py:<attribute>``), so
each playbook in ``RUNBOOK_PLAYBOOKS`` (default: the repository's ``playbooks/``) becomes an attribute
here, its name with ``-`` turned into ``_``: ``stuck-queue`` -> ``flows/playbooks.py:stuck_queue``.
The attributes are built when the module is imported, so a worker always runs the playbook file it
has, and adding a playbook needs no change here (only a deployment in ``prefect.yaml``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path and not any(Path(p, "runbook").is_dir() for p in sys.path if p):
    sys.path.insert(0, str(ROOT / "src"))  # a worker started from a plain checkout

from runbook.compiler.flow import build_flow  # noqa: E402
from runbook.deploy import load_playbooks  # noqa: E402
from runbook.runtime import from_environment  # noqa: E402


def playbooks_folder() -> Path:
    configured = Path(os.environ.get("RUNBOOK_PLAYBOOKS") or "playbooks")
    if configured.is_absolute() or configured.is_dir():
        return configured
    return ROOT / configured


def attribute(name: str) -> str:
    """The entrypoint attribute of the playbook ``name``."""
    return name.replace("-", "_")


FLOWS: dict[str, Any] = {}
for _playbook in load_playbooks(playbooks_folder()):
    FLOWS[attribute(_playbook.name)] = build_flow(_playbook, from_environment)
globals().update(FLOWS)
__all__ = sorted(FLOWS)
