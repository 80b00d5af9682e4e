"""BullMQ as a queue system: stats, progress counters, per-job evidence and moves.

Key layout (BullMQ 5, ``<prefix>:<queue>:``): ``wait``/``paused``/``active`` lists (the head of
``wait`` is its right end), ``prioritized``/``delayed``/``failed``/``completed`` sorted sets,
``meta`` hash, ``events`` stream, one hash per job (``name``, ``data``, ``timestamp``,
``processedOn``, ``atm`` attempts made, ``ats`` attempts started, ``failedReason``).

Stats use O(1) commands only (LLEN, ZCARD, LINDEX -1, HGET), so they stay fast on a million-job
queue. Progress counts the ``events`` stream between two instants (stream ids are milliseconds):
``active`` events are deliveries, ``completed`` completions, ``failed`` failures and
``waiting``/``delayed`` with ``prev=active|failed`` (a failed attempt put back), ``stalled``, and a
``delayed`` event of a job not ``added`` in the same window (a failed attempt retried with a backoff:
``moveToDelayed`` writes no ``prev``; a job added with a delay writes ``added`` beside it) are
retries. ``consumers`` counts Redis connections named for the queue (a worker opens one or two).
Sampling reads hashes only,
so it creates no evidence.
"""

from __future__ import annotations

import re
import time
from typing import Any

from runbook.actions.bullmq.client import BACKEND, RedisClient, redis_of
from runbook.actions.bullmq.scripts import QUARANTINE, REDRIVE
from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.queue.system import Counters, Message, MoveReport, Stats, Target
from runbook.core.redact import redact

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.@/-]{1,200}$")
PREFIX = re.compile(r"^[A-Za-z0-9_.{}-]{1,64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
RESERVED = {
    "wait",
    "paused",
    "active",
    "prioritized",
    "delayed",
    "failed",
    "completed",
    "meta",
    "events",
    "marker",
    "stalled",
    "stalled-check",
    "id",
    "limiter",
    "metrics",
    "pc",
    "de",
    "repeat",
}
REDRIVE_BATCH = 1000
MAX_REASON = 200


def base_key(target: Target) -> str:
    """``<prefix>:<queue>:``, refusing names that could address other keys (``:``, globs, spaces)."""
    if not QUEUE_NAME.match(target.queue):
        raise ActionError(f"bad BullMQ queue name {target.queue!r}", backend=BACKEND)
    if not PREFIX.match(target.prefix):
        raise ActionError(f"bad BullMQ key prefix {target.prefix!r}", backend=BACKEND)
    return f"{target.prefix}:{target.queue}:"


def check_ids(ids: list[str]) -> list[str]:
    """Job ids as BullMQ writes them; an id naming one of the queue's own keys is refused."""
    for job_id in ids:
        if not JOB_ID.match(job_id) or job_id in RESERVED:
            raise ActionError(f"bad BullMQ job id {job_id!r}", backend=BACKEND)
    return list(dict.fromkeys(ids))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class BullMQ:
    """The ``bullmq`` system (see module docs)."""

    name = "bullmq"

    def _redis(self, ctx: ActionContext) -> RedisClient:
        return redis_of(ctx)

    def stats(self, ctx: ActionContext, target: Target) -> Stats:
        base = base_key(target)
        r = self._redis(ctx)
        (wait, paused, active, prio, delayed, failed, completed, head, is_paused) = r.pipeline(
            [
                ("LLEN", base + "wait"),
                ("LLEN", base + "paused"),
                ("LLEN", base + "active"),
                ("ZCARD", base + "prioritized"),
                ("ZCARD", base + "delayed"),
                ("ZCARD", base + "failed"),
                ("ZCARD", base + "completed"),
                ("LINDEX", base + "wait", -1),
                ("HEXISTS", base + "meta", "paused"),
            ]
        )
        if not any((wait, paused, active, prio, delayed, failed, completed)) and not r.call(
            "EXISTS", base + "meta", base + "events", base + "id"
        ):
            raise ActionError(
                f"BullMQ queue {target.queue!r} not found (no keys under {base}*)", backend=BACKEND
            )
        age = None
        if head is not None:
            stamp = _int(r.call("HGET", base + str(head), "timestamp"))
            age = round(time.time() - stamp / 1000.0, 1) if stamp else None
        ready = int(wait) + int(paused) + int(prio)
        return Stats(
            depth=ready + int(active) + int(delayed),
            ready=ready,
            in_flight=int(active),
            delayed=int(delayed),
            consumers=self.workers(r, target),
            oldest_age_seconds=age,
            dlq_depth=int(failed),
            completed_total=int(completed),
            failed_total=int(failed),
            details={"paused": bool(is_paused), "waiting": int(wait) + int(paused), "prioritized": int(prio)},
        )

    def workers(self, r: RedisClient, target: Target) -> int | None:
        """Connections named like a BullMQ worker of this queue (CLIENT LIST), None if not allowed."""
        try:
            listing = r.call("CLIENT", "LIST")
        except ActionError:
            return None
        own = f"{target.prefix}:{target.queue}"
        names = re.findall(r"\bname=(\S*)", listing if isinstance(listing, str) else "")
        return sum(1 for n in names if n == own or n.startswith(own + ":w:"))

    def window(self, ctx: ActionContext, target: Target, seconds: float) -> tuple[Counters, Counters]:
        """Depth at both ends; completions, deliveries and retries from the events in between."""
        first = self.stats(ctx, target)
        start = time.time()
        time.sleep(seconds)
        second = self.stats(ctx, target)
        end = time.time()
        ev = self.events_between(ctx, target, start, end)
        a = Counters(
            at=start,
            depth=first.depth,
            in_flight=first.in_flight,
            consumers=first.consumers,
            completed=0,
            delivered=0,
            redelivered=0,
        )
        b = Counters(
            at=end,
            depth=second.depth,
            in_flight=second.in_flight,
            consumers=second.consumers,
            completed=ev["completed"],
            delivered=ev["delivered"],
            redelivered=ev["redelivered"],
            failed=ev["failed"],
            published=ev["published"],
        )
        return a, b

    def events_between(self, ctx: ActionContext, target: Target, start: float, end: float) -> dict[str, int]:
        """Counts of events by kind between two wall-clock instants (bounded read of the stream)."""
        base = base_key(target)
        r = self._redis(ctx)
        counts = {"completed": 0, "delivered": 0, "failed": 0, "redelivered": 0, "published": 0}
        cursor = f"{int(start * 1000)}-0"
        stop = f"{int(end * 1000)}-99999"
        added: set[str] = set()
        delayed: list[str] = []  # ``delayed`` events without ``prev``: a backoff retry or a delayed add
        for _ in range(200):  # at most 200k events per window
            batch = r.call("XRANGE", base + "events", cursor, stop, "COUNT", 1000) or []
            for _id, fields in batch:
                # redis-py parses XRANGE entries into a dict; a raw reply is a flat [k, v, ...] list
                ev = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
                self._count(counts, ev)
                if ev.get("event") == "added":
                    added.add(str(ev.get("jobId")))
                elif ev.get("event") == "delayed" and not ev.get("prev"):
                    delayed.append(str(ev.get("jobId")))
            if len(batch) < 1000:
                break
            cursor = "(" + batch[-1][0]
        counts["redelivered"] += sum(1 for job_id in delayed if job_id not in added)
        return counts

    @staticmethod
    def _count(counts: dict[str, int], ev: dict[str, str]) -> None:
        kind = ev.get("event")
        if kind == "completed":
            counts["completed"] += 1
        elif kind == "active":
            counts["delivered"] += 1
        elif kind == "failed":
            counts["failed"] += 1
        elif kind == "added":
            counts["published"] += 1
        elif kind == "stalled" or (kind in ("waiting", "delayed") and ev.get("prev") in ("failed", "active")):
            counts["redelivered"] += 1

    def sample(self, ctx: ActionContext, target: Target, count: int) -> list[Message]:
        base = base_key(target)
        r = self._redis(ctx)
        active, waiting, prio, delayed = r.pipeline(
            [
                ("LRANGE", base + "active", 0, 999),
                ("LRANGE", base + "wait", -count, -1),
                ("ZRANGE", base + "prioritized", 0, count - 1),
                ("ZRANGE", base + "delayed", 0, count - 1),
            ]
        )
        order = [(i, "active") for i in active] + [(i, "waiting") for i in reversed(waiting)]
        order += [(i, "prioritized") for i in prio] + [(i, "delayed") for i in delayed]
        fields = ("name", "timestamp", "processedOn", "atm", "ats", "failedReason", "stc")
        rows = r.pipeline([("HMGET", base + str(i), *fields) for i, _ in order])
        sizes = r.pipeline([("HSTRLEN", base + str(i), "data") for i, _ in order])
        now = time.time() * 1000
        out = []
        for (job_id, state), row, size in zip(order, rows, sizes, strict=True):
            name, stamp, processed, atm, ats, reason, stalls = row
            started = _int(processed)
            out.append(
                Message(
                    id=str(job_id),
                    state=state,
                    type=name,
                    attempts=_int(atm) or 0,
                    delivery_count=max(_int(ats) or 0, (_int(atm) or 0) + (_int(stalls) or 0)),
                    failed_reason=redact(reason[:MAX_REASON]) if reason else None,
                    in_flight_seconds=round((now - started) / 1000, 1)
                    if state == "active" and started
                    else None,
                    age_seconds=round((now - (_int(stamp) or now)) / 1000, 1),
                    size=int(size or 0),
                )
            )
        return out

    def describe_quarantine(self, ctx: ActionContext, target: Target, ids: list[str]) -> str:
        base = base_key(target)
        check_ids(ids)
        r = self._redis(ctx)
        states = r.pipeline([("HGET", base + i, "processedOn") for i in ids])
        found = sum(1 for i, s in zip(ids, r.pipeline([("EXISTS", base + i) for i in ids]), strict=True) if s)
        active = sum(1 for s in states if s)
        return (
            f"move exactly {len(ids)} BullMQ job(s) of queue {target.queue!r} to failed, as"
            f" job.moveToFailed does (atomic; data kept; reason 'quarantined by runbook'): ids"
            f" {', '.join(ids)}; {found} exist, {active} have been started by a worker"
        )

    def quarantine(self, ctx: ActionContext, target: Target, ids: list[str], reason: str) -> MoveReport:
        base = base_key(target)
        ids = check_ids(ids)
        started = time.monotonic()
        moved, missing = self._redis(ctx).script(
            QUARANTINE, [base], [int(time.time() * 1000), redact(reason[:MAX_REASON]), "1", *ids]
        )
        return MoveReport(
            moved=len(moved),
            ids=list(moved),
            missing=list(missing),
            destination=f"{base}failed",
            seconds=round(time.monotonic() - started, 3),
        )

    def describe_redrive(self, ctx: ActionContext, target: Target, count: int | None) -> str:
        base = base_key(target)
        failed = self._redis(ctx).call("ZCARD", base + "failed")
        what = f"the oldest {min(count, failed)}" if count else f"all {failed}"
        return (
            f"retry {what} failed BullMQ job(s) of queue {target.queue!r} (failed -> wait, as"
            f" queue.retryJobs does; quarantined jobs are skipped)"
        )

    def redrive(self, ctx: ActionContext, target: Target, count: int | None) -> MoveReport:
        base = base_key(target)
        r = self._redis(ctx)
        want = count if count is not None else int(r.call("ZCARD", base + "failed"))
        if want < 0:
            raise GuardrailRefused("count must not be negative", backend=BACKEND)
        started = time.monotonic()
        moved = skipped = 0
        while moved < want:
            step = min(REDRIVE_BATCH, want - moved)
            got, skip = r.script(REDRIVE, [base], [skipped, step])
            moved, skipped = moved + int(got), skipped + int(skip)
            if int(got) < step:
                break
        left = int(r.call("ZCARD", base + "failed"))
        return MoveReport(
            moved=moved,
            remaining=left,
            destination=f"{base}wait",
            seconds=round(time.monotonic() - started, 3),
            warnings=[f"{skipped} quarantined job(s) left in failed"] if skipped else [],
        )
