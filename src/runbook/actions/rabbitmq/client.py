"""RabbitMQ connections for the ``rabbitmq.*`` actions: the management HTTP API and AMQP 0-9-1.

The one module of the actions layer that imports pika and httpx: the other RabbitMQ modules use the
names in ``__all__`` (``AMQPError``, ``BasicProperties``, ``SelectConnection``...), so swapping or
upgrading the AMQP client touches this file only.

Both clients are built by factories taking :class:`~runbook.core.settings.Settings` and obtained through
``ctx.connections.get(...)``, so a run shares one HTTP client and tests can hand in their own.
Credentials travel only as HTTP basic auth / AMQP PLAIN: the URLs we show in errors never carry them,
and every error text is passed through :func:`runbook.core.redact.redact` as a second line of defence.

Why two protocols: the management API sees the whole broker (nodes, every queue, connections,
definitions, shovels, server-side ``get`` with truncation), but its statistics are sampled every
5 s. AMQP gives exact, real-time counts (a passive ``queue.declare``) and is the only way to move
messages with publisher confirms. Counts that a destructive action acts on come from AMQP.
"""

from __future__ import annotations

import copy
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pika
import pika.exceptions
from pika.spec import Basic, BasicProperties

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.redact import redact
from runbook.core.settings import Settings

BACKEND = "rabbitmq"

# The pika types and errors the other RabbitMQ modules need, under explicit names.
ConnectionParameters = pika.ConnectionParameters
BlockingConnection = pika.BlockingConnection
SelectConnection = pika.SelectConnection
AMQPError = pika.exceptions.AMQPError
ChannelClosedByBroker = pika.exceptions.ChannelClosedByBroker
UnroutableError = pika.exceptions.UnroutableError

__all__ = [
    "AMQPError",
    "BACKEND",
    "AmqpConnector",
    "Basic",
    "BasicProperties",
    "BlockingConnection",
    "ChannelClosedByBroker",
    "ConnectionParameters",
    "ManagementClient",
    "SelectConnection",
    "UnroutableError",
    "amqp",
    "amqp_connector",
    "close_quietly",
    "management",
    "management_client",
    "observe_deliveries",
    "passive_counts",
    "q",
    "settled_ready",
]


def q(value: str) -> str:
    """URL-encode one path segment (vhost ``/`` becomes ``%2F``, as the management API expects)."""
    return quote(value, safe="")


def _display_url(url: str) -> str:
    """``scheme://host:port/path`` with any credentials removed (for error messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ManagementClient:
    """A small typed wrapper over the management API.

    Every call takes the time it may spend (the step's remaining budget) and maps transport and HTTP
    failures to :class:`BackendUnavailable` / :class:`ActionError` with a redacted one-line message.
    """

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        user = unquote(parts.username) if parts.username else "guest"
        password = unquote(parts.password) if parts.password else "guest"
        self.display = _display_url(url).rstrip("/")
        self._http = httpx.Client(base_url=self.display, auth=(user, password), timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        not_found: str | None = None,
    ) -> Any:
        """One API call; returns the decoded JSON body (``None`` for empty bodies).

        ``not_found`` is the operator-facing message raised as :class:`ActionError` on a 404, so a
        missing queue reads "queue 'x' not found on vhost '/'" rather than an HTTP error.
        """
        try:
            response = self._http.request(
                method, path, json=json, params=params, headers=headers, timeout=max(0.1, timeout)
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendUnavailable(
                redact(f"management API at {self.display} unreachable: {type(exc).__name__}: {exc}"),
                backend=BACKEND,
            ) from None
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(
                redact(f"management API at {self.display} timed out on {method} {path}: {exc}"),
                backend=BACKEND,
            ) from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                redact(f"management API at {self.display} failed on {method} {path}: {exc}"), backend=BACKEND
            ) from None
        if response.status_code == 404 and not_found is not None:
            raise ActionError(not_found, backend=BACKEND)
        if response.status_code == 401:
            raise ActionError(
                f"management API at {self.display} refused the credentials (401);"
                " check RABBITMQ_MANAGEMENT_URL",
                backend=BACKEND,
            )
        if response.status_code >= 400:
            text = response.text[:300].replace("\n", " ")
            raise ActionError(
                redact(f"management API {method} {path} answered {response.status_code}: {text}"),
                backend=BACKEND,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def get(self, path: str, *, timeout: float, **kwargs: Any) -> Any:
        """``GET path``; see :meth:`request`."""
        return self.request("GET", path, timeout=timeout, **kwargs)

    def queue(self, vhost: str, name: str, *, timeout: float) -> dict[str, Any]:
        """The management view of one queue; a clear :class:`ActionError` when it does not exist."""
        queue: dict[str, Any] = self.get(
            f"/api/queues/{q(vhost)}/{q(name)}",
            timeout=timeout,
            not_found=f"queue {name!r} not found on vhost {vhost!r}",
        )
        return queue

    def close(self) -> None:
        self._http.close()


def management_client(settings: Settings) -> ManagementClient:
    """Factory for ``ctx.connections.get("rabbitmq.management", management_client)``."""
    return ManagementClient(settings.rabbitmq_management_url)


class AmqpConnector:
    """Opens AMQP connections on demand from ``RABBITMQ_URL``.

    It holds parameters, not a connection: pika connections are not thread-safe, and the mover
    needs an asynchronous (select) connection of its own, so each use opens and closes its own.
    """

    def __init__(self, url: str) -> None:
        self._params = pika.URLParameters(url)
        self.display = _display_url(url)

    def parameters(self, vhost: str, timeout: float) -> pika.ConnectionParameters:
        """Connection parameters for ``vhost`` bounded by ``timeout`` seconds."""
        params = copy.deepcopy(self._params)
        params.virtual_host = vhost
        params.socket_timeout = max(0.5, min(timeout, 10.0))
        params.stack_timeout = max(1.0, min(timeout, 15.0))
        params.blocked_connection_timeout = max(1.0, timeout)
        params.connection_attempts = 1
        params.client_properties = {"connection_name": "runbook"}
        return params

    def blocking(self, vhost: str, timeout: float) -> pika.BlockingConnection:
        """A blocking connection; connection failures become :class:`BackendUnavailable`."""
        try:
            return pika.BlockingConnection(self.parameters(vhost, timeout))
        except pika.exceptions.ProbableAuthenticationError as exc:
            raise ActionError(
                redact(f"AMQP at {self.display} refused the credentials: {exc!r}"), backend=BACKEND
            ) from None
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise ActionError(
                redact(f"AMQP at {self.display}: access to vhost {vhost!r} denied: {exc!r}"), backend=BACKEND
            ) from None
        except (pika.exceptions.AMQPConnectionError, OSError) as exc:
            raise BackendUnavailable(
                redact(f"AMQP at {self.display} unreachable: {exc!r}"), backend=BACKEND
            ) from None

    def close(self) -> None:  # nothing pooled; present so Connections.close() is uniform
        return None


def amqp_connector(settings: Settings) -> AmqpConnector:
    """Factory for ``ctx.connections.get("rabbitmq.amqp", amqp_connector)``."""
    return AmqpConnector(settings.rabbitmq_url)


def management(ctx: ActionContext) -> ManagementClient:
    """The run's management API client (shared by every RabbitMQ step of the run)."""
    return ctx.connections.get("rabbitmq.management", management_client)


def amqp(ctx: ActionContext) -> AmqpConnector:
    """The run's AMQP connector (parameters only; each use opens its own connection)."""
    return ctx.connections.get("rabbitmq.amqp", amqp_connector)


def close_quietly(conn: pika.BlockingConnection) -> None:
    """Close a blocking connection the broker may already have closed."""
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - already closed by the broker
        pass


def passive_counts(connector: AmqpConnector, vhost: str, queue: str, timeout: float) -> tuple[int, int]:
    """Exact ``(ready, consumers)`` of a queue right now (passive declare, not the 5 s stats).

    Raises :class:`ActionError` naming the queue when it does not exist (or its home node is down).
    """
    conn = connector.blocking(vhost, timeout)
    try:
        ch = conn.channel()
        try:
            ok = ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise ActionError(
                    f"queue {queue!r} not found on vhost {vhost!r} ({exc.reply_text})", backend=BACKEND
                ) from None
            raise ActionError(
                redact(f"queue {queue!r} on vhost {vhost!r}: {exc.reply_code} {exc.reply_text}"),
                backend=BACKEND,
            ) from None
        return ok.method.message_count, ok.method.consumer_count
    finally:
        close_quietly(conn)


def settled_ready(
    connector: AmqpConnector, vhost: str, queue: str, at_least: int, timeout: float = 3.0
) -> int:
    """The queue's ready count once at least ``at_least`` (or after ``timeout`` seconds).

    Messages released by closing a channel are requeued asynchronously by the queue process, so a
    count read right after a move can miss them for a few milliseconds.
    """
    end = time.monotonic() + timeout
    while True:
        ready, _ = passive_counts(connector, vhost, queue, max(1.0, timeout))
        if ready >= at_least or time.monotonic() >= end:
            return ready
        time.sleep(0.05)


def observe_deliveries(
    connector: AmqpConnector,
    vhost: str,
    queue: str,
    *,
    prefetch: int,
    seconds: float,
    known: set[str],
    grace: float = 0.4,
) -> list[dict[str, Any]]:
    """Watch what the broker delivers to a consumer of ours for at most ``seconds``; ack nothing.

    Why: a message in a hot requeue loop is in flight nearly all the time, so a peek at the ready
    messages rarely sees it. Our consumer takes the ready messages (holding them, never acking) and so
    keeps spare credit; the looping message, once its consumer rejects it with requeue, comes to us
    as often as to the consumer, carrying the ``redelivered`` flag *that consumer* caused. After the
    first unknown redelivered message we keep watching ``grace`` seconds: a crashed prefetch batch
    arrives as several at once and must not be mistaken for one poison message. Closing the channel
    returns everything we held to the queue (nothing is acked, so nothing can be lost).

    Returns one management-``get``-shaped record per delivery (properties, ``redelivered``,
    ``payload_bytes``); the bodies are dropped here and never leave this function.
    """
    conn = connector.blocking(vhost, seconds + 5.0)
    out: list[dict[str, Any]] = []
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=max(1, min(prefetch, 65535)))
        deadline = time.monotonic() + seconds
        for method, props, body in ch.consume(queue, inactivity_timeout=0.02):
            now = time.monotonic()
            if method is not None:
                out.append(
                    {
                        "properties": {
                            "message_id": props.message_id,
                            "type": props.type,
                            "timestamp": props.timestamp,
                            "headers": dict(props.headers or {}),
                        },
                        "redelivered": bool(method.redelivered),
                        "payload_bytes": len(body or b""),
                    }
                )
                if method.redelivered and props.message_id not in known:
                    deadline = min(deadline, now + grace)
            if now >= deadline or len(out) >= prefetch:
                break
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise ActionError(
            redact(f"watching queue {queue!r} on vhost {vhost!r}: {exc.reply_code} {exc.reply_text}"),
            backend=BACKEND,
        ) from None
    except (pika.exceptions.AMQPConnectionError, OSError) as exc:
        raise BackendUnavailable(redact(f"AMQP at {connector.display}: {exc!r}"), backend=BACKEND) from None
    finally:
        close_quietly(conn)  # every delivery we held returns to the queue unacked
    return out
