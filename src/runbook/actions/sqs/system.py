"""SQS as a queue system (``system=sqs``): stats, progress, per-message evidence and moves.

What SQS can and cannot tell, and what each answer rests on:

* **Stats** are the queue attributes ``ApproximateNumberOfMessages`` (ready),
  ``...NotVisible`` (received by a consumer and not yet deleted: in flight) and ``...Delayed``;
  SQS publishes them eventually consistent (about a minute behind on AWS, exact on a local server).
  SQS knows no consumers (``consumers`` is unknown) and has no oldest-message attribute without
  CloudWatch (``ApproximateAgeOfOldestMessage`` is a CloudWatch metric only), so the oldest age
  comes from the head sample's ``SentTimestamp``. The DLQ is the redrive policy's
  ``deadLetterTargetArn`` (``dlq`` only when the queue has no redrive policy).
* **Progress**: SQS keeps no completion counter and a local server has no CloudWatch
  (NumberOfMessagesDeleted/Received). The window polls the attributes every half second and
  derives *lower bounds*: completed = the sum of depth drops over the window less what the redrive
  policy's DLQ took in it (a delete shrinks the queue; a send in the same half second hides one),
  failed = the DLQ's growth (dead-lettered after maxReceiveCount receives; a DLQ shared with other
  queues counts theirs too), published =
  the sum of depth rises, delivered = the larger of the sum of rises of NotVisible and the
  completions plus failures (a message is received before it is deleted or dead-lettered).
  Redeliveries cannot be seen without receiving: always 0, so a retry storm on SQS
  shows in the sample's receive counts, not in the progress ratio. The queue and its DLQ are two
  reads, never one snapshot; the baseline reads the DLQ first and every later poll the queue
  first, so a message dead-lettered between two reads can count as a failure but never as a
  completion.
* **Sample**: SQS has no peek; a look is a ReceiveMessage, which adds one to
  ``ApproximateReceiveCount``. The sample holds what it received (a visibility timeout of at most
  a minute, so nothing is lost if the run dies), gives every message back at once (visibility 0)
  and reports per message the count *minus its own receives*: this sample's and every earlier one
  this process made (``queues.LEDGER``). Also reported: the count as seen and how long ago the
  first receive was (none when the first receive was ours). One side effect SQS forces: a message
  already received ``maxReceiveCount`` times goes to the DLQ on the next receive, ours included -
  as the next consumer poll would have done.
* Moves (quarantine, redrive) live in ``moves``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from runbook.actions.context import ActionContext
from runbook.actions.queue.system import Counters, Message, MoveReport, Stats, Target
from runbook.actions.sqs import moves
from runbook.actions.sqs.client import sqs_of
from runbook.actions.sqs.queues import (
    COUNT_ATTRIBUTES,
    LEDGER,
    attributes,
    counts,
    dead_letter,
    queue_url,
    receive,
    release,
)

SAMPLE_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
]
POLL_SECONDS = 0.5
MAX_HOLD = 60


@dataclass
class SQSMessage(Message):
    """A sampled SQS message: ``delivery_count`` is the receive count before this look."""

    receive_count_seen: int | None = None
    first_received_seconds_ago: float | None = None


def _ms(value: Any) -> float | None:
    try:
        return int(value) / 1000.0 if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class SQS:
    """The ``sqs`` system (see module docs)."""

    name = "sqs"

    def stats(self, ctx: ActionContext, target: Target) -> Stats:
        sqs = sqs_of(ctx)
        url = queue_url(sqs, target.queue)
        attrs = attributes(sqs, url)
        visible, hidden, delayed = counts(attrs)
        dlq = dead_letter(sqs, attrs, target.dlq)
        dlq_depth = None
        if dlq is not None:
            dlq_visible, dlq_hidden, _ = counts(attributes(sqs, dlq.url, COUNT_ATTRIBUTES))
            dlq_depth = dlq_visible + dlq_hidden
        return Stats(
            depth=visible + hidden + delayed,
            ready=visible,
            in_flight=hidden,
            delayed=delayed,
            consumers=None,
            dlq_depth=dlq_depth,
            details={
                "dlq": dlq.name if dlq else None,
                "max_receive_count": dlq.max_receive_count if dlq else None,
                "visibility_timeout": int(attrs.get("VisibilityTimeout") or 0),
                "fifo": attrs.get("FifoQueue") == "true",
                "retention_seconds": int(attrs.get("MessageRetentionPeriod") or 0),
            },
        )

    def window(self, ctx: ActionContext, target: Target, seconds: float) -> tuple[Counters, Counters]:
        """Polls the counts (and the DLQ's) every half second; see the module docs."""
        sqs = sqs_of(ctx)
        url = queue_url(sqs, target.queue)
        dlq = dead_letter(sqs, attributes(sqs, url, ["RedrivePolicy"]), None)

        def read_queue() -> tuple[int, int]:
            visible, hidden, delayed = counts(attributes(sqs, url, COUNT_ATTRIBUTES))
            return visible + hidden + delayed, hidden

        def read_dead() -> int:
            return sum(counts(attributes(sqs, dlq.url, COUNT_ATTRIBUTES))[:2]) if dlq else 0

        def read() -> tuple[int, int, int]:
            # the queue first, its DLQ second: a message dead-lettered between the two reads shows
            # as a failure now and its drop at the next read - never a drop without its failure
            return (*read_queue(), read_dead())

        start = time.time()
        # The baseline in the other order, DLQ first: read queue-first, a message dead-lettered
        # between the two reads would be in the DLQ's baseline (its failure never counted) and
        # not in the queue's (its drop counted): one completion that never happened per such move.
        dead0 = read_dead()
        depth0, hidden0 = read_queue()
        depth, hidden, dead = depth0, hidden0, dead0
        drops = published = rises = failed = 0
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(POLL_SECONDS, left))
            new_depth, new_hidden, new_dead = read()
            failed += max(0, new_dead - dead)  # left the queue, but not completed
            drops += max(0, depth - new_depth)
            published += max(0, new_depth - depth)
            rises += max(0, new_hidden - hidden)
            depth, hidden, dead = new_depth, new_hidden, new_dead
        # Compared over the whole window, not per poll: the queue and its DLQ are two reads, so a move
        # can show in the DLQ one poll before the queue's drop shows (or after); per poll, that drop
        # would count as a completion.
        completed = max(0, drops - failed)
        a = Counters(
            at=start, depth=depth0, in_flight=hidden0, consumers=None, completed=0, delivered=0, redelivered=0
        )
        b = Counters(
            at=time.time(),
            depth=depth,
            in_flight=hidden,
            consumers=None,
            completed=completed,
            delivered=max(rises, completed + failed),
            redelivered=0,
            failed=failed,
            published=published,
        )
        return a, b

    def sample(self, ctx: ActionContext, target: Target, count: int) -> list[Message]:
        """Up to ``count`` visible messages, held while read and given back at once."""
        sqs = sqs_of(ctx)
        url = queue_url(sqs, target.queue)
        hold = int(max(5, min(MAX_HOLD, ctx.remaining(30.0) + 5)))
        seen: dict[str, tuple[dict[str, Any], int]] = {}  # id -> latest copy, receives by this sample
        handles: list[str] = []
        try:
            while len(seen) < count and ctx.remaining() > 1:
                batch = receive(
                    sqs, url, count - len(seen), hold, MessageSystemAttributeNames=SAMPLE_ATTRIBUTES
                )
                if not batch:
                    break
                for m in batch:
                    handles.append(m["ReceiptHandle"])
                    mine = seen[m["MessageId"]][1] + 1 if m["MessageId"] in seen else 1
                    seen[m["MessageId"]] = (m, mine)  # a standard queue may hand one out twice
        finally:
            release(sqs, url, handles)
        now = time.time()
        out: list[Message] = []
        for message_id, (m, mine) in seen.items():
            attrs = m.get("Attributes") or {}
            seen_count = int(attrs.get("ApproximateReceiveCount") or mine)
            before = max(0, seen_count - mine - LEDGER.own(url, message_id))
            LEDGER.add(url, message_id, mine)
            sent, first = _ms(attrs.get("SentTimestamp")), _ms(attrs.get("ApproximateFirstReceiveTimestamp"))
            out.append(
                SQSMessage(
                    id=message_id,
                    state="waiting",
                    type=attrs.get("MessageGroupId"),
                    delivery_count=before,
                    age_seconds=round(now - sent, 1) if sent else None,
                    size=len((m.get("Body") or "").encode()),
                    receive_count_seen=seen_count,
                    first_received_seconds_ago=round(now - first, 1) if first and before > 0 else None,
                )
            )
        return out

    def describe_quarantine(self, ctx: ActionContext, target: Target, ids: list[str]) -> str:
        return moves.describe_quarantine(sqs_of(ctx), target, ids)

    def quarantine(self, ctx: ActionContext, target: Target, ids: list[str], reason: str) -> MoveReport:
        return moves.quarantine(ctx, sqs_of(ctx), target, ids, reason)

    def describe_redrive(self, ctx: ActionContext, target: Target, count: int | None) -> str:
        return moves.describe_redrive(sqs_of(ctx), target, count)

    def redrive(self, ctx: ActionContext, target: Target, count: int | None) -> MoveReport:
        return moves.redrive(ctx, sqs_of(ctx), target, count)
