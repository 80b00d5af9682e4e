"""Queue-backend benchmark (issue 14): BullMQ stats and redrive, table-queue quarantine.

* ``queue.stats`` (system bullmq) on a 1,000,000-job BullMQ queue (``--small``: 10,000): the median
  and worst of 25 calls through the action (target <= 50 ms; O(1) Redis commands only).
* ``queue.redrive`` of 100,000 failed BullMQ jobs (``--small``: 2,000) side by side, in the same
  run, with the ``bullmq`` package's own bulk retry (``Queue.retryJobs``, its ``moveJobsToWait``
  script): ``ratio`` is runbook's throughput over bullmq's (target >= 0.9), medians of three rounds
  whose order alternates, each on two freshly filled queues. Both end with every job in ``wait``
  and none in ``failed`` (checked).
* quarantine of 10,000 table-queue rows (``--small``: 500) by id, StarForge ``queue_jobs`` into
  ``queue_jobs_dlq``, in one transaction (the ``pg_table`` system's quarantine; the
  ``queue.quarantine`` action takes at most 1,000 ids per call, the backend 10,000).

How queues are filled, fast and faithfully: one job is made by the real ``bullmq`` package
(``Queue.add``; for failed jobs a real ``Worker`` fails it), and a Lua script copies that job's hash,
field for field, to N job ids with BullMQ's own key layout (``wait`` list, LPUSH; ``failed``
sorted set scored by ``finishedOn``; the ``id`` counter), 50,000 jobs per script call. Before
timing, the ``bullmq`` package's ``getJobCounts`` must see exactly N jobs in the state. Per-job
``added`` events are not written (BullMQ trims the stream to ~10,000 anyway).

Needs Redis (``REDIS_URL``, default ``redis://127.0.0.1:6379/0``) and PostgreSQL (``DATABASE_URL``,
default ``postgresql://root@127.0.0.1:5432/test``). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import psycopg
import redis
from bullmq import Queue, Worker

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke
from runbook.actions.pg_table.system import TableQueue
from runbook.actions.queue.system import Target
from runbook.core.settings import Settings

PG_DEFAULT = "postgresql://root@127.0.0.1:5432/test"
CHUNK = 50_000
STATS_CALLS = 25

# Copies the template job hash (ARGV[3..] as field, value pairs) to ids <tag>-<i> for i in
# [ARGV[1], ARGV[2]); "data" becomes {"n": i}. KEYS[1] base, KEYS[2] the state key, ARGV flags
# the kind: a "wait" list (LPUSH, as BullMQ's addStandardJob) or the "failed" sorted set.
COPY = """
local rcall = redis.call
local base, stateKey = KEYS[1], KEYS[2]
local first, last, tag, kind, score = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local ids = {}
for n = first, last - 1 do
  local id = tag .. "-" .. n
  local jobKey = base .. id
  rcall("HSET", jobKey, unpack(fields))
  rcall("HSET", jobKey, "data", '{"n": ' .. n .. '}')
  ids[#ids + 1] = id
  if #ids == 1000 then
    if kind == "wait" then rcall("LPUSH", stateKey, unpack(ids)) else
      local z = {}
      for _, j in ipairs(ids) do z[#z + 1] = score; z[#z + 1] = j end
      rcall("ZADD", stateKey, unpack(z))
    end
    ids = {}
  end
end
if #ids > 0 then
  if kind == "wait" then rcall("LPUSH", stateKey, unpack(ids)) else
    local z = {}
    for _, j in ipairs(ids) do z[#z + 1] = score; z[#z + 1] = j end
    rcall("ZADD", stateKey, unpack(z))
  end
end
rcall("INCRBY", base .. "id", last - first)
return last - first
"""


async def template_waiting(url: str, name: str) -> None:
    queue = Queue(name, {"connection": url})
    try:
        await queue.add("bench", {"n": 0}, {"jobId": "tpl"})
    finally:
        await queue.close()


async def template_failed(url: str, name: str) -> None:
    """A job the real Worker fails (attempts 1), so its hash has everything a failed job has."""

    async def fail(job: Any, token: str) -> None:
        raise RuntimeError("KeyError: 'snapshot_id'")

    queue = Queue(name, {"connection": url})
    worker = Worker(name, fail, {"connection": url})
    try:
        await queue.add("bench", {"n": 0}, {"jobId": "tpl", "attempts": 1})
        for _ in range(200):
            if (await queue.getJobCounts("failed"))["failed"] == 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the template job never failed")
    finally:
        await worker.close(force=True)
        await queue.close()


async def counts(url: str, name: str, *states: str) -> dict[str, int]:
    queue = Queue(name, {"connection": url})
    try:
        got: dict[str, int] = await queue.getJobCounts(*states)
        return got
    finally:
        await queue.close()


async def readable(url: str, name: str, n: int) -> bool:
    """The bullmq package reads a copied job like one it made (name, data, attempts)."""
    queue = Queue(name, {"connection": url})
    try:
        job = await queue.getJob(f"job-{n - 1}")
        return job is not None and job.name == "bench" and job.data == {"n": n - 1}
    finally:
        await queue.close()


def fill(r: redis.Redis, url: str, name: str, n: int, state: str) -> None:
    """``n`` jobs in ``state`` (wait or failed), copied from one the bullmq package made there."""
    base = f"bull:{name}:"
    asyncio.run(template_waiting(url, name) if state == "wait" else template_failed(url, name))
    tpl: dict[str, str] = r.hgetall(base + "tpl")  # type: ignore[assignment]
    r.delete(base + "tpl")
    if state == "wait":
        r.lrem(base + state, 0, "tpl")
    else:
        r.zrem(base + state, "tpl")
    score = tpl.get("finishedOn", "0")
    flat = [x for kv in tpl.items() if kv[0] != "data" for x in kv]
    copy = r.register_script(COPY)
    for first in range(0, n, CHUNK):
        copy(keys=[base, base + state], args=[first, min(first + CHUNK, n), "job", state, score, *flat])
    got = asyncio.run(counts(url, name, state))[state]
    if got != n or not asyncio.run(readable(url, name, n)):
        raise RuntimeError(f"bullmq sees {got} jobs in {state} (wanted {n}) or cannot read them")


def drop(r: redis.Redis, name: str) -> None:
    keys: list[Any] = []
    for key in r.scan_iter(f"bull:{name}:*", count=10_000):
        keys.append(key)
        if len(keys) >= 10_000:
            r.unlink(*keys)
            keys = []
    if keys:
        r.unlink(*keys)


def bullmq_stats(r: redis.Redis, url: str, reg: ActionRegistry, ctx: ActionContext, n: int) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        started = time.monotonic()
        fill(r, url, name, n, "wait")
        filled = time.monotonic() - started
        quiet(r)
        action = reg["queue.stats"]
        params = {"system": "bullmq", "queue": name}
        times = []
        for _ in range(STATS_CALLS):
            t0 = time.perf_counter()
            res = invoke(action, ctx, params)
            times.append((time.perf_counter() - t0) * 1000)
        assert res.depth == n and res.ready == n and res.oldest_age_seconds is not None, res
        return {
            "jobs": n,
            "fill_seconds": round(filled, 2),
            "median_ms": round(statistics.median(times), 2),
            "max_ms": round(max(times), 2),
            "first_ms": round(times[0], 2),
            "target_ms": 50,
        }
    finally:
        drop(r, name)


async def bullmq_retry(url: str, name: str) -> None:
    queue = Queue(name, {"connection": url})
    try:
        await queue.retryJobs({"state": "failed", "count": 1000})
    finally:
        await queue.close()


def quiet(r: redis.Redis) -> None:
    """Wait until Redis has freed what an earlier UNLINK dropped (its lazy-free thread competes)."""
    for _ in range(600):
        if int(r.info("memory").get("lazyfree_pending_objects", 0)) == 0:
            return
        time.sleep(0.05)


def redrive_round(
    r: redis.Redis, url: str, reg: ActionRegistry, ctx: ActionContext, n: int, ours_first: bool
) -> tuple[float, float]:
    ours, theirs = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    times: dict[str, float] = {}

    def runbook_side() -> None:
        t0 = time.perf_counter()
        res = invoke(reg["queue.redrive"], ctx, {"system": "bullmq", "queue": ours})
        times["runbook"] = time.perf_counter() - t0
        assert res.moved == n and res.remaining == 0, res

    def bullmq_side() -> None:
        t0 = time.perf_counter()
        asyncio.run(bullmq_retry(url, theirs))
        times["bullmq"] = time.perf_counter() - t0

    try:
        fill(r, url, ours, n, "failed")
        fill(r, url, theirs, n, "failed")
        quiet(r)
        for side in (runbook_side, bullmq_side) if ours_first else (bullmq_side, runbook_side):
            side()
        for name in (ours, theirs):
            got = asyncio.run(counts(url, name, "wait", "failed"))
            assert got == {"wait": n, "failed": 0}, (name, got)
    finally:
        drop(r, ours)
        drop(r, theirs)
    return times["runbook"], times["bullmq"]


def redrive(r: redis.Redis, url: str, reg: ActionRegistry, ctx: ActionContext, n: int) -> dict[str, Any]:
    """Three rounds, the order alternating, each on two freshly filled queues; medians compared."""
    rounds = [redrive_round(r, url, reg, ctx, n, ours_first=i % 2 == 0) for i in range(3)]
    runbook_s = statistics.median(t for t, _ in rounds)
    bullmq_s = statistics.median(t for _, t in rounds)
    rb_rate, bq_rate = n / runbook_s, n / bullmq_s
    return {
        "jobs": n,
        "rounds": len(rounds),
        "queue_redrive": {"median_seconds": round(runbook_s, 3), "jobs_per_s": round(rb_rate, 1)},
        "bullmq_retryJobs": {"median_seconds": round(bullmq_s, 3), "jobs_per_s": round(bq_rate, 1)},
        "ratio_runbook_vs_bullmq": round(rb_rate / bq_rate, 3),
        "ratio_per_round": [round(b / a, 3) for a, b in rounds],
        "target_ratio": 0.9,
    }


def table_quarantine(pg_url: str, ctx: ActionContext, n: int) -> dict[str, Any]:
    schema = f"sf_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            f"""CREATE SCHEMA {schema};
            CREATE TABLE {schema}.queue_jobs (
              id uuid PRIMARY KEY DEFAULT gen_random_uuid(), type text NOT NULL,
              payload jsonb NOT NULL DEFAULT '{{}}',
              status text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0, last_error jsonb,
              run_after timestamptz NOT NULL DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now(),
              updated_at timestamptz NOT NULL DEFAULT now());
            CREATE TABLE {schema}.queue_jobs_dlq (
              id uuid PRIMARY KEY, original_job_id uuid NOT NULL, type text, payload jsonb, reason text,
              created_at timestamptz NOT NULL);"""
        )
        conn.execute(
            f"INSERT INTO {schema}.queue_jobs (type, payload) SELECT 'process_snapshot',"
            " jsonb_build_object('n', g) FROM generate_series(1, %s) g",
            (2 * n,),
        )
        conn.execute(f"ANALYZE {schema}.queue_jobs")
        ids = [row[0] for row in conn.execute(f"SELECT id::text FROM {schema}.queue_jobs LIMIT %s", (n,))]
    table = f"{schema}.queue_jobs"
    mapping = {"preset": "starforge", "table": table, "dlq_table": f"{table}_dlq"}
    target = Target(queue="queue_jobs", table=mapping)
    try:
        t0 = time.perf_counter()
        report = TableQueue().quarantine(ctx, target, ids, "benchmark")
        secs = time.perf_counter() - t0
        assert report.moved == n and not report.missing, report
        with psycopg.connect(pg_url, autocommit=True) as conn:
            dlq = conn.execute(f"SELECT count(*) FROM {schema}.queue_jobs_dlq").fetchone()
            failed = conn.execute(
                f"SELECT count(*) FROM {schema}.queue_jobs WHERE status = 'failed'"
            ).fetchone()
        assert dlq == (n,) and failed == (n,), (dlq, failed)
        return {"rows": n, "table_rows": 2 * n, "seconds": round(secs, 3), "rows_per_s": round(n / secs, 1)}
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="reduced sizes for CI")
    args = parser.parse_args(argv)
    stats_n, redrive_n, rows_n = (10_000, 2_000, 500) if args.small else (1_000_000, 100_000, 10_000)
    pg_url = os.environ.get("DATABASE_URL") or PG_DEFAULT
    settings = Settings.from_env({**os.environ, "DATABASE_URL": pg_url})
    reg = ActionRegistry.from_modules(["runbook.actions.queue.actions"])
    connections = Connections(settings)
    ctx = ActionContext(connections)
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        out = {
            "benchmark": "queue_backends",
            "small": args.small,
            "bullmq_stats": bullmq_stats(r, settings.redis_url, reg, ctx, stats_n),
            "bullmq_redrive": redrive(r, settings.redis_url, reg, ctx, redrive_n),
            "table_quarantine_one_transaction": table_quarantine(pg_url, ctx, rows_n),
        }
    finally:
        r.close()
        connections.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
