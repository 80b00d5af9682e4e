"""The one module that imports slack_sdk: the Web API client and the request signature check.

Everything else speaks to Slack through :func:`make_client` (posting) and :func:`signature_problem`
(verifying interactivity requests), so the vendor SDK can change in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runbook.core.lazy import lazy_module
from runbook.core.settings import Settings

if TYPE_CHECKING:
    import slack_sdk
    from slack_sdk import errors as slack_errors
    from slack_sdk import signature as slack_signature
    from slack_sdk.errors import SlackApiError
    from slack_sdk.http_retry import builtin_handlers as slack_retry
else:  # imported on the first Slack call: a run without SLACK_BOT_TOKEN never pays for it
    slack_sdk = lazy_module("slack_sdk")
    slack_errors = lazy_module("slack_sdk.errors")
    slack_signature = lazy_module("slack_sdk.signature")
    slack_retry = lazy_module("slack_sdk.http_retry.builtin_handlers")


def __getattr__(name: str) -> Any:
    """``SlackApiError`` resolved when first asked for (PEP 562)."""
    if name == "SlackApiError":
        return slack_errors.SlackApiError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SlackApiError", "make_client", "signature_problem"]


def make_client(settings: Settings, *, quick: bool = False) -> Any:
    """A WebClient that honours ``RUNBOOK_SLACK_API_URL`` and retries 429 (Retry-After) and 5xx once.

    ``quick``: no retries and a short timeout, for calls made while Slack waits for our 3 s ack."""
    kwargs: dict[str, Any] = {}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    retries = (
        []
        if quick
        else [
            slack_retry.RateLimitErrorRetryHandler(max_retry_count=3),
            slack_retry.ServerErrorRetryHandler(max_retry_count=1),
        ]
    )
    return slack_sdk.WebClient(
        token=settings.slack_bot_token, timeout=2 if quick else 5, retry_handlers=retries, **kwargs
    )



def signature_problem(secret: str | None, body: bytes, headers: Mapping[str, str]) -> str | None:
    """None when the request is Slack's (v0 signature over the raw body, timestamp within 5 minutes);
    else why not, never echoing secrets or signatures."""
    if not secret:
        return "no signing secret configured (RUNBOOK_SLACK_SIGNING_SECRET)"
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        return "unsigned request"
    try:
        verifier = slack_signature.SignatureVerifier(secret)
        ok = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError):
        ok = False
    return None if ok else "bad or stale signature"
