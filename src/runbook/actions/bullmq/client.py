"""The only module importing redis-py: the Redis connection of BullMQ queues (``REDIS_URL``).

Everything else in this package talks to :class:`RedisClient`, which bounds every call by the
step's remaining time and turns redis-py's errors into :class:`BackendUnavailable` (cannot reach
Redis: transient, retried) or :class:`ActionError` (anything else), with redacted messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.redact import redact, register, secrets_in_url
from runbook.core.settings import Settings

BACKEND = "bullmq"


class RedisClient:
    """A redis-py client with typed errors; ``script`` runs a Lua script atomically (EVALSHA)."""

    def __init__(self, url: str) -> None:
        register(secrets_in_url(url))
        self.url = url
        self.client: redis.Redis = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=30
        )
        self._scripts: dict[str, Any] = {}

    def call(self, *args: Any) -> Any:
        """One Redis command (``call("LLEN", key)``)."""
        try:
            execute: Callable[..., Any] = self.client.execute_command  # redis-py leaves it untyped
            return execute(*args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(redact(f"Redis unreachable: {exc}"), backend=BACKEND) from None
        except redis.RedisError as exc:
            raise ActionError(redact(f"Redis error: {exc}"), backend=BACKEND) from None

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one round trip (not a transaction: reads only)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            queue: Callable[..., Any] = pipe.execute_command
            for command in commands:
                queue(*command)
            return list(pipe.execute())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(redact(f"Redis unreachable: {exc}"), backend=BACKEND) from None
        except redis.RedisError as exc:
            raise ActionError(redact(f"Redis error: {exc}"), backend=BACKEND) from None

    def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script atomically: Redis executes it as one command, nothing interleaves."""
        registered = self._scripts.get(source)
        if registered is None:
            registered = self._scripts[source] = self.client.register_script(source)
        try:
            return registered(keys=list(keys), args=list(args))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(redact(f"Redis unreachable: {exc}"), backend=BACKEND) from None
        except redis.RedisError as exc:
            raise ActionError(redact(f"Redis script error: {exc}"), backend=BACKEND) from None

    def close(self) -> None:
        self.client.close()


def redis_client(settings: Settings) -> RedisClient:
    return RedisClient(settings.redis_url)


def redis_of(ctx: ActionContext) -> RedisClient:
    return ctx.connections.get("bullmq.redis", redis_client)
