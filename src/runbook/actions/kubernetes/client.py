"""Kubernetes plumbing for the ``kubernetes.*`` actions: the client factory, error mapping, readers.

The one module of the actions layer that imports the official ``kubernetes`` client. The other
modules get what they need from here by name: :func:`call` for every API call, the object builders
(:func:`eviction`, :func:`pod_disruption_budget`), :func:`stream_exec` for the exec websocket and
:class:`ApiException` (``__all__``). Every API call goes through :func:`call`, which bounds it by the
step's remaining time (``_request_timeout``; urllib3 retries are off so a timeout is never silently
multiplied) and turns the client's exceptions into one-line, redacted :class:`ActionError` /
:class:`BackendUnavailable` messages naming kubernetes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core import bounded
from runbook.core.lazy import lazy_module
from runbook.core.redact import redact
from runbook.core.redact import register as register_secrets
from runbook.core.settings import Settings

if TYPE_CHECKING:
    import urllib3
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes import stream as k8s_stream
    from kubernetes.client import exceptions as k8s_exceptions
    from kubernetes.client.exceptions import ApiException
else:  # imported on the first call: loading the registry must not pay for the client (~0.1 s)
    urllib3 = lazy_module("urllib3")
    k8s = lazy_module("kubernetes.client")
    k8s_config = lazy_module("kubernetes.config")
    k8s_stream = lazy_module("kubernetes.stream")
    k8s_exceptions = lazy_module("kubernetes.client.exceptions")


def __getattr__(name: str) -> Any:
    """``ApiException`` for the other modules, resolved when they first need it (PEP 562)."""
    if name == "ApiException":
        return k8s_exceptions.ApiException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


BACKEND = "kubernetes"
CONNECTION_KEY = "kubernetes"
T = TypeVar("T")

__all__ = [
    "BACKEND",
    "CONNECTION_KEY",
    "ApiException",
    "KubeApiError",
    "KubeClients",
    "KubeUnavailable",
    "Rollout",
    "as_dict",
    "call",
    "clients",
    "controller_of",
    "eviction",
    "is_mirror",
    "kube_clients",
    "label_selector",
    "patch_workload",
    "pod_disruption_budget",
    "pod_is_ready",
    "read_pod_log",
    "read_workload",
    "redact_log",
    "rollout_of",
    "run_bounded",
    "stream_exec",
]


class KubeApiError(ActionError):
    """The API server answered with an error status (kept so callers can branch on 404 or 429)."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message, backend=BACKEND)
        self.status = status
        self.reason = reason


class KubeUnavailable(BackendUnavailable):
    """The API server could not be reached, timed out, or answered 5xx."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message, backend=BACKEND)
        self.status = status


@dataclass
class KubeClients:
    """One ``ApiClient`` and the typed API groups the actions use; closed with the run's connections."""

    api: k8s.ApiClient
    core: k8s.CoreV1Api
    apps: k8s.AppsV1Api
    policy: k8s.PolicyV1Api
    storage: k8s.StorageV1Api

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        close: Callable[[], None] = self.api.close  # the client leaves ApiClient.close unannotated
        close()


# The client leaves its config loaders unannotated; these are the signatures this module uses.
def _load_kube_config(config_file: str, cfg: k8s.Configuration) -> None:
    load: Callable[..., None] = k8s_config.load_kube_config
    load(config_file=config_file, client_configuration=cfg, persist_config=False)


def _load_incluster_config(cfg: k8s.Configuration) -> None:
    load: Callable[..., None] = k8s_config.load_incluster_config
    load(client_configuration=cfg)


def kube_clients(settings: Settings) -> KubeClients:
    """Connection factory: ``KUBECONFIG`` (``settings.kubeconfig``) or, without it, in-cluster config."""
    cfg = k8s.Configuration()
    try:
        if settings.kubeconfig:
            _load_kube_config(settings.kubeconfig, cfg)
        else:
            _load_incluster_config(cfg)
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        where = (
            f"KUBECONFIG {settings.kubeconfig}"
            if settings.kubeconfig
            else "in-cluster config (KUBECONFIG unset)"
        )
        raise ActionError(redact(f"cannot load {where}: {exc}"), backend=BACKEND) from None
    # The bearer token must never reach a log line or an exception text.
    register_secrets(v.split(" ", 1)[-1] for v in (cfg.api_key or {}).values())
    # No hidden urllib3 retries: a read timeout retried three times would quadruple the step's bound.
    cfg.retries = False
    api = k8s.ApiClient(cfg)
    return KubeClients(
        api=api,
        core=k8s.CoreV1Api(api),
        apps=k8s.AppsV1Api(api),
        policy=k8s.PolicyV1Api(api),
        storage=k8s.StorageV1Api(api),
    )


def clients(ctx: ActionContext) -> KubeClients:
    """The run's Kubernetes clients (shared by every Kubernetes step of the run)."""
    return ctx.connections.get(CONNECTION_KEY, kube_clients)


def _server_message(exc: ApiException) -> str:
    """The ``message`` of the API server's ``Status`` body (falls back to the HTTP reason)."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            return str(body)[:300]
        if isinstance(data, dict):
            message = str(data.get("message") or exc.reason or "")
            causes = (data.get("details") or {}).get("causes") or []
            extra = "; ".join(
                str(c.get("message")) for c in causes if isinstance(c, dict) and c.get("message")
            )
            return f"{message} ({extra})" if extra else message
    return str(exc.reason or "")


def call(
    ctx: ActionContext,
    what: str,
    fn: Callable[..., T],
    *args: Any,
    timeout: float | None = None,
    **kwargs: Any,
) -> T:
    """Run one client call bounded by the step's remaining time, mapping every failure to ActionError.

    ``what`` names the operation for the operator ("read deployment orchestrator/orchestrator").
    """
    kwargs["_request_timeout"] = max(0.1, min(timeout, ctx.remaining()) if timeout else ctx.remaining())
    try:
        return fn(*args, **kwargs)
    except k8s_exceptions.ApiException as exc:
        status = int(exc.status or 0)
        if status == 0:
            raise KubeUnavailable(redact(f"{what}: API server unreachable ({exc.reason})")) from None
        message = redact(_server_message(exc))
        if status >= 500:
            raise KubeUnavailable(
                f"{what}: API server answered {status} {exc.reason}: {message}", status=status
            ) from None
        if status == 404:
            raise KubeApiError(f"{what}: not found ({message})", status=404, reason="NotFound") from None
        if status in (401, 403):
            raise KubeApiError(f"{what}: not authorised ({status}: {message})", status=status) from None
        raise KubeApiError(
            f"{what}: API server answered {status}: {message}", status=status, reason=str(exc.reason)
        ) from None
    except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError subclass: test it first
        raise KubeUnavailable(redact(f"{what}: API server unreachable ({exc})")) from None
    except urllib3.exceptions.TimeoutError:
        raise KubeUnavailable(
            f"{what}: API server did not answer within {kwargs['_request_timeout']:.1f}s (timeout)"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeUnavailable(
            redact(f"{what}: API server unreachable ({type(exc).__name__}: {exc})")
        ) from None
    except ValueError as exc:  # the client could not deserialize the answer into its models
        raise ActionError(
            redact(f"{what}: unexpected answer from the API server ({exc})"), backend=BACKEND
        ) from None


def run_bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn`` within ``timeout`` seconds, else :class:`KubeUnavailable`.

    For the websocket exec path: websocket-client's handshake takes no timeout from the kubernetes
    client, so a hung API server would otherwise hang the step forever.
    """
    try:
        return bounded.run_bounded(fn, timeout, "kube-exec")
    except bounded.DeadlineExceeded:
        raise KubeUnavailable(f"{what}: no answer within {timeout:.1f}s (timeout)") from None


# --------------------------------------------------------------------------------------------- redaction

_LOG_SECRETS = [
    # JSON-ish "password": "x" (runbook.core.redact handles password=x and password: x)
    re.compile(
        r'(?i)("(?:[\w-]*password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)"\s*:\s*)"[^"]*"'
    ),
    re.compile(
        r"(?i)\b((?:[\w-]*_)?(?:password|passwd|pwd|secret|credentials?|private[_-]?key|access[_-]?key)\s*[=:]\s*)\S+"
    ),
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer)\s+)\S+"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
]


def redact_log(text: str) -> str:
    """``runbook.core.redact.redact`` plus the credential shapes application logs print."""
    text = redact(text)
    text = _LOG_SECRETS[0].sub(lambda m: f'{m.group(1)}"***"', text)
    text = _LOG_SECRETS[1].sub(lambda m: f"{m.group(1)}***", text)
    text = _LOG_SECRETS[2].sub(lambda m: f"{m.group(1)}***", text)
    return _LOG_SECRETS[3].sub("***", text)


# --------------------------------------------------------------------------------------------- readers


def read_pod_log(ctx: ActionContext, what: str, namespace: str, name: str, **options: Any) -> bytes:
    """The pod's log as the raw bytes the API server sent (``options``: ``tail_lines``, ``limit_bytes``,
    ``previous``, ``container``...).

    Read unpreloaded because the client's own str decoding rewrites JSON-looking log lines. The
    client annotates this call as returning ``str``; with ``_preload_content=False`` it returns the
    urllib3 response instead, whose ``data`` is the body."""
    response = cast(
        urllib3.BaseHTTPResponse,
        call(
            ctx,
            what,
            clients(ctx).core.read_namespaced_pod_log,
            name,
            namespace,
            _preload_content=False,
            **options,
        ),
    )
    return response.data


def read_workload(ctx: ActionContext, kind: str, namespace: str, name: str) -> Any:
    """The deployment or statefulset (404 -> ActionError saying which one is missing)."""
    kc = clients(ctx)
    if kind == "statefulset":
        return call(
            ctx, f"read statefulset {namespace}/{name}", kc.apps.read_namespaced_stateful_set, name, namespace
        )
    return call(
        ctx, f"read deployment {namespace}/{name}", kc.apps.read_namespaced_deployment, name, namespace
    )


def patch_workload(ctx: ActionContext, kind: str, namespace: str, name: str, body: Any) -> Any:
    """Strategic-merge patch of a deployment or statefulset; returns the updated object."""
    kc = clients(ctx)
    fn = (
        kc.apps.patch_namespaced_stateful_set
        if kind == "statefulset"
        else kc.apps.patch_namespaced_deployment
    )
    return call(ctx, f"patch {kind} {namespace}/{name}", fn, name, namespace, body)


@dataclass(frozen=True)
class Rollout:
    """Where a deployment/statefulset rollout stands, the way ``kubectl rollout status`` judges it."""

    desired: int
    ready: int
    available: int
    updated: int
    current: int
    generation: int
    observed_generation: int
    deadline_exceeded: str = ""

    @property
    def done(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.ready == self.desired
            and self.available == self.desired
            and self.current == self.desired
        )

    def describe(self) -> str:
        gen = (
            ""
            if self.observed_generation >= self.generation
            else (f", observedGeneration {self.observed_generation} < generation {self.generation}")
        )
        return (
            f"{self.updated}/{self.desired} updated, {self.ready}/{self.desired} ready, "
            f"{self.available} available{gen}"
        )


def rollout_of(obj: Any) -> Rollout:
    """The rollout state of a deployment/statefulset object."""
    spec, status, meta = obj.spec, obj.status, obj.metadata
    deadline = ""
    for cond in getattr(status, "conditions", None) or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            deadline = cond.message or "progress deadline exceeded"
    return Rollout(
        desired=int(spec.replicas if spec.replicas is not None else 1),
        ready=int(status.ready_replicas or 0) if status else 0,
        available=int(getattr(status, "available_replicas", None) or 0) if status else 0,
        updated=int(status.updated_replicas or 0) if status else 0,
        current=int(status.replicas or 0) if status else 0,
        generation=int(meta.generation or 0),
        observed_generation=int(status.observed_generation or 0) if status else 0,
        deadline_exceeded=deadline,
    )


def as_dict(kc: KubeClients, obj: Any) -> Any:
    """A client model as the JSON the API server would send (for patches built from read objects)."""
    sanitize: Callable[[Any], Any] = kc.api.sanitize_for_serialization
    return sanitize(obj)


def controller_of(pod: Any) -> tuple[str, str] | None:
    """(kind, name) of the pod's controlling owner, or None for an unmanaged pod."""
    for ref in pod.metadata.owner_references or []:
        if ref.controller:
            return ref.kind, ref.name
    return None


def is_mirror(pod: Any) -> bool:
    """A static pod's API mirror (the kubelet owns it; eviction cannot remove it)."""
    return "kubernetes.io/config.mirror" in (pod.metadata.annotations or {})


def pod_is_ready(pod: Any) -> bool:
    """The pod's Ready condition is True."""
    for cond in (pod.status.conditions if pod.status else None) or []:
        if cond.type == "Ready":
            status: str | None = cond.status
            return status == "True"
    return False


def label_selector(match_labels: dict[str, str]) -> str:
    """``k=v,k2=v2`` (sorted) for a ``label_selector`` query parameter."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


# --------------------------------------------------------------------------------------------- objects


def eviction(name: str, namespace: str, grace_period_seconds: int | None) -> k8s.V1Eviction:
    """The Eviction body for one pod (PodDisruptionBudgets decide whether the API server accepts it)."""
    return k8s.V1Eviction(
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
        delete_options=None
        if grace_period_seconds is None
        else k8s.V1DeleteOptions(grace_period_seconds=grace_period_seconds),
    )


def pod_disruption_budget(
    name: str,
    namespace: str,
    *,
    resource_version: str | None,
    match_labels: dict[str, str],
    min_available: int | str | None,
    max_unavailable: int | str | None,
) -> k8s.V1PodDisruptionBudget:
    """A PodDisruptionBudget body; ``resource_version`` makes a replace fail on a concurrent edit."""
    return k8s.V1PodDisruptionBudget(
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, resource_version=resource_version),
        spec=k8s.V1PodDisruptionBudgetSpec(
            selector=k8s.V1LabelSelector(match_labels=dict(match_labels)),
            min_available=min_available,
            max_unavailable=max_unavailable,
        ),
    )


def stream_exec(
    kc: KubeClients, pod: str, namespace: str, *, command: list[str], container: str, timeout: float
) -> Any:
    """Open the exec websocket (stdout and stderr, no stdin, no tty) for ``command`` in ``container``.

    Returns the client's ``WSClient``; the caller reads it, bounds it and closes it. A refused
    handshake (404 pod, 403 RBAC) raises :class:`ApiException`.
    """
    return k8s_stream.stream(
        kc.core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=command,
        container=container,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        _request_timeout=timeout,
    )
