"""BullMQ incidents made with the real ``bullmq`` Python package (Queue, Worker), not hand-written keys.

A :class:`BullBench` runs an asyncio loop in a thread so synchronous tests can add jobs and start
workers whose processor misbehaves in a chosen way (wedge on one job, fail one job on every
attempt, be slow, fail everything).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from bullmq import Queue, Worker

REDIS_URL = "redis://127.0.0.1:6379/0"


class BullBench:
    def __init__(self, queue: str, prefix: str = "bull") -> None:
        self.name = queue
        self.prefix = prefix
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.workers: list[Worker] = []
        self.queue: Queue = self.run(self._queue())
        self.redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.processed: list[str] = []

    async def _queue(self) -> Queue:
        return Queue(self.name, {"connection": REDIS_URL, "prefix": self.prefix})

    def run(self, coro: Awaitable[Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def add(
        self,
        n: int,
        *,
        name: str = "job",
        attempts: int = 1,
        prefix: str = "job",
        data: dict[str, Any] | None = None,
    ) -> list[str]:
        async def go() -> list[str]:
            jobs = await self.queue.addBulk(
                [
                    {
                        "name": name,
                        "data": data or {"n": i},
                        "opts": {"jobId": f"{prefix}-{i}", "attempts": attempts},
                    }
                    for i in range(n)
                ]
            )
            return [j.id for j in jobs]

        ids: list[str] = self.run(go())
        return ids

    def worker(
        self, handler: Callable[[Any], Awaitable[Any]], *, concurrency: int = 1, **opts: Any
    ) -> Worker:
        async def processor(job: Any, token: str) -> Any:
            result = await handler(job)
            self.processed.append(job.id)
            return result

        async def go() -> Worker:
            return Worker(
                self.name,
                processor,
                {"connection": REDIS_URL, "prefix": self.prefix, "concurrency": concurrency, **opts},
            )

        w: Worker = self.run(go())
        self.workers.append(w)
        return w

    def counts(self) -> dict[str, int]:
        got: dict[str, int] = self.run(
            self.queue.getJobCounts("wait", "active", "failed", "completed", "delayed")
        )
        return got

    def failed_ids(self) -> list[str]:
        base = f"{self.prefix}:{self.name}:"
        return sorted(self.redis.zrange(base + "failed", 0, -1))

    def close(self) -> None:
        for w in self.workers:
            try:
                self.run(w.close(force=True), timeout=15)
            except Exception:  # noqa: BLE001 - a wedged worker may not close cleanly; the keys go anyway
                pass
        try:
            self.run(self.queue.obliterate(force=True), timeout=30)
        except Exception:  # noqa: BLE001 - best effort cleanup; drop the keys directly below
            pass
        for key in self.redis.scan_iter(f"{self.prefix}:{self.name}:*", count=1000):
            self.redis.delete(key)
        self.run(self.queue.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
