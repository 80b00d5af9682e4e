"""Everything runbook asks of Prefect about runs that already exist: park a waiting step's flow run,
resume it when a decision is recorded, mark a lost run Crashed, and the process settings Prefect reads.

Prefect is imported only here, in :mod:`runbook.compiler.flow` and in deployment: the approvals and
timeline layers depend on the small protocols they define (:class:`runbook.approvals.waiting.RunPauser`,
the reaper's ``on_crash`` callback) and the composition root (:mod:`runbook.runtime`) hands them
these implementations. Prefect is bookkeeping here: the runbook store holds every decision, so a
resume that Prefect refuses or loses is retried by the waiting run's watcher.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any
from uuid import UUID

log = logging.getLogger("runbook.prefect")

PAUSE_KEY_PREFIX = "rb-approval-"
DEFAULT_API_URL = "http://127.0.0.1:4200/api"


def pause_key(request_id: int, nonce: str) -> str:
    """The key of a pause for one approval request (a resume must name this request to count)."""
    return f"{PAUSE_KEY_PREFIX}{request_id}-{nonce}"


def prefect_process_defaults(api_url: str = DEFAULT_API_URL) -> None:
    """Prefect reads its own settings from the process environment: set runbook's defaults for them
    (no telemetry, quiet logging, the local server) unless the operator set them already."""
    for key, value in (
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("DO_NOT_TRACK", "1"),
        ("PREFECT_API_URL", api_url),
        ("PREFECT_LOGGING_LEVEL", "WARNING"),
        ("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore"),
    ):
        os.environ.setdefault(key, value)


def server_problem(api_url: str) -> str | None:
    """None when the Prefect API answers, else a message saying how to start it."""
    import httpx

    url = api_url.rstrip("/")
    try:
        httpx.get(f"{url}/health", timeout=3).raise_for_status()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable", said plainly
        return (
            f"Prefect server not reachable at {url} ({type(exc).__name__}); start the embedded one with"
            " `make prefect-server` or set PREFECT_API_URL"
        )


def approval_input_model() -> type:
    """The typed input a paused run waits for (Prefect validates it; the store decides)."""
    from prefect.input import RunInput

    class ApprovalInput(RunInput):
        request_id: int
        outcome: str

    return ApprovalInput


_client_lock = threading.Lock()
_client: Any = None


def _sync_client() -> Any:
    """One sync Prefect client per process for resumes (building one costs ~100 ms)."""
    global _client
    with _client_lock:
        if _client is None:
            from prefect.client.orchestration import get_client

            _client = get_client(sync_client=True).__enter__()
        return _client


class PrefectPauser:
    """:class:`runbook.approvals.waiting.RunPauser` on Prefect's pause/resume."""

    def current_run_id(self) -> str | None:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None

    def pause(self, request_id: int, nonce: str, timeout_seconds: int) -> tuple[Any, Any]:
        """Park this flow run until resumed; returns what the resume claimed (request id, outcome)."""
        from prefect.flow_runs import pause_flow_run

        got: Any = pause_flow_run(
            wait_for_input=approval_input_model(),
            timeout=timeout_seconds,
            poll_interval=1,
            key=pause_key(request_id, nonce),
        )
        return getattr(got, "request_id", None), getattr(got, "outcome", None)

    def resume(self, flow_run_id: str, request_id: int, outcome: str) -> bool:
        """Resume the run only if it is paused *for this request* (never another step's pause)."""
        client = _sync_client()
        run = client.read_flow_run(UUID(flow_run_id))
        state = run.state
        if state is None or not state.is_paused():
            return False
        key = state.state_details.pause_key or ""
        if not key.startswith(f"{PAUSE_KEY_PREFIX}{request_id}-"):
            return False
        result = client.resume_flow_run(
            UUID(flow_run_id), run_input={"request_id": request_id, "outcome": outcome}
        )
        # Prefect sets Paused *before* it saves the run-input schema; a resume in between is REJECTed
        # ("Run input schema not found") without an exception. Report it as not resumed so the watcher
        # tries again on its next tick, else the approved run stays paused until its pause times out.
        return bool(getattr(result.status, "value", result.status) == "ACCEPT")


def crash_flow_run(run_id: str, reason: str) -> None:
    """Best effort: the Prefect flow run of that id goes Crashed if Prefect still says Running."""
    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        return  # not a Prefect run (engine-direct runs use their own ids)
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            fr = client.read_flow_run(flow_run_id)
            if fr.state is not None and fr.state.is_running():
                client.set_flow_run_state(flow_run_id, Crashed(message=reason[:500]), force=True)
    except Exception as exc:  # noqa: BLE001 - the store is the source of truth; Prefect is cosmetic
        log.info("reaper: could not mark Prefect flow run %s crashed: %s", run_id, exc)
