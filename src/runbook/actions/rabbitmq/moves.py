"""Moving messages between queues without ever losing one: the engine of ``rabbitmq.move_messages``.

Two methods, both *confirm-before-ack* (a source message is acknowledged only after the broker
confirmed its copy in the destination, so a crash at any instant leaves every message in the source,
the destination, or both):

* :func:`shovel_move` drives the shovel plugin (``PUT /api/parameters/shovel/...`` with
  ``ack-mode: on-confirm`` and ``src-delete-after: queue-length``). The broker moves the messages
  itself, so it is the fastest way to move a whole queue and it keeps going if we die.
* :class:`ClientMover` is an asynchronous (select-connection) AMQP client for the cases a shovel
  cannot do: the first N messages (canary) and header-filtered moves. It publishes with publisher
  confirms and keeps at most ``batch_size`` messages unconfirmed ("one in-flight batch"): that
  bounds the duplicates a crash can leave. Non-matching messages are held unacknowledged and
  released by closing the channel at the end, which requeues them at their original positions
  (classic queues), so the source keeps its order. Messages are published with ``mandatory`` so one
  that cannot be routed (destination deleted mid-move) comes back as a return and its source copy
  is never acknowledged.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.actions.context import ActionError, BackendUnavailable
from runbook.actions.rabbitmq.client import (
    BACKEND,
    AMQPError,
    Basic,
    BasicProperties,
    ConnectionParameters,
    ManagementClient,
    SelectConnection,
    q,
)
from runbook.core.redact import redact

Matcher = Callable[[BasicProperties], bool]
MAX_PREFETCH = 65535  # basic.qos prefetch-count is a 16-bit field


@dataclass
class MoveOutcome:
    """What a move did. ``moved`` counts source messages acknowledged after a confirm."""

    moved: int = 0
    scanned: int = 0
    skipped: int = 0
    confirmed_batches: int = 0
    stopped: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def header_matcher(match_headers: dict[str, str]) -> Matcher:
    """A predicate true when every ``key: value`` is present in the message headers.

    Values are compared as text (bytes decoded as UTF-8, numbers by ``str``), because the playbook
    writes them as strings while publishers send whatever AMQP type their client picked.
    """

    def text(value: Any) -> str:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def match(props: BasicProperties) -> bool:
        headers = props.headers or {}
        return all(key in headers and text(headers[key]) == want for key, want in match_headers.items())

    return match


@dataclass(eq=False)
class _Segment:
    """One consuming channel. Held (non-matching) messages stay unacknowledged on it until the end."""

    ch: Any
    tag: str | None = None
    held: int = 0
    pending: int = 0
    prefetch: int = 0
    cancelling: bool = False
    cancelled: bool = False


class ClientMover:
    """Moves messages from ``source`` to ``destination`` with batched publisher confirms.

    Scope is fixed at start: only the ``initial`` ready messages counted by a passive declare are
    considered (messages published during the move stay for a later run), up to ``limit`` moved.

    Publishes go out on one confirm-mode channel; deliveries come in on consuming channels
    ("segments"). A segment holds at most ``hold_limit`` non-matching messages: the broker acks a
    delivery by walking the channel's unacknowledged list from its oldest entry, so one channel
    holding every skipped message would make each ack cost O(skipped), quadratic over a large DLQ.
    When a segment is full its consumer is cancelled and, once the cancel is confirmed (which the
    broker sends after every earlier delivery) and its copies are confirmed, the next segment starts
    consuming: deliveries stay in queue order and at most one batch is ever unconfirmed.
    """

    def __init__(
        self,
        params: ConnectionParameters,
        source: str,
        destination: str,
        *,
        limit: int | None = None,
        matcher: Matcher | None = None,
        batch_size: int = 500,
        deadline: float | None = None,
        idle_timeout: float = 3.0,
        max_channels: int = 1000,
        linger: float = 0.0,
        global_qos: bool = True,
    ) -> None:
        self.params = params
        self.source = source
        self.destination = destination
        self.limit = limit
        self.matcher = matcher
        self.batch_size = max(1, batch_size)
        self.deadline = deadline if deadline is not None else time.monotonic() + 3600
        self.idle_timeout = idle_timeout
        self.max_channels = max_channels
        # after the messages present at start, keep taking deliveries this long while the limit is
        # not reached: a message in flight with another consumer (a requeue loop) arrives only then
        self.linger = linger
        # quorum queues refuse global qos: a per-consumer window sized for every held message instead
        self.global_qos = global_qos
        self._linger_until: float | None = None
        self.hold_limit = 1000
        self.outcome = MoveOutcome()
        self.error: Exception | None = None
        self._conn: SelectConnection | None = None
        self._pub: Any = None
        self._segments: list[_Segment] = []
        self._initial = 0
        self._seq = 0
        self._pending: dict[int, tuple[_Segment, int]] = {}  # publish seq -> (segment, delivery tag)
        self._order: deque[int] = deque()
        self._scan_done = False
        self._closing = False
        self._returned = False
        self._last_activity = time.monotonic()
        self._started = time.monotonic()

    # -- driving -----------------------------------------------------------------------------
    def run(self) -> MoveOutcome:
        """Run the move to completion (or deadline) and return its outcome; raises on failure."""
        self._started = time.monotonic()
        try:
            self._conn = SelectConnection(
                self.params,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_conn_closed,
            )
        except (AMQPError, OSError) as exc:
            raise BackendUnavailable(redact(f"AMQP unreachable: {exc!r}"), backend=BACKEND) from None
        self._conn.ioloop.start()
        self.outcome.seconds = time.monotonic() - self._started
        if self.error is not None:
            raise self.error
        return self.outcome

    def _on_open(self, conn: SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_pub_channel)
        conn.ioloop.call_later(0.2, self._watchdog)

    def _on_open_error(self, conn: SelectConnection, exc: BaseException) -> None:
        self.error = BackendUnavailable(redact(f"AMQP unreachable: {exc!r}"), backend=BACKEND)
        conn.ioloop.stop()

    def _on_conn_closed(self, conn: SelectConnection, reason: BaseException) -> None:
        if not self._closing and self.error is None:
            self.error = BackendUnavailable(
                redact(f"AMQP connection lost mid-move: {reason!r}"), backend=BACKEND
            )
        conn.ioloop.stop()

    def _on_channel_closed(self, ch: Any, reason: BaseException) -> None:
        if not self._closing and self.error is None:
            self.error = ActionError(
                redact(f"channel closed by the broker mid-move: {reason}"), backend=BACKEND
            )
        self._close()

    def _on_pub_channel(self, ch: Any) -> None:
        self._pub = ch
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(self._on_return)
        ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._pub.queue_declare(self.destination, passive=True, callback=self._on_dest_ok)

    def _on_dest_ok(self, _frame: Any) -> None:
        self._pub.queue_declare(self.source, passive=True, callback=self._on_source_ok)

    def _on_source_ok(self, frame: Any) -> None:
        self._initial = frame.method.message_count
        self.hold_limit = max(1000, self._initial // 500)
        if self._initial == 0 and self.linger > 0 and self.limit != 0:
            self._linger_until = time.monotonic() + self.linger
        elif self._initial == 0 or self.limit == 0:
            self._scan_done = True
            self.outcome.stopped = "source empty" if self._initial == 0 else "limit 0"
            self._maybe_finish()
            return
        self._new_segment()

    # -- segments ----------------------------------------------------------------------------
    def _new_segment(self) -> None:
        if len(self._segments) >= self.max_channels:
            self.outcome.warnings.append(
                f"stopped after holding {self.outcome.skipped} non-matching messages on"
                f" {len(self._segments)} channels; re-run to continue"
            )
            self._end_scan("too many non-matching messages held")
            return
        assert self._conn is not None
        self._conn.channel(on_open_callback=self._on_segment_channel)

    def _on_segment_channel(self, ch: Any) -> None:
        wide = min(MAX_PREFETCH, self.hold_limit + self.batch_size)
        seg = _Segment(ch=ch, prefetch=self.batch_size if self.global_qos else wide)
        self._segments.append(seg)
        ch.add_on_close_callback(self._on_channel_closed)
        if self._scan_done:
            return

        def consume(_frame: Any) -> None:
            if not self._scan_done:
                seg.tag = ch.basic_consume(
                    self.source, lambda _c, m, p, b: self._on_message(seg, m, p, b), auto_ack=False
                )

        # Channel-wide (global) qos: the only kind a running consumer picks up when it changes.
        ch.basic_qos(prefetch_count=seg.prefetch, global_qos=self.global_qos, callback=consume)

    def _on_segment_cancelled(self, seg: _Segment) -> None:
        seg.cancelled = True
        self._maybe_next_segment()

    def _maybe_next_segment(self) -> None:
        seg = self._segments[-1] if self._segments else None
        if seg and seg.cancelled and seg.pending == 0 and not self._scan_done:
            seg.cancelled = False  # start exactly one successor
            self._new_segment()

    # -- the move ------------------------------------------------------------------------------
    def _on_message(self, seg: _Segment, method: Basic.Deliver, props: BasicProperties, body: bytes) -> None:
        self._last_activity = time.monotonic()
        if self._scan_done:
            return  # beyond scope: left unacknowledged, requeued in place when the channel closes
        self.outcome.scanned += 1
        if self.matcher is None or self.matcher(props):
            self._seq += 1
            self._pending[self._seq] = (seg, method.delivery_tag)
            self._order.append(self._seq)
            seg.pending += 1
            self._pub.basic_publish("", self.destination, body, properties=props, mandatory=True)
            if self.limit is not None and self.outcome.moved + len(self._pending) >= self.limit:
                self._end_scan("limit reached")
        else:
            self.outcome.skipped += 1
            seg.held += 1
            if seg.held >= self.hold_limit and not seg.cancelling:
                seg.cancelling = True
                seg.ch.basic_cancel(seg.tag, callback=lambda _f: self._on_segment_cancelled(seg))
                # The broker sends cancel-ok after every delivery it made to this consumer, so those
                # late deliveries are still part of the ordered scan. pika would reject (requeue)
                # them as "cancelled", which lets them come back after the next segment's messages
                # and reorders the destination: keep them flowing to our callback until cancel-ok.
                cancelled = getattr(seg.ch, "_cancelled", None)
                if isinstance(cancelled, set):
                    cancelled.discard(seg.tag)
            elif self.global_qos and seg.held + self.batch_size > seg.prefetch + self.batch_size // 4:
                # Held messages count against the window: widen it so undecided + unconfirmed
                # messages stay within one batch.
                seg.prefetch = min(MAX_PREFETCH, seg.held + self.batch_size)
                seg.ch.basic_qos(prefetch_count=seg.prefetch, global_qos=True)
        if self.outcome.scanned >= self._initial and self._linger_until is None:
            if self.linger > 0 and not self._scan_done:
                self._linger_until = time.monotonic() + self.linger
            else:
                self._end_scan("scanned every message present at start")

    def _end_scan(self, why: str) -> None:
        if self._scan_done:
            return
        self._scan_done = True
        self.outcome.stopped = why
        for seg in self._segments:
            if seg.tag is not None and not seg.cancelling and seg.ch.is_open:
                seg.cancelling = True
                seg.ch.basic_cancel(seg.tag)
        self._maybe_finish()

    def _on_return(self, ch: Any, method: Any, props: BasicProperties, body: bytes) -> None:
        # A return precedes the confirm of the same message, so every confirm that arrives from now
        # on may be for an unroutable copy: stop acknowledging the source at all.
        if not self._returned:
            self._returned = True
            self.error = ActionError(
                f"destination {self.destination!r} did not accept a message ({method.reply_text});"
                " move stopped, unconfirmed messages stay in the source",
                backend=BACKEND,
            )
            self._end_scan("message returned unroutable")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ack = isinstance(method, Basic.Ack)
        tag = method.delivery_tag
        if method.multiple:
            seqs = []
            while self._order and self._order[0] <= tag:
                seqs.append(self._order.popleft())
        else:
            seqs = [tag]
        for seq in seqs:
            entry = self._pending.pop(seq, None)
            if entry is None:
                continue
            seg, source_tag = entry
            seg.pending -= 1
            if ack and not self._returned and seg.ch.is_open:
                # multiple=False: held (non-matching) messages sit between these tags.
                seg.ch.basic_ack(source_tag)
                self.outcome.moved += 1
        if not ack and self.error is None:
            self.error = ActionError(
                f"broker refused (nack) a publish to {self.destination!r}; move stopped, the message"
                " stays in the source",
                backend=BACKEND,
            )
            self._end_scan("publish nacked")
        self.outcome.confirmed_batches += 1
        self._maybe_next_segment()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._scan_done and not self._pending and not self._closing:
            self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # Closing the connection closes every channel: the broker requeues each held and
        # beyond-scope message at its original position.
        if self._conn is not None and self._conn.is_open:
            self._conn.close()
        elif self._conn is not None:
            self._conn.ioloop.stop()

    def _watchdog(self) -> None:
        if self._closing:
            return
        now = time.monotonic()
        if not self._scan_done:
            if self._linger_until is not None and now >= min(self._linger_until, self.deadline):
                self._end_scan("scanned every message present at start and waited for in-flight ones")
            elif now >= self.deadline:
                self.outcome.warnings.append("stopped at the step's time budget before scanning everything")
                self._end_scan("time budget reached")
            elif now - self._last_activity > self.idle_timeout and not self._pending and self._segments:
                self._end_scan("no more messages arrived (others may be consuming the source)")
        elif self._pending and now >= self.deadline + 10:
            # Confirms never came: give up; unacknowledged source copies requeue when we close.
            self.outcome.warnings.append(
                f"{len(self._pending)} publishes unconfirmed at close; kept in source"
            )
            self._pending.clear()
            self._close()
            return
        if self._conn is not None and not self._closing:
            self._conn.ioloop.call_later(0.2, self._watchdog)


@dataclass
class ShovelOutcome:
    name: str
    moved: int
    seconds: float
    states: list[str]


def shovel_uri(vhost: str) -> str:
    """A direct (in-broker) connection URI for ``vhost``: ``amqp:///%2F`` for the default one."""
    return "amqp:///" + q(vhost)


def shovel_move(
    mgmt: ManagementClient,
    vhost: str,
    source: str,
    destination: str,
    *,
    expected: int,
    deadline: float,
    name: str | None = None,
    prefetch: int = 1000,
) -> ShovelOutcome:
    """Move every message the source holds at start with a dynamic shovel and wait until it is gone.

    ``src-delete-after: queue-length`` makes the shovel move exactly the messages present when it
    starts and then delete itself; ``ack-mode: on-confirm`` makes it acknowledge the source only
    after the destination confirmed. ``expected`` (the ready count read just before) is reported as
    moved. If the deadline passes first the shovel is deleted (its unconfirmed messages requeue) and
    an :class:`ActionError` is raised.
    """
    name = name or f"runbook-move-{uuid.uuid4().hex[:12]}"
    path = f"/api/parameters/shovel/{q(vhost)}/{q(name)}"
    value = {
        "src-protocol": "amqp091",
        "src-uri": shovel_uri(vhost),
        "src-queue": source,
        "src-prefetch-count": prefetch,
        "src-delete-after": "queue-length",
        "dest-protocol": "amqp091",
        "dest-uri": shovel_uri(vhost),
        "dest-queue": destination,
        "ack-mode": "on-confirm",
    }
    started = time.monotonic()
    remaining = max(1.0, deadline - started)
    mgmt.request(
        "PUT",
        path,
        timeout=remaining,
        json={"value": value},
        not_found="shovel plugin is not enabled"
        " (rabbitmq-plugins enable rabbitmq_shovel rabbitmq_shovel_management)",
    )
    states: list[str] = []
    while True:
        now = time.monotonic()
        try:
            mgmt.get(path, timeout=max(1.0, deadline - now), not_found="gone")
        except ActionError as exc:
            if str(exc).endswith("gone"):
                return ShovelOutcome(
                    name=name, moved=expected, seconds=time.monotonic() - started, states=states
                )
            raise
        status = _shovel_status(mgmt, vhost, name, max(1.0, deadline - now))
        if status and (not states or states[-1] != status.get("state")):
            states.append(str(status.get("state")))
        if status and status.get("state") == "terminated" and status.get("reason") not in (None, "normal"):
            _delete_shovel(mgmt, path)
            raise ActionError(redact(f"shovel {name} failed: {status.get('reason')}"), backend=BACKEND)
        if now >= deadline:
            _delete_shovel(mgmt, path)
            raise ActionError(
                f"shovel {name} did not finish within the step's time budget; it was deleted (unconfirmed"
                " messages stay in the source); re-run to move the rest",
                backend=BACKEND,
            )
        time.sleep(0.05 if now - started < 1 else 0.2)


def shovel_enabled(mgmt: ManagementClient, timeout: float) -> bool:
    """Whether a running node has the shovel plugin (``enabled_plugins`` of ``/api/nodes``)."""
    nodes = mgmt.get("/api/nodes", timeout=timeout, params={"columns": "name,running,enabled_plugins"}) or []
    return any(n.get("running") and "rabbitmq_shovel" in (n.get("enabled_plugins") or []) for n in nodes)


def _shovel_status(mgmt: ManagementClient, vhost: str, name: str, timeout: float) -> dict[str, Any] | None:
    try:  # /api/shovels needs rabbitmq_shovel_management; without it we only watch the parameter
        rows = mgmt.get(f"/api/shovels/{q(vhost)}", timeout=timeout, not_found="no shovel status") or []
    except ActionError:
        return None
    for row in rows:
        if row.get("name") == name:
            status: dict[str, Any] = row
            return status
    return None


def _delete_shovel(mgmt: ManagementClient, path: str) -> None:
    try:
        mgmt.request("DELETE", path, timeout=10, not_found="gone")
    except ActionError:
        pass
