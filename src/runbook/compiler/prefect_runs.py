"""Everything runbook asks of Prefect about runs that already exist: park a waiting step's flow run,
resume it when a decision is recorded, mark a lost run Crashed, and the process settings Prefect reads.

Prefect is imported only here, in :mod:`runbook.compiler.flow` and in deployment: the approvals and
timeline layers depend on the small protocols they define (:class:`runbook.approvals.waiting.RunPauser`,
the reaper's ``on_crash`` callback) and the composition root (:mod:`runbook.runtime`) hands them
these implementations. Prefect is bookkeeping here: the runbook store holds every decision and the waiting run
learns of it from the store; every call we make to Prefect retries transient errors with backoff and
jitter, and a run whose Prefect record could not be updated goes on (reconciled in the background).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from runbook.approvals.pausing import Reporter

T = TypeVar("T")

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


def server_problem(api_url: str, budget_seconds: float = 15.0) -> str | None:
    """None when the Prefect API answers (transient failures retried with backoff and jitter for
    ``budget_seconds``), else a message saying how to start it."""
    import httpx

    url = api_url.rstrip("/")
    deadline = time.monotonic() + budget_seconds
    delay = RETRY_FIRST_SECONDS
    while True:
        try:
            httpx.get(f"{url}/health", timeout=3).raise_for_status()
            return None
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable", said plainly
            pause = random.uniform(delay / 2, delay * 1.5)
            if time.monotonic() + pause > deadline:
                return (
                    f"Prefect server not reachable at {url} ({type(exc).__name__}); start the embedded"
                    " one with `make prefect-server` or set PREFECT_API_URL"
                )
            time.sleep(pause)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def approval_input_model(description: str = "") -> type:
    """The typed input a paused run waits for (Prefect validates it; the store decides). With a
    ``description``, Prefect's Resume dialog shows it (Markdown) above the two fields."""
    from prefect.input import RunInput
    from pydantic import Field

    class ApprovalInput(RunInput):
        request_id: int = Field(description="runbook's approval request id (set by runbook itself)")
        outcome: str = Field(
            description="set by runbook once a decision is recorded; a Resume typed here is refused"
        )

    return ApprovalInput.with_initial_data(description=description) if description else ApprovalInput


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from ``parts``."""
    import re

    text = "-".join(parts).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text)).strip("-")[:100] or "runbook"


def create_artifact(flow_run_id: str, key: str, markdown: str, description: str) -> bool:
    """A Markdown artifact on that flow run (best effort: Prefect is bookkeeping)."""
    from prefect.client.schemas.actions import ArtifactCreate

    try:
        artifact = ArtifactCreate(
            key=artifact_key(key),
            type="markdown",
            data=markdown,
            description=description[:500],
            flow_run_id=UUID(flow_run_id),
        )
        with_retries(lambda: _sync_client().create_artifact(artifact), 5.0, "artifact")
        return True
    except Exception as exc:  # noqa: BLE001 - an artifact must never fail a run
        log.info("could not create artifact %s on %s: %s", key, flow_run_id, type(exc).__name__)
        return False


_client_lock = threading.Lock()
_client: Any = None

#: our own Prefect calls retry here (short backoff with jitter), not inside Prefect's client, whose
#: backoff starts at 2 s: a run must not sit behind it
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
#: how long the waiting run's own thread tries to park it before it just waits on the store
PARK_BUDGET_SECONDS = 5.0
#: how long the background keeps bringing a run's Prefect record up to date
RECONCILE_BUDGET_SECONDS = 600.0
#: how long a finishing flow run waits for its pending bookkeeping before it reports its state
SETTLE_SECONDS = 10.0


def _sync_client() -> Any:
    """One sync Prefect client per process for our bookkeeping calls (building one costs ~100 ms)."""
    global _client
    with _client_lock:
        if _client is None:
            from prefect.client.orchestration import get_client

            _client = get_client(sync_client=True).__enter__()
        return _client


def is_transient_prefect(exc: BaseException) -> bool:
    """A Prefect API error worth another try: unreachable, timed out, reset, 408/429/5xx."""
    import httpx

    if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError):
        return True
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return isinstance(code, int) and (code in (408, 429) or code >= 500)


_no_retry_settings: dict[int, Any] = {}


@contextmanager
def _client_retries_off() -> Iterator[None]:
    """Prefect's settings with its client's own retries off, for the calls inside.

    ``temporary_settings`` would build a whole new settings object (every environment variable
    parsed again, ~10 ms) on each call; the copy is made once per settings object and reused."""
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

    context = get_settings_context()
    key = id(context.settings)
    settings = _no_retry_settings.get(key)
    if settings is None or settings[0] is not context.settings:
        quiet = context.settings.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0})
        settings = (context.settings, quiet)
        if len(_no_retry_settings) > 16:
            _no_retry_settings.clear()
        _no_retry_settings[key] = settings
    with SettingsContext(profile=context.profile, settings=settings[1]):
        yield


def with_retries(fn: Callable[[], T], budget_seconds: float, what: str) -> T:
    """``fn()``, retrying transient Prefect errors with exponential backoff and full jitter for at most
    ``budget_seconds``; Prefect's own client retries are off inside (they would sleep 2, 4, 8 s...)."""
    deadline = time.monotonic() + budget_seconds
    delay = RETRY_FIRST_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            with _client_retries_off():
                return fn()
        except Exception as exc:
            pause = random.uniform(delay / 2, delay * 1.5)
            if not is_transient_prefect(exc) or time.monotonic() + pause > deadline:
                raise
            log.debug("prefect %s: %s (attempt %d); again in %.2fs", what, type(exc).__name__, attempt, pause)
            time.sleep(pause)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


class _Bookkeeper:
    """Background work that brings Prefect's record up to date; a finishing run waits for its own."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prefect-bookkeeping")
        self._lock = threading.Lock()
        self._pending: dict[str, list[Future[Any]]] = {}

    def submit(self, flow_run_id: str, fn: Callable[[], None]) -> None:
        future = self._pool.submit(fn)
        with self._lock:
            self._pending.setdefault(flow_run_id, []).append(future)

    def settle(self, flow_run_id: str, timeout: float) -> bool:
        with self._lock:
            futures = self._pending.pop(flow_run_id, [])
        _, not_done = wait(futures, timeout=timeout)
        if not_done:
            with self._lock:
                self._pending.setdefault(flow_run_id, []).extend(not_done)
        return not not_done


_bookkeeper = _Bookkeeper()


def settle(flow_run_id: str, timeout: float = SETTLE_SECONDS) -> bool:
    """Wait (bounded) for this run's pending Prefect bookkeeping; False if Prefect is still away."""
    return _bookkeeper.settle(flow_run_id, timeout)


class PrefectPauser:
    """:class:`runbook.approvals.pausing.RunPauser` on Prefect: a waiting run shows as Paused with a
    typed input under a key naming its request; the run itself waits on the store, not on Prefect."""

    def current_run_id(self) -> str | None:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None

    def __init__(self) -> None:
        self._announced: set[tuple[str, int]] = set()

    def park(
        self,
        flow_run_id: str,
        request_id: int,
        nonce: str,
        timeout_seconds: int,
        *,
        description: str = "",
        message: str = "",
    ) -> bool:
        """Paused (key ``rb-approval-<request>-<nonce>``, ``message`` on the state) plus the input
        schema and ``description`` the Resume dialog shows; the first time for a request, the same
        Markdown as an ``approval-…`` artifact of the run."""
        from prefect.input.run_input import keyset_from_paused_state
        from prefect.states import Paused

        model: Any = approval_input_model(description)
        state: Any = Paused(
            timeout_seconds=timeout_seconds,
            reschedule=False,
            pause_key=pause_key(request_id, nonce),
            message=message[:2000] or None,
        )
        keyset: Any = keyset_from_paused_state(state)
        state.state_details.run_input_keyset = keyset

        def go() -> bool:
            client = _sync_client()
            result = client.set_flow_run_state(UUID(flow_run_id), state, force=True)
            if _status(result) != "ACCEPT":
                return False
            model.save(keyset, flow_run_id=UUID(flow_run_id))
            return True

        try:
            parked = with_retries(go, PARK_BUDGET_SECONDS, "park")
        except Exception as exc:  # noqa: BLE001 - Prefect is bookkeeping; the run waits on the store
            log.info("could not mark flow run %s paused: %s", flow_run_id, type(exc).__name__)
            return False
        if parked and (flow_run_id, request_id) not in self._announced:
            self._announced.add((flow_run_id, request_id))
            self._announce(flow_run_id, request_id, description, message)
        return parked

    @staticmethod
    def _announce(flow_run_id: str, request_id: int, description: str, message: str) -> None:
        """Once per request: how to decide, as a line of the run's log, and the request as an
        ``approval-<request>`` artifact."""
        from runbook.compiler.prefect_log import post_run_log

        if message:
            post_run_log(flow_run_id, logging.INFO, message)
        if description:
            title = description.splitlines()[0].lstrip("# ").strip()
            create_artifact(flow_run_id, f"approval-{request_id}", description, title)

    def still_parked(self, flow_run_id: str, request_id: int) -> bool | None:
        try:
            run = with_retries(lambda: _sync_client().read_flow_run(UUID(flow_run_id)), 2.0, "read")
        except Exception:  # noqa: BLE001 - unknown now; asked again next check
            return None
        state = run.state
        if state is None or not state.is_paused():
            return False
        return (state.state_details.pause_key or "").startswith(f"{PAUSE_KEY_PREFIX}{request_id}-")

    def unpark(self, flow_run_id: str, request_id: int, outcome: str, report: Reporter) -> None:
        """Resume the Prefect record in the background with the decision as its input; retried with
        backoff while Prefect is away, reported to the timeline when it took long or never came."""
        started = time.monotonic()

        def go() -> None:
            try:
                with_retries(
                    lambda: self._resume_once(flow_run_id, request_id, outcome),
                    RECONCILE_BUDGET_SECONDS,
                    "resume",
                )
            except Exception as exc:  # noqa: BLE001 - said in the timeline, nothing else to do
                report(
                    f"Prefect's record of this run could not be updated ({type(exc).__name__}); the"
                    " runbook timeline is the record of this approval"
                )
                return
            took = time.monotonic() - started
            if took > PARK_BUDGET_SECONDS:
                report(f"Prefect was unreachable for {took:.0f}s; its record of this run is reconciled")

        _bookkeeper.submit(flow_run_id, go)

    def _resume_once(self, flow_run_id: str, request_id: int, outcome: str) -> None:
        if not self.resume(flow_run_id, request_id, outcome):
            run = _sync_client().read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_paused():
                raise TimeoutError("resume not accepted yet")  # e.g. input schema not saved yet: again

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
        # ("Run input schema not found") without an exception: reported as not resumed, tried again.
        return _status(result) == "ACCEPT"


def _status(result: Any) -> str:
    return str(getattr(result.status, "value", result.status))


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
