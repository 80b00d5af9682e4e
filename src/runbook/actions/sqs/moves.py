"""SQS moves: quarantine exactly the given message ids, and redrive from the redrive policy's DLQ.

SQS has no move primitive for single messages, so a move is receive -> send a copy -> delete the
original, and the delete happens only after the send returned a MessageId (boto3 has checked the
body's MD5 by then): killed between the two, the original reappears when its hold expires and
the copy exists too - a duplicate, never a loss. FIFO destinations get the original's group id
and its message id as deduplication id, so a retried move within SQS's five-minute window is
not even duplicated.

Quarantine scans the queue holding what it passes by (they are given back at once afterwards and
their receives go into the ledger, so a later sample does not count them as evidence); a wanted
message a consumer holds at that moment is looked for again in up to three passes, then reported
missing - never substituted. In a FIFO queue a group whose messages the scan holds hands out
no more until they are given back, so a pass reaches the first ten of each group; a poison
message blocks its group from the head, where it is reached. The redrive of the rest uses
StartMessageMoveTask where the server has it (AWS; asynchronous, so ``moved`` stays 0 and a
warning names the task); a local server without it (moto) and every canary (a move task cannot
be limited to N) use receive -> send -> delete, in the order SQS hands messages out (roughly
oldest first, not guaranteed).
"""

from __future__ import annotations

import time
from typing import Any

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable, GuardrailRefused
from runbook.actions.queue.system import MoveReport, Target
from runbook.actions.sqs.client import BACKEND, SQSClient, Unsupported
from runbook.actions.sqs.queues import (
    COUNT_ATTRIBUTES,
    LEDGER,
    DeadLetter,
    attributes,
    check_ids,
    check_name,
    counts,
    dead_letter,
    queue_url,
    receive,
    release,
)
from runbook.core.redact import redact

MOVE_HOLD = 60
PASSES = 3
MAX_SCAN = 20_000
MAX_ATTRIBUTES = 10


def _receive(sqs: SQSClient, url: str, n: int) -> list[dict[str, Any]]:
    return receive(sqs, url, n, MOVE_HOLD, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])


def _copy(sqs: SQSClient, dest_url: str, m: dict[str, Any], extra: dict[str, str]) -> None:
    """Send ``m`` (body, attributes, FIFO group) to ``dest_url``; raises unless SQS accepted it."""
    attrs = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in (m.get("MessageAttributes") or {}).items()
    }
    for name, value in extra.items():
        if len(attrs) < MAX_ATTRIBUTES and name not in attrs:
            attrs[name] = {"DataType": "String", "StringValue": value}
    params: dict[str, Any] = {"QueueUrl": dest_url, "MessageBody": m.get("Body") or ""}
    if attrs:
        params["MessageAttributes"] = attrs
    if dest_url.endswith(".fifo"):
        system = m.get("Attributes") or {}
        params["MessageGroupId"] = system.get("MessageGroupId") or "runbook"
        params["MessageDeduplicationId"] = m["MessageId"][:128]
    if not sqs.call("send_message", **params).get("MessageId"):
        raise ActionError("SQS accepted no copy (no MessageId returned)", backend=BACKEND)


def _delete(sqs: SQSClient, url: str, m: dict[str, Any], warnings: list[str]) -> None:
    try:
        sqs.call("delete_message", QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    except ActionError as exc:
        warnings.append(f"{m['MessageId']}: copied but the original was not deleted (a duplicate): {exc}")


def _depth(sqs: SQSClient, url: str) -> int:
    visible, hidden, delayed = counts(attributes(sqs, url, COUNT_ATTRIBUTES))
    return visible + hidden + delayed


def _quarantine_queue(sqs: SQSClient, target: Target) -> tuple[str, str]:
    if not target.quarantine_queue:
        raise ActionError("quarantine_queue is required for SQS (an existing queue)", backend=BACKEND)
    check_name(target.quarantine_queue, "quarantine queue")
    if target.quarantine_queue == target.queue:
        raise GuardrailRefused("the quarantine queue must not be the queue itself", backend=BACKEND)
    return queue_url(sqs, target.queue), queue_url(sqs, target.quarantine_queue)


def describe_quarantine(sqs: SQSClient, target: Target, ids: list[str]) -> str:
    ids = check_ids(ids)
    source, dest = _quarantine_queue(sqs, target)
    visible, hidden, _ = counts(attributes(sqs, source, COUNT_ATTRIBUTES))
    return (
        f"move exactly {len(ids)} SQS message(s) of queue {target.queue!r} to {target.quarantine_queue!r}"
        f" (receive -> send a copy -> delete the original only after the send succeeded; messages passed"
        f" by are given back at once): ids {', '.join(ids)}; the queue holds {visible} visible, {hidden}"
        " in flight"
    )


def quarantine(ctx: ActionContext, sqs: SQSClient, target: Target, ids: list[str], reason: str) -> MoveReport:
    ids = check_ids(ids)
    source, dest = _quarantine_queue(sqs, target)
    started = time.monotonic()
    want, moved = set(ids), []
    warnings: list[str] = []
    extra = {"runbook_reason": redact(reason[:200]), "runbook_source_queue": target.queue}
    limit = min(MAX_SCAN, _depth(sqs, source) + 100)
    for attempt in range(PASSES):
        handles: list[str] = []
        scanned = 0
        try:
            while want and scanned < limit and ctx.remaining() > 3:
                batch = _receive(sqs, source, 10)
                if not batch:
                    break
                scanned += len(batch)
                for m in batch:
                    if m["MessageId"] in want:
                        _copy(sqs, dest, m, {**extra, "runbook_original_id": m["MessageId"]})
                        _delete(sqs, source, m, warnings)
                        want.discard(m["MessageId"])
                        moved.append(m["MessageId"])
                        LEDGER.forget(source, m["MessageId"])
                    else:
                        handles.append(m["ReceiptHandle"])
                        LEDGER.add(source, m["MessageId"])
        finally:
            release(sqs, source, handles)
        if not want or attempt == PASSES - 1 or ctx.remaining() < 5:
            break
        if counts(attributes(sqs, source, COUNT_ATTRIBUTES))[1] == 0:
            break  # nothing held by a consumer: the missing ids are not in the queue
        time.sleep(1.0)  # a wanted message may be held by a consumer for a moment: look again
    return MoveReport(
        moved=len(moved),
        ids=moved,
        missing=[i for i in ids if i in want],
        remaining=_depth(sqs, source),
        destination=target.quarantine_queue or "",
        seconds=round(time.monotonic() - started, 3),
        warnings=warnings,
    )


def _dlq(sqs: SQSClient, target: Target) -> tuple[str, str, DeadLetter]:
    source = queue_url(sqs, target.queue)
    attrs = attributes(sqs, source, ["RedrivePolicy", "QueueArn"])
    dlq = dead_letter(sqs, attrs, target.dlq)
    if dlq is None:
        raise ActionError(
            f"queue {target.queue!r} has no redrive policy DLQ (and `dlq` names no existing queue)",
            backend=BACKEND,
        )
    return source, attrs.get("QueueArn", ""), dlq


def describe_redrive(sqs: SQSClient, target: Target, count: int | None) -> str:
    _source, _arn, dlq = _dlq(sqs, target)
    depth = _depth(sqs, dlq.url)
    what = f"up to {min(count, depth)}" if count else f"all {depth}"
    how = "receive -> send -> delete after the send succeeded"
    if not count:
        how = "StartMessageMoveTask where the server has it, else " + how
    return f"move {what} message(s) of the DLQ {dlq.name!r} back to SQS queue {target.queue!r} ({how})"


def redrive(ctx: ActionContext, sqs: SQSClient, target: Target, count: int | None) -> MoveReport:
    source, source_arn, dlq = _dlq(sqs, target)
    started = time.monotonic()
    warnings: list[str] = []
    if count is None:
        try:
            task = sqs.call("start_message_move_task", SourceArn=dlq.arn, DestinationArn=source_arn)
            depth = _depth(sqs, dlq.url)
            return MoveReport(
                moved=0,
                remaining=depth,
                destination=target.queue,
                seconds=round(time.monotonic() - started, 3),
                warnings=[
                    f"StartMessageMoveTask {task.get('TaskHandle', '?')} moves the DLQ's {depth} message(s)"
                    " asynchronously (ListMessageMoveTasks shows its progress)"
                ],
            )
        except (Unsupported, BackendUnavailable) as exc:
            # moto answers 500 "not implemented"; a task that did start meanwhile and this loop each
            # take a message by receiving it, so at worst one is duplicated, never lost
            warnings.append(
                f"StartMessageMoveTask unavailable ({str(exc).splitlines()[0][:100]}):"
                " moved by receive -> send -> delete"
            )
    want = count if count is not None else _depth(sqs, dlq.url)
    moved: list[str] = []
    while len(moved) < want and ctx.remaining() > 3:
        batch = _receive(sqs, dlq.url, want - len(moved))
        if not batch:
            break
        for m in batch:
            _copy(sqs, source, m, {})
            _delete(sqs, dlq.url, m, warnings)
            moved.append(m["MessageId"])
    return MoveReport(
        moved=len(moved),
        ids=moved,
        remaining=_depth(sqs, dlq.url),
        destination=target.queue,
        seconds=round(time.monotonic() - started, 3),
        warnings=warnings,
    )
