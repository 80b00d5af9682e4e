"""The PagerDuty REST client of the ``pagerduty.*`` actions and the on-call approvers: pdpyras, here only.

pdpyras is the one vendor SDK for PagerDuty and this is the one module that imports it (it warns on
import that it is deprecated in favour of ``pagerduty``; that warning is filtered here, so it does
not show in every CLI run). Swapping it for its successor touches this file only: the other modules
use :func:`pagerduty_session` / :func:`session`, :func:`call` (which maps every client error to a
typed, redacted action error) and :func:`oncall_emails`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.redact import redact
from runbook.core.settings import Settings

if TYPE_CHECKING:
    import pdpyras

    #: Any failure of a PagerDuty API call (transport or HTTP status), as pdpyras raises it.
    PagerDutyError = pdpyras.PDClientError

BACKEND = "pagerduty"
SESSION_KEY = "pagerduty.api"


@cache
def _pdpyras() -> Any:
    """pdpyras, imported on the first PagerDuty call: with requests it costs ~0.1 s, which every
    ``runbook run`` would otherwise pay loading the registry before its first step."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*pdpyras.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import pdpyras

    return pdpyras


def __getattr__(name: str) -> Any:
    """``PagerDutyError`` resolved when first asked for (PEP 562)."""
    if name == "PagerDutyError":
        return _pdpyras().PDClientError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BACKEND",
    "SESSION_KEY",
    "PagerDutyError",
    "call",
    "oncall_emails",
    "pagerduty_session",
    "session",
]


def pagerduty_session(settings: Settings) -> Any:
    """The ``ctx.connections`` factory: one API session per run."""
    if not settings.pagerduty_api_token:
        raise ActionError("PAGERDUTY_API_TOKEN is not set", backend=BACKEND)
    api = _pdpyras().APISession(settings.pagerduty_api_token, default_from=settings.pagerduty_from_email)
    api.max_network_attempts = 2
    return api


def session(ctx: ActionContext) -> Any:
    """The run's session, its timeout set to what is left of the step's budget."""
    api = ctx.connections.get(SESSION_KEY, pagerduty_session)
    api.timeout = ctx.remaining(30.0)
    return api


def call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one pdpyras call, turning its errors into typed, redacted action errors."""
    try:
        return fn(*args, **kwargs)
    except _pdpyras().PDClientError as exc:
        response = getattr(exc, "response", None)
        if response is None:
            raise BackendUnavailable(
                f"{what}: PagerDuty unreachable: {redact(str(exc))}", backend=BACKEND
            ) from None
        detail = ""
        try:
            err = response.json().get("error", {})
            detail = "; ".join([err.get("message", ""), *err.get("errors", [])]).strip("; ")
        except ValueError:
            pass
        status = response.status_code
        if status >= 500:
            raise BackendUnavailable(f"{what}: PagerDuty answered {status}", backend=BACKEND) from None
        raise ActionError(
            f"{what}: PagerDuty answered {status} {redact(detail)}".strip(), backend=BACKEND
        ) from None


def oncall_emails(
    settings: Settings, kind: str, ident: str, *, label: str = "", timeout: float = 5.0
) -> list[str]:
    """``email:<address>`` of everyone on call now for a schedule or escalation policy, sorted.

    ``kind`` is ``schedule`` or ``escalation_policy``; ``label`` names the target in errors (the
    approvers entry as written, ``kind/ident`` by default). The HTTP part of the on-call role source
    (:mod:`runbook.actions.pagerduty.oncall`); any API failure is an :class:`ActionError`.
    """
    api = pagerduty_session(settings)
    api.timeout = timeout
    try:
        rows = list(api.iter_all("oncalls", params={f"{kind}_ids[]": [ident], "include[]": ["users"]}))
    except _pdpyras().PDClientError as exc:
        raise ActionError(
            f"PagerDuty on-call for {label or f'{kind}/{ident}'}: {redact(str(exc))}", backend=BACKEND
        ) from None
    return sorted(
        {f"email:{(r.get('user') or {}).get('email')}" for r in rows if (r.get("user") or {}).get("email")}
    )
