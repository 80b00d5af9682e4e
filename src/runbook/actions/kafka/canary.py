"""The end-to-end canary: produce a marked message (acks=all) and read it back by partition/offset.

Body of ``kafka.canary``. The read-back consumer uses ``assign()`` (no group join, no rebalance of
real consumers, no commits) and is always closed before returning.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.kafka.client import (
    BACKEND,
    KafkaClients,
    KafkaError,
    RoundTrips,
    TopicPartition,
    clients_of,
    metadata,
    partitions_of,
    translate,
)
from runbook.actions.kafka.models import CanaryParams, CanaryResult
from runbook.core.redact import redact

CANARY_HEADER = "runbook-canary-id"


def _failed(
    params: CanaryParams,
    cid: str,
    reason: str,
    partition: int | None = None,
    offset: int | None = None,
    produce_ms: float | None = None,
) -> CanaryResult:
    return CanaryResult(
        summary=f"canary on {params.topic} FAILED: {reason}",
        ok=False,
        topic=params.topic,
        partition=partition,
        offset=offset,
        canary_id=cid,
        produce_ms=produce_ms,
        end_to_end_ms=None,
        error=redact(reason),
    )


def _produce(
    ctx: ActionContext, clients: KafkaClients, params: CanaryParams, cid: str, deadline: float
) -> tuple[dict[str, Any], float]:
    """Produce the marked message and wait for its acknowledgement until ``deadline``.

    Returns ``(acked, sent)``: ``acked`` is empty when no delivery report came in time (the message
    is then purged from the producer's queue), else holds ``err``, ``partition``, ``offset``, ``at``.
    """
    acked: dict[str, Any] = {}

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        acked.update(err=err, partition=msg.partition(), offset=msg.offset(), at=time.monotonic())

    producer = clients.producer()
    headers = [(CANARY_HEADER, cid.encode()), ("runbook-run-id", (ctx.run_id or "-").encode())]
    kwargs: dict[str, Any] = {"key": b"runbook-canary", "headers": headers, "on_delivery": on_delivery}
    if params.partition is not None:
        kwargs["partition"] = params.partition
    sent = time.monotonic()
    try:
        producer.produce(params.topic, value=f'{{"runbook_canary":"{cid}"}}'.encode(), **kwargs)
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, f"produce to {params.topic}", exc) from None
    while not acked and time.monotonic() < deadline:
        producer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
    if not acked:
        producer.purge(in_queue=True, in_flight=False)
        producer.poll(0)  # serves the purge's own delivery report: not an acknowledgement
        return {}, sent
    return acked, sent


def _read_back(
    clients: KafkaClients, params: CanaryParams, cid: str, acked: dict[str, Any], sent: float, deadline: float
) -> CanaryResult:
    """Read the acknowledged message back from its exact partition/offset with a throw-away consumer."""
    partition, offset = acked["partition"], acked["offset"]
    produce_ms = round((acked["at"] - sent) * 1000, 2)
    consumer = clients.consumer(**{"group.id": f"runbook-canary-{cid[:12]}", "fetch.wait.max.ms": 50})
    try:
        consumer.assign([TopicPartition(params.topic, partition, offset)])
        while time.monotonic() < deadline:
            msg = consumer.poll(min(0.25, max(0.01, deadline - time.monotonic())))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                return _failed(params, cid, f"consume failed: {err.str()}", partition, offset, produce_ms)
            if dict(msg.headers() or []).get(CANARY_HEADER) == cid.encode():
                e2e = round((time.monotonic() - sent) * 1000, 2)
                return CanaryResult(
                    summary=f"canary on {params.topic}[{partition}]@{offset}: round trip {e2e} ms "
                    f"(ack {produce_ms} ms)",
                    ok=True,
                    topic=params.topic,
                    partition=partition,
                    offset=offset,
                    canary_id=cid,
                    produce_ms=produce_ms,
                    end_to_end_ms=e2e,
                )
        return _failed(
            params,
            cid,
            f"acknowledged at {params.topic}[{partition}]@{offset} but not consumed back in time",
            partition,
            offset,
            produce_ms,
        )
    finally:
        consumer.close()


def canary(ctx: ActionContext, params: CanaryParams) -> CanaryResult:
    """Produce, then consume back (see ``kafka.canary``); ``ok`` false with the reason on failure."""
    clients = clients_of(ctx)
    md = metadata(clients, min(ctx.remaining(), 10.0), RoundTrips())  # unreachable -> BackendUnavailable
    known = {tp.partition for tp in partitions_of(md, [params.topic])}  # never auto-create a typo'd topic
    if params.partition is not None and params.partition not in known:
        raise ActionError(f"topic {params.topic} has no partition {params.partition}", backend=BACKEND)
    cid = uuid.uuid4().hex
    budget = ctx.remaining()
    deadline = time.monotonic() + budget
    acked, sent = _produce(ctx, clients, params, cid, deadline)
    if not acked:
        return _failed(params, cid, f"not acknowledged within {budget:.1f}s (the step's timeout)")
    if acked["err"] is not None:
        return _failed(params, cid, f"produce failed: {acked['err'].str()}")
    return _read_back(clients, params, cid, acked, sent, deadline)
