"""PagerDuty and Slack, as they would call the gateway: a signed V3 webhook, signed button clicks."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

from runbook_devtools.demo.scene import (
    APPROVER,
    APPROVER_SLACK_ID,
    PAGERDUTY_SECRET,
    SLACK_SECRET,
    SLACK_TEAM,
)
from runbook_devtools.signing import pagerduty_headers, slack_headers


def pagerduty_webhook(incident_id: str, title: str) -> tuple[bytes, dict[str, str]]:
    """A V3 ``incident.triggered`` delivery, signed as PagerDuty signs it (HMAC-SHA256, ``v1=``)."""
    payload = {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": "incident.triggered",
            "resource_type": "incident",
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "agent": {
                "id": "PDEMOAG",
                "summary": "RabbitMQ queue depth monitor",
                "type": "service_reference",
            },
            "client": {"name": "Monitoring"},
            "data": {
                "id": incident_id,
                "type": "incident",
                "number": int(time.time()) % 100000,
                "status": "triggered",
                "title": title,
                "urgency": "high",
                "html_url": f"https://demo.pagerduty.com/incidents/{incident_id}",
                "service": {"id": "PDEMOSV", "summary": "queue-platform", "type": "service_reference"},
                "escalation_policy": {
                    "id": "PDEMOEP",
                    "summary": "Queue on-call",
                    "type": "escalation_policy_reference",
                },
                "assignees": [{"id": "PDEMOUS", "summary": "Demo On-call", "type": "user_reference"}],
                "teams": [],
            },
        }
    }
    body = json.dumps(payload).encode()
    return body, pagerduty_headers(body, PAGERDUTY_SECRET)


def slack_click(
    request_id: int, plan_hash: str, *, approve: bool, reason: str
) -> tuple[bytes, dict[str, str]]:
    """An Approve/Deny ``block_actions`` interaction, signed as Slack signs it (v0)."""
    from runbook.slack.blocks import REASON_ACTION, REASON_BLOCK, ApprovalAction

    action = ApprovalAction.APPROVE if approve else ApprovalAction.DENY
    payload = {
        "type": "block_actions",
        "user": {"id": APPROVER_SLACK_ID, "username": APPROVER, "name": APPROVER, "team_id": SLACK_TEAM},
        "team": {"id": SLACK_TEAM, "domain": "demo"},
        "container": {"type": "message", "channel_id": "CDEMOINC"},
        "channel": {"id": "CDEMOINC"},
        "state": {"values": {REASON_BLOCK: {REASON_ACTION: {"type": "plain_text_input", "value": reason}}}},
        "actions": [{"action_id": action.value, "value": f"{request_id}:{plan_hash}", "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, slack_headers(body, SLACK_SECRET)
