"""Pods: listing with health counts, redacted logs, events, and deleting one pod.

Bodies and ``describe`` texts of ``kubernetes.list_pods``, ``pod_logs``, ``events`` and
``delete_pod``; :func:`read_pod` is shared with the drain and exec modules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kubernetes.client import (
    BACKEND,
    KubeApiError,
    call,
    clients,
    controller_of,
    pod_is_ready,
    read_pod_log,
    redact_log,
)
from runbook.actions.kubernetes.models import (
    DeletePodParams,
    DeletePodResult,
    EventInfo,
    EventsParams,
    EventsResult,
    ListPodsParams,
    ListPodsResult,
    PodInfo,
    PodLog,
    PodLogsParams,
    PodLogsResult,
)


def _pod_info(pod: Any) -> PodInfo:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    waiting = term = ""
    exit_code = None
    for cs in statuses:
        if cs.state and cs.state.waiting and cs.state.waiting.reason and not waiting:
            waiting = cs.state.waiting.reason
        if cs.state and cs.state.terminated and cs.state.terminated.reason and not term:
            term, exit_code = cs.state.terminated.reason, cs.state.terminated.exit_code
        last = cs.last_state.terminated if cs.last_state else None
        if last and last.reason and not term:
            term, exit_code = last.reason, last.exit_code
    owner = controller_of(pod)
    return PodInfo(
        name=pod.metadata.name,
        phase=(pod.status.phase if pod.status else None) or "Unknown",
        ready=pod_is_ready(pod),
        ready_containers=f"{sum(1 for cs in statuses if cs.ready)}/{len(pod.spec.containers)}",
        restarts=sum(int(cs.restart_count or 0) for cs in statuses),
        node=pod.spec.node_name or "",
        waiting_reason=waiting,
        last_termination_reason=term,
        last_exit_code=exit_code,
        owner=f"{owner[0]}/{owner[1]}" if owner else "",
    )


def _event_time(ev: Any) -> datetime:
    for value in (
        ev.last_timestamp,
        getattr(ev, "event_time", None),
        ev.first_timestamp,
        ev.metadata.creation_timestamp,
    ):
        if value:
            stamp: datetime = value
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def read_pod(ctx: ActionContext, namespace: str, name: str) -> Any:
    """The pod (404 -> ActionError naming it)."""
    return call(ctx, f"read pod {namespace}/{name}", clients(ctx).core.read_namespaced_pod, name, namespace)


def list_pods(ctx: ActionContext, params: ListPodsParams) -> ListPodsResult:
    """Pods by selector, the sickest first (see ``kubernetes.list_pods``)."""
    kc = clients(ctx)
    kwargs: dict[str, Any] = {}
    if params.selector:
        kwargs["label_selector"] = params.selector
    if params.node:
        kwargs["field_selector"] = f"spec.nodeName={params.node}"
    pods = call(
        ctx, f"list pods in {params.namespace}", kc.core.list_namespaced_pod, params.namespace, **kwargs
    )
    infos = [_pod_info(p) for p in pods.items]
    # The sickest first: what the on-call engineer should look at.
    infos.sort(key=lambda i: (i.ready, not i.waiting_reason, -i.restarts, i.name))
    crash = sum(1 for i in infos if i.waiting_reason == "CrashLoopBackOff")
    oom = sum(1 for i in infos if i.last_termination_reason == "OOMKilled")
    ready = sum(1 for i in infos if i.ready)
    restarts = sum(i.restarts for i in infos)
    what = f" ({params.selector})" if params.selector else ""
    problems = [f"{n} {label}" for n, label in ((crash, "CrashLoopBackOff"), (oom, "OOMKilled")) if n]
    return ListPodsResult(
        summary=f"{len(infos)} pods in {params.namespace}{what}: {ready} ready"
        + (", " + ", ".join(problems) if problems else "")
        + f", {restarts} restarts",
        namespace=params.namespace,
        selector=params.selector,
        total=len(infos),
        ready=ready,
        not_ready=len(infos) - ready,
        crash_looping=crash,
        oom_killed=oom,
        restarts=restarts,
        pods=infos[: params.limit],
    )


def pod_logs(ctx: ActionContext, params: PodLogsParams) -> PodLogsResult:
    """Redacted, grepped log tails of one pod or a selector (see ``kubernetes.pod_logs``)."""
    kc = clients(ctx)
    if params.pod:
        names = [params.pod]
    else:
        pods = call(
            ctx,
            f"list pods in {params.namespace}",
            kc.core.list_namespaced_pod,
            params.namespace,
            label_selector=params.selector,
        )
        found = sorted(p.metadata.name for p in pods.items if p.metadata and p.metadata.name)
        names = found[: params.max_pods]
        if not names:
            raise ActionError(f"no pod in {params.namespace} matches {params.selector!r}", backend=BACKEND)
    pattern = re.compile(params.grep) if params.grep else None
    out: list[str] = []
    per_pod: list[PodLog] = []
    total_matched = 0
    for name in names:
        options: dict[str, Any] = {
            "tail_lines": params.tail_lines,
            "limit_bytes": params.max_bytes,
            "previous": params.previous,
        }
        if params.container:
            options["container"] = params.container
        try:
            what = f"read logs of pod {params.namespace}/{name}"
            raw = read_pod_log(ctx, what, params.namespace, name, **options)
        except KubeApiError as exc:
            if params.pod:
                raise
            per_pod.append(PodLog(pod=name, lines=0, matched=0, error=str(exc)))
            continue
        lines = [redact_log(line) for line in raw.decode("utf-8", "replace").splitlines()]
        kept = [line for line in lines if pattern is None or pattern.search(line)]
        total_matched += len(kept)
        per_pod.append(PodLog(pod=name, lines=len(lines), matched=len(kept)))
        out.extend(kept if params.pod else [f"{name}: {line}" for line in kept])
    target = params.pod or f"{len(names)} pods ({params.selector})"
    grep = f" matching {params.grep!r}" if params.grep else ""
    return PodLogsResult(
        summary=f"{total_matched} log lines{grep} from {params.namespace}/{target}"
        + (" (previous container)" if params.previous else ""),
        namespace=params.namespace,
        lines=out,
        matched=total_matched,
        pods=per_pod,
    )


def events(ctx: ActionContext, params: EventsParams) -> EventsResult:
    """Events newest first with counts per reason (see ``kubernetes.events``)."""
    kc = clients(ctx)
    fields = []
    if params.kind:
        fields.append(f"involvedObject.kind={params.kind}")
    if params.name:
        fields.append(f"involvedObject.name={params.name}")
    if params.warnings_only:
        fields.append("type=Warning")
    kwargs: dict[str, Any] = {"field_selector": ",".join(fields)} if fields else {}
    evs = call(
        ctx, f"list events in {params.namespace}", kc.core.list_namespaced_event, params.namespace, **kwargs
    )
    items = sorted(evs.items, key=_event_time, reverse=True)
    if params.since_minutes:
        cutoff = datetime.now(UTC) - timedelta(minutes=params.since_minutes)
        items = [e for e in items if _event_time(e) >= cutoff]
    reasons: dict[str, int] = {}
    for e in items:
        reasons[e.reason or ""] = reasons.get(e.reason or "", 0) + int(e.count or 1)
    warnings = sum(1 for e in items if e.type == "Warning")
    infos = [
        EventInfo(
            type=e.type or "",
            reason=e.reason or "",
            object=f"{e.involved_object.kind}/{e.involved_object.name}",
            message=redact_log(e.message or "")[:500],
            count=int(e.count or 1),
            last_seen=_event_time(e).isoformat(),
        )
        for e in items[: params.limit]
    ]
    about = (
        f" for {params.kind or ''}{'/' if params.kind and params.name else ''}{params.name or ''}"
        if (params.kind or params.name)
        else ""
    )
    top = ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    return EventsResult(
        summary=f"{len(items)} events in {params.namespace}{about} ({warnings} warnings)"
        + (f": {top}" if top else ""),
        namespace=params.namespace,
        total=len(items),
        warnings=warnings,
        reasons=reasons,
        events=infos,
    )


def describe_delete_pod(ctx: ActionContext, params: DeletePodParams) -> str:
    pod = read_pod(ctx, params.namespace, params.pod)
    owner = controller_of(pod)
    info = _pod_info(pod)
    text = (
        f"delete pod {params.namespace}/{params.pod} (phase {info.phase}, "
        f"{'ready' if info.ready else 'not ready'}, "
        f"{info.restarts} restarts, node {info.node or '-'}); "
    )
    if owner:
        return text + f"{owner[0]} {owner[1]} recreates it"
    return text + (
        "it is unmanaged and will NOT be recreated"
        if params.allow_unmanaged
        else "REFUSED: it is unmanaged (no controller would recreate it); set allow_unmanaged"
    )


def delete_pod(ctx: ActionContext, params: DeletePodParams) -> DeletePodResult:
    """Delete a pod its controller recreates (see ``kubernetes.delete_pod``)."""
    pod = read_pod(ctx, params.namespace, params.pod)
    owner = controller_of(pod)
    if owner is None and not params.allow_unmanaged:
        raise GuardrailRefused(
            f"pod {params.namespace}/{params.pod} has no controller and would not be recreated; "
            "set allow_unmanaged: true to delete it anyway",
            backend=BACKEND,
        )
    kwargs = (
        {} if params.grace_period_seconds is None else {"grace_period_seconds": params.grace_period_seconds}
    )
    call(
        ctx,
        f"delete pod {params.namespace}/{params.pod}",
        clients(ctx).core.delete_namespaced_pod,
        params.pod,
        params.namespace,
        **kwargs,
    )
    owner_text = f"{owner[0]}/{owner[1]}" if owner else ""
    return DeletePodResult(
        summary=f"deleted pod {params.namespace}/{params.pod}"
        + (f"; {owner_text} will recreate it" if owner else " (unmanaged: not recreated)"),
        namespace=params.namespace,
        pod=params.pod,
        node=pod.spec.node_name or "",
        owner=owner_text,
    )
