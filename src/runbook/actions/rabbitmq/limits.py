"""A queue's configured limits and the policies that set them: the body of ``rabbitmq.queue_config``.

Why: "queue full" is a question about configuration as much as about traffic. A queue's length
limit can come from its declaration arguments (``x-max-length``), a user policy (``max-length``) or
an operator policy, and the broker applies the smaller of a policy's and an operator policy's
value. The evidence must say which limit holds and where it comes from, not only how deep it is.
Reads the management API only; never touches a message.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext
from runbook.actions.rabbitmq.client import management, q
from runbook.actions.registry import ActionResult

# Limit keys as policies spell them; declaration arguments carry the same names with ``x-``.
LIMIT_KEYS = (
    "max-length",
    "max-length-bytes",
    "overflow",
    "message-ttl",
    "expires",
    "delivery-limit",
    "max-priority",
    "queue-mode",
    "dead-letter-exchange",
    "dead-letter-routing-key",
)
NUMERIC_MIN = {"max-length", "max-length-bytes", "message-ttl", "expires", "delivery-limit"}


class QueueConfigParams(BaseModel):
    model_config = {"extra": "forbid"}

    queue: str = Field(min_length=1, description="queue name")
    vhost: str = Field("/", description="virtual host")


class PolicyRow(BaseModel):
    name: str
    kind: str = Field(description="policy or operator_policy")
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]
    applied: bool = Field(description="the broker reports this policy as the one in effect")


class QueueConfigResult(ActionResult):
    queue: str
    vhost: str
    type: str
    durable: bool
    arguments: dict[str, Any] = Field(description="declaration arguments (x-...)")
    policy: str | None
    operator_policy: str | None
    effective: dict[str, Any] = Field(description="limit settings in force and where each comes from")
    max_length: int | None
    max_length_bytes: int | None
    overflow: str
    messages: int
    message_bytes: int
    fill_ratio: float | None = Field(description="messages / max_length (or bytes / max_length_bytes)")
    consumers: int
    matching_policies: list[PolicyRow]


def _effective(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each limit in force, with its value and source (argument, policy name, operator policy)."""
    args = doc.get("arguments") or {}
    policy = doc.get("effective_policy_definition") or {}
    op_name = doc.get("operator_policy")
    out: dict[str, dict[str, Any]] = {}
    for key in LIMIT_KEYS:
        candidates: list[tuple[Any, str]] = []
        if f"x-{key}" in args:
            candidates.append((args[f"x-{key}"], "argument"))
        if key in policy:
            # effective_policy_definition merges the policy and the operator policy; name both
            source = f"policy {doc.get('policy')}" if doc.get("policy") else f"operator policy {op_name}"
            candidates.append((policy[key], source))
        if not candidates:
            continue
        if key in NUMERIC_MIN and all(isinstance(v, int | float) for v, _ in candidates):
            value, source = min(candidates, key=lambda c: c[0])  # both set: the broker applies the smaller
        else:
            value, source = candidates[0]  # a declaration argument takes precedence over a policy
        out[key] = {"value": value, "source": source}
    return out


def _policies(
    doc: dict[str, Any], rows: list[dict[str, Any]], kind: str, applied: str | None
) -> list[PolicyRow]:
    name = str(doc.get("name") or "")
    found: list[PolicyRow] = []
    for p in rows:
        apply_to = str(p.get("apply-to") or "all")
        if apply_to not in ("all", "queues", "classic_queues", "quorum_queues", "streams"):
            continue
        try:
            matches = re.search(str(p.get("pattern") or ""), name) is not None
        except re.error:
            matches = False
        if matches:
            found.append(
                PolicyRow(
                    name=str(p.get("name")),
                    kind=kind,
                    pattern=str(p.get("pattern")),
                    apply_to=apply_to,
                    priority=int(p.get("priority") or 0),
                    definition=dict(p.get("definition") or {}),
                    applied=p.get("name") == applied,
                )
            )
    return sorted(found, key=lambda r: (-r.priority, r.name))


def queue_config(ctx: ActionContext, params: QueueConfigParams) -> QueueConfigResult:
    """The queue's arguments, the policies matching it and the limits in force (see the action)."""
    mgmt = management(ctx)
    doc = mgmt.queue(params.vhost, params.queue, timeout=ctx.remaining())
    vh = q(params.vhost)
    policies = mgmt.get(f"/api/policies/{vh}", timeout=ctx.remaining()) or []
    operator = mgmt.get(f"/api/operator-policies/{vh}", timeout=ctx.remaining()) or []
    effective = _effective(doc)

    def number(key: str) -> int | None:
        v = effective.get(key, {}).get("value")
        return int(v) if isinstance(v, int | float) else None

    max_len, max_bytes = number("max-length"), number("max-length-bytes")
    messages, size = int(doc.get("messages") or 0), int(doc.get("message_bytes") or 0)
    ratios = [messages / max_len if max_len else None, size / max_bytes if max_bytes else None]
    known = [r for r in ratios if r is not None]
    fill = round(max(known), 4) if known else None
    overflow = str(effective.get("overflow", {}).get("value") or "drop-head")
    limit = (
        f"max-length {max_len} ({effective['max-length']['source']})"
        if max_len is not None
        else "no max-length"
    )
    summary = f"{params.queue}: {messages} messages, {limit}, overflow {overflow}"
    if max_bytes is not None:
        summary += f", max-length-bytes {max_bytes}"
    if fill is not None:
        summary += f", {fill:.0%} full"
    return QueueConfigResult(
        summary=summary,
        queue=params.queue,
        vhost=params.vhost,
        type=str(doc.get("type") or "classic"),
        durable=bool(doc.get("durable")),
        arguments=dict(doc.get("arguments") or {}),
        policy=doc.get("policy") or None,
        operator_policy=doc.get("operator_policy") or None,
        effective=effective,
        max_length=max_len,
        max_length_bytes=max_bytes,
        overflow=overflow,
        messages=messages,
        message_bytes=size,
        fill_ratio=fill,
        consumers=int(doc.get("consumers") or 0),
        matching_policies=_policies(doc, policies, "policy", doc.get("policy"))
        + _policies(doc, operator, "operator_policy", doc.get("operator_policy")),
    )
