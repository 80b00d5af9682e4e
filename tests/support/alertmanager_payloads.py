"""Alertmanager webhook notifications (version 4), shaped like Alertmanager 0.25 sends them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

TOKEN = "am-token-5b7f0c2e9d41a6"


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def alert(
    labels: dict[str, str],
    status: str = "firing",
    starts_at: str = "2026-11-30T10:00:00.000Z",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations or {"summary": f"backlog on {labels.get('queue')}"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-30T10:05:00.000Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=x",
        "fingerprint": fingerprint(labels),
    }


def notification(alerts: list[dict[str, Any]], group: dict[str, str] | None = None) -> dict[str, Any]:
    group = group or {"alertname": alerts[0]["labels"].get("alertname", "")}
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return {
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "runbook",
        "groupLabels": group,
        "commonLabels": group,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
