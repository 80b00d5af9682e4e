"""Running a playbook through the real engine and gate in a background thread."""

from __future__ import annotations

import threading
from typing import Any

from runbook.actions import ActionRegistry
from runbook.compiler.engine import Engine, RunOptions, RunOutcome
from runbook.compiler.params import coerce_params
from runbook.runtime import Runtime
from runbook.spec.lint import lint_text
from runbook.store.timeline import TimelineStore

HEAD = "name: gated\ntitle: Gated test\nowner: me\n"


def playbook(text: str, reg: ActionRegistry) -> Any:
    pb, problems = lint_text(text, "t.yaml", reg)
    assert not problems, [str(p) for p in problems]
    return pb


class BackgroundRun:
    """``Engine.run`` with the runtime's real gate and sinks, in a thread the test can join."""

    def __init__(
        self,
        text: str,
        reg: ActionRegistry,
        settings: Any,
        store: TimelineStore,
        *,
        run_id: str,
        requested_by: str | None = "someone",
        incident: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        rt = Runtime(settings, reg, store)
        self.pb = playbook(text, reg)
        self.engine = Engine(
            settings, reg, store, gate=rt.gate(), sinks=rt.sinks(run_id, self.pb, console=True)
        )
        self.opts = RunOptions(
            run_id=run_id,
            params=coerce_params(self.pb, params or {}),
            requested_by=requested_by,
            incident=incident,
        )
        self.outcome: RunOutcome | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = self.engine.run(self.pb, self.opts)
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.error = exc

    def join(self, timeout: float = 20.0) -> RunOutcome:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run did not finish"
        if self.error:
            raise self.error
        assert self.outcome is not None
        return self.outcome


def kinds(store: TimelineStore, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.kind.value, e.step_id) for e in store.events(run_id)]
