"""Pure helpers behind the read-only ``rabbitmq.*`` actions: turning management API documents into
the flat findings a playbook branches on (progress verdicts, DLQ detection, node problems, peeked
message metadata, connection filters). Kept free of I/O so each rule is easy to read and test.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runbook.core.redact import redact, redact_data

DLQ_NAME = re.compile(
    r"(?i)(^|[._:-])(dlq|dlx|dl|dead[._-]?letter(s|ed)?|deadletter|parking[._-]?lot|error)($|[._:-])"
)
SENSITIVE_HEADER = re.compile(
    r"(?i)(auth|token|secret|password|passwd|cookie|api[_-]?key|credential|signature)"
)
MAX_HEADER_TEXT = 200
FD_WARN_RATIO = 0.9


def rate(stats: dict[str, Any] | None, key: str) -> float:
    """``message_stats.<key>_details.rate`` (msg/s, smoothed over 5 s samples), 0 when absent."""
    details = (stats or {}).get(f"{key}_details") or {}
    return round(float(details.get("rate") or 0.0), 3)


def total(stats: dict[str, Any] | None, key: str) -> int:
    """``message_stats.<key>``: the monotonic counter since the queue was created."""
    return int((stats or {}).get(key) or 0)


def parse_time(value: str | None) -> datetime | None:
    """Management API times (``2026-11-23T10:00:00.000+00:00`` or ``2026-11-23 10:00:00``)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dlq_reason(queue: dict[str, Any], dead_letter_targets: set[str]) -> str | None:
    """Why ``queue`` looks like a dead-letter queue, or ``None``.

    A queue is a DLQ when another queue (or policy) dead-letters into it by routing key, or when its
    name says so (``plans-dlq``, ``orders.dead-letter``, ``x.parking-lot`` ...).
    """
    name = queue.get("name", "")
    if name in dead_letter_targets:
        return "target of x-dead-letter-routing-key"
    if DLQ_NAME.search(name):
        return "name"
    return None


def dead_letter_targets(queues: list[dict[str, Any]], policies: list[dict[str, Any]]) -> set[str]:
    """Queue names that other queues dead-letter into by routing key (arguments or policies)."""
    found: set[str] = set()
    for queue in queues:
        key = (queue.get("arguments") or {}).get("x-dead-letter-routing-key")
        if key:
            found.add(str(key))
        effective = queue.get("effective_policy_definition") or {}
        if effective.get("dead-letter-routing-key"):
            found.add(str(effective["dead-letter-routing-key"]))
    for policy in policies:
        key = (policy.get("definition") or {}).get("dead-letter-routing-key")
        if key:
            found.add(str(key))
    return found


@dataclass
class Sample:
    """One read of a queue's counters."""

    at: float
    messages: int
    ready: int
    unacked: int
    consumers: int
    published: int
    delivered: int
    acked: int
    redelivered: int
    deliver_rate: float
    ack_rate: float
    redeliver_rate: float

    @classmethod
    def from_queue(cls, doc: dict[str, Any], at: float) -> Sample:
        stats = doc.get("message_stats") or {}
        return cls(
            at=at,
            messages=int(doc.get("messages") or 0),
            ready=int(doc.get("messages_ready") or 0),
            unacked=int(doc.get("messages_unacknowledged") or 0),
            consumers=int(doc.get("consumers") or 0),
            published=total(stats, "publish"),
            delivered=total(stats, "deliver_get"),
            acked=total(stats, "ack") + total(stats, "deliver_no_ack") + total(stats, "get_no_ack"),
            redelivered=total(stats, "redeliver"),
            deliver_rate=rate(stats, "deliver_get"),
            ack_rate=rate(stats, "ack"),
            redeliver_rate=rate(stats, "redeliver"),
        )


def progress_verdict(first: Sample, second: Sample) -> tuple[str, list[str]]:
    """Classify what a queue did between two samples, with the evidence for it.

    Counters (not rates) decide, because rates are smoothed 5 s samples:
    * ``idle``: nothing waiting and nothing flowing;
    * ``draining``: completions (acks) happened and the backlog shrank;
    * ``progressing``: completions happened but the backlog did not shrink (keeping up or behind);
    * ``stalled``: work is waiting but nothing completed (no consumers, stuck consumers, or a
      redelivery loop of poison messages).
    """
    seconds = max(0.001, second.at - first.at)
    acked = second.acked - first.acked
    delivered = second.delivered - first.delivered
    redelivered = second.redelivered - first.redelivered
    published = second.published - first.published
    depth_change = second.messages - first.messages
    evidence = [
        f"depth {first.messages} -> {second.messages} ({depth_change:+d}) over {seconds:.0f}s",
        f"completed (acked) {acked}, delivered {delivered}, redelivered {redelivered}, published {published}",
        f"consumers {second.consumers}, unacked {second.unacked}",
    ]
    if second.messages == 0 and first.messages == 0 and acked == 0 and delivered == 0 and published == 0:
        return "idle", evidence + ["no messages and no traffic"]
    if acked > 0 and depth_change < 0:
        rate_ = -depth_change / seconds
        eta = second.messages / rate_ if rate_ > 0 else None
        if eta is not None:
            evidence.append(f"backlog shrinking {rate_:.1f} msg/s; empty in ~{eta:.0f}s at this pace")
        return "draining", evidence
    if acked > 0:
        if depth_change > 0:
            evidence.append(
                f"backlog growing {depth_change / seconds:.1f} msg/s: consumers are falling behind"
            )
        return "progressing", evidence
    if second.messages == 0:
        # Nothing waiting; publishes went straight through to no-ack consumers or nothing happened.
        return ("progressing" if delivered > 0 else "idle"), evidence
    if redelivered > 0 and redelivered >= delivered * 0.5:
        evidence.append("deliveries are mostly redeliveries: consumers reject/crash on the same messages")
    elif second.consumers == 0:
        evidence.append("no consumers attached")
    elif second.unacked > 0:
        evidence.append("consumers hold unacknowledged messages and complete none (stuck or slow handlers)")
    else:
        evidence.append(
            "consumers attached but nothing was delivered (blocked channel, zero prefetch, or paused)"
        )
    return "stalled", evidence


def node_problems(node: dict[str, Any]) -> list[str]:
    """Everything wrong with one ``/api/nodes`` entry, as one sentence each."""
    name = node.get("name", "?")
    if not node.get("running"):
        return [f"{name} is not running"]
    problems = []
    if node.get("mem_alarm"):
        problems.append(f"{name} memory alarm: {node.get('mem_used')} of limit {node.get('mem_limit')} bytes")
    if node.get("disk_free_alarm"):
        problems.append(
            f"{name} disk alarm: {node.get('disk_free')} bytes free, limit {node.get('disk_free_limit')}"
        )
    if node.get("partitions"):
        problems.append(f"{name} network partition with {', '.join(map(str, node['partitions']))}")
    fd_used, fd_total = node.get("fd_used"), node.get("fd_total")
    if (
        isinstance(fd_used, int)
        and isinstance(fd_total, int)
        and fd_total
        and fd_used >= fd_total * FD_WARN_RATIO
    ):
        problems.append(f"{name} file descriptors {fd_used}/{fd_total} (>= {FD_WARN_RATIO:.0%})")
    return problems


def _header_text(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > MAX_HEADER_TEXT:
        return value[:MAX_HEADER_TEXT] + f"...({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _header_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_header_text(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def safe_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """Headers fit for a timeline: sensitive-looking values masked, long values cut, secrets redacted."""
    out: dict[str, Any] = {}
    for key, value in (headers or {}).items():
        out[key] = "***" if SENSITIVE_HEADER.search(key) else _header_text(value)
    redacted: dict[str, Any] = redact_data(out)  # same shape as its argument
    return redacted


def death_summary(headers: dict[str, Any] | None) -> tuple[int, list[dict[str, Any]]]:
    """Total ``x-death`` count and one row per (queue, reason) the message died in."""
    rows = []
    count = 0
    for entry in (headers or {}).get("x-death") or []:
        if not isinstance(entry, dict):
            continue
        n = int(entry.get("count") or 0)
        count += n
        rows.append(
            {
                "queue": _header_text(entry.get("queue")),
                "reason": _header_text(entry.get("reason")),
                "count": n,
                "exchange": _header_text(entry.get("exchange")),
            }
        )
    return count, rows


def peeked_message(position: int, doc: dict[str, Any]) -> dict[str, Any]:
    """Metadata of one message from the management ``get`` answer; the body is dropped here."""
    props = doc.get("properties") or {}
    headers = props.get("headers") or {}
    deaths, death_rows = death_summary(headers)
    timestamp = props.get("timestamp")
    return {
        "position": position,
        "message_id": props.get("message_id"),
        "correlation_id": props.get("correlation_id"),
        "type": props.get("type"),
        "app_id": props.get("app_id"),
        "content_type": props.get("content_type"),
        "delivery_mode": props.get("delivery_mode"),
        "timestamp": datetime.fromtimestamp(timestamp, UTC).isoformat()
        if isinstance(timestamp, int)
        else None,
        "size": int(doc.get("payload_bytes") or 0),
        "exchange": doc.get("exchange"),
        "routing_key": redact(str(doc.get("routing_key") or "")),
        "redelivered": bool(doc.get("redelivered")),
        "headers": safe_headers({k: v for k, v in headers.items() if k != "x-death"}),
        "death_count": deaths,
        "deaths": death_rows,
        "first_death_reason": _header_text(headers.get("x-first-death-reason")),
    }


def connection_matches(
    conn: dict[str, Any],
    *,
    user: str | None,
    client_name: re.Pattern[str] | None,
    peer_host: str | None,
    idle_seconds: float | None,
    now: datetime,
    channels: list[dict[str, Any]],
) -> tuple[bool, float | None]:
    """Whether a connection passes every given filter, and how long it has been idle (seconds).

    Idle means: no channel did anything for ``idle_seconds`` (each channel's ``idle_since``) and, for a
    connection without channels, it was opened that long ago. A busy channel has no ``idle_since``.
    """
    if user is not None and conn.get("user") != user:
        return False, None
    if client_name is not None:
        name = (conn.get("client_properties") or {}).get("connection_name") or ""
        if not client_name.search(str(name)):
            return False, None
    if peer_host is not None and not _host_matches(str(conn.get("peer_host") or ""), peer_host):
        return False, None
    idle = idle_for(conn, channels, now)
    if idle_seconds is not None and (idle is None or idle < idle_seconds):
        return False, idle
    return True, idle


def idle_for(conn: dict[str, Any], channels: list[dict[str, Any]], now: datetime) -> float | None:
    """Seconds since the connection last did anything (``None`` when a channel is busy)."""
    if channels:
        since = [parse_time(ch.get("idle_since")) for ch in channels]
        if any(s is None for s in since):
            return None
        return min((now - s).total_seconds() for s in since if s is not None)
    connected = conn.get("connected_at")
    if isinstance(connected, int | float):
        return now.timestamp() - connected / 1000.0
    return None


def _host_matches(host: str, want: str) -> bool:
    if "/" in want:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(want, strict=False)
        except ValueError:
            return False
    return host == want
