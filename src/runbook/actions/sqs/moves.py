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
BATCH_BYTES = 200_000  # SendMessageBatch takes at most 256 KiB in all (1 MiB on AWS since 2025)


def _receive(sqs: SQSClient, url: str, n: int) -> list[dict[str, Any]]:
    return receive(sqs, url, n, MOVE_HOLD, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])


def _send_params(dest_url: str, m: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    """The copy of ``m``: body, message attributes (+ ``extra`` while there is room), FIFO group."""
    attrs = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in (m.get("MessageAttributes") or {}).items()
    }
    for name, value in extra.items():
        if len(attrs) < MAX_ATTRIBUTES and name not in attrs:
            attrs[name] = {"DataType": "String", "StringValue": value}
    params: dict[str, Any] = {"MessageBody": m.get("Body") or ""}
    if attrs:
        params["MessageAttributes"] = attrs
    if dest_url.endswith(".fifo"):
        system = m.get("Attributes") or {}
        params["MessageGroupId"] = system.get("MessageGroupId") or "runbook"
        params["MessageDeduplicationId"] = m["MessageId"][:128]
    return params


def move(
    sqs: SQSClient,
    source_url: str,
    dest_url: str,
    batch: list[dict[str, Any]],
    extra: dict[str, str],
    warnings: list[str],
) -> tuple[list[str], list[str]]:
    """Copy ``batch`` (received from ``source_url``, at most 10) to ``dest_url`` (with ``extra``
    attributes and the original id when ``extra`` is given) and delete from the
    source exactly the messages whose copy SQS accepted. Returns (moved ids, receipt handles of the
    messages not copied: the caller gives them back). One SendMessageBatch and one
    DeleteMessageBatch per ten messages; a batch too large for one request goes one by one."""
    if not batch:
        return [], []
    entries = []
    for i, m in enumerate(batch):
        marks = {**extra, "runbook_original_id": m["MessageId"]} if extra else {}
        entries.append({"Id": str(i), **_send_params(dest_url, m, marks)})
    if sum(len(e["MessageBody"].encode()) for e in entries) <= BATCH_BYTES:
        got = sqs.call("send_message_batch", QueueUrl=dest_url, Entries=entries)
        accepted = {int(e["Id"]) for e in got.get("Successful") or [] if e.get("MessageId")}
        for f in got.get("Failed") or []:
            warnings.append(
                f"{batch[int(f['Id'])]['MessageId']}: not copied ({f.get('Code')}), left in place"
            )
    else:
        accepted = set()
        for i, e in enumerate(entries):
            params = {k: v for k, v in e.items() if k != "Id"}
            if sqs.call("send_message", QueueUrl=dest_url, **params).get("MessageId"):
                accepted.add(i)
    done = [batch[i] for i in sorted(accepted)]
    if done:
        deletes = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
        got = sqs.call("delete_message_batch", QueueUrl=source_url, Entries=deletes)
        for f in got.get("Failed") or []:
            warnings.append(
                f"{done[int(f['Id'])]['MessageId']}: copied but the original was not deleted (a duplicate):"
                f" {f.get('Code')}"
            )
    left = [m["ReceiptHandle"] for i, m in enumerate(batch) if i not in accepted]
    return [m["MessageId"] for m in done], left


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
                wanted = [m for m in batch if m["MessageId"] in want]
                done, left = move(sqs, source, dest, wanted, extra, warnings)
                handles += left
                for message_id in done:
                    want.discard(message_id)
                    moved.append(message_id)
                    LEDGER.forget(source, message_id)
                for m in batch:
                    if m["MessageId"] not in want and m["MessageId"] not in done:
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
        done, left = move(sqs, dlq.url, source, batch, {}, warnings)
        moved += done
        if left:
            release(sqs, dlq.url, left)
            break  # SQS refused copies: stop here rather than loop on them
    return MoveReport(
        moved=len(moved),
        ids=moved,
        remaining=_depth(sqs, dlq.url),
        destination=target.queue,
        seconds=round(time.monotonic() - started, 3),
        warnings=warnings,
    )
