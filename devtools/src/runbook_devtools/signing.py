"""Sign requests the way PagerDuty and Slack sign them, for tests, benchmarks and ``make demo``.

Written from the vendors' documentation, independently of the gateway's verification code
(:mod:`runbook.gateway.pagerduty_events`, :mod:`runbook.slack.client`), so a test signed here checks
the gateway against the documented format rather than against itself.

* PagerDuty webhooks V3 ("Verifying Signatures"): ``X-PagerDuty-Signature`` is a comma-separated list
  of ``v1=<hex HMAC-SHA256 of the raw body>``, one per active signing secret (rotation).
* Slack ("Verifying requests from Slack"): ``X-Slack-Signature: v0=<hex HMAC-SHA256 of
  "v0:<timestamp>:<raw body>">`` with ``X-Slack-Request-Timestamp: <timestamp>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def pagerduty_signature(body: bytes, *secrets: str) -> str:
    """``X-PagerDuty-Signature``: one ``v1=`` value per signing secret, comma separated."""
    return ",".join("v1=" + _hmac_hex(s, body) for s in secrets)


def pagerduty_headers(
    body: bytes, *secrets: str, webhook_id: str | None = None, subscription: str | None = None
) -> dict[str, str]:
    """The headers of a V3 webhook delivery (JSON body, signed with every one of ``secrets``)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
    }
    if subscription is not None:
        headers["X-Webhook-Subscription"] = subscription
    headers["X-PagerDuty-Signature"] = pagerduty_signature(body, *secrets)
    return headers


def slack_signature(body: bytes, secret: str, timestamp: int | str) -> str:
    """``X-Slack-Signature`` of ``body`` sent at ``timestamp`` (Unix seconds)."""
    return "v0=" + _hmac_hex(secret, b"v0:" + str(timestamp).encode() + b":" + body)


def slack_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers of a signed Slack interaction (form-encoded ``payload=``), stamped now by default."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": slack_signature(body, secret, stamp),
        "Content-Type": "application/x-www-form-urlencoded",
    }
