"""What a run needs from the composition root, as a protocol (the compiler never builds it itself).

:class:`runbook.runtime.Runtime` implements it; tests may hand in their own. Keeping this a protocol
lets the compiler sit below the composition root: the root imports the compiler, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runbook.actions.registry import ActionRegistry
from runbook.core.gate import Gate
from runbook.core.settings import Settings
from runbook.spec.models import Playbook
from runbook.store.timeline import TimelineStore
from runbook.timeline.recorder import Sink


class RunWiring(Protocol):
    settings: Settings
    registry: ActionRegistry
    store: TimelineStore

    def gate(self) -> Gate: ...

    def sinks(self, run_id: str, playbook: Playbook | None = None, console: bool = True) -> list[Sink]: ...


WiringFactory = Callable[[], RunWiring]
