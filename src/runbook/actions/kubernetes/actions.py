"""Kubernetes actions (official ``kubernetes`` client): what the seeds' runbooks do with kubectl.

Read-only: ``get_deployment``, ``list_pods``, ``pod_logs``, ``events``, ``wait_rollout``.
Destructive (each with a ``describe`` that reads the target and states current -> new):
``scale``, ``rollout_restart``, ``annotate``, ``delete_pod``, ``cordon``, ``uncordon``, ``drain``,
``apply_pdb``, ``exec``.

The client comes from ``ctx.connections`` (factory in ``kubernetes_api``: KUBECONFIG or in-cluster);
every call is bounded by the step's remaining time, and API errors become one-line ActionErrors
naming kubernetes. Params/results live in ``kubernetes_models``; actions must be defined here (the
registry loads this module).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes.stream import stream

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kubernetes.client import (
    BACKEND,
    KubeApiError,
    KubeUnavailable,
    call,
    clients,
    controller_of,
    patch_workload,
    read_workload,
    redact_log,
    rollout_of,
    run_bounded,
)
from runbook.actions.kubernetes.models import (
    AnnotateParams,
    AnnotateResult,
    ApplyPdbParams,
    ApplyPdbResult,
    Condition,
    DeletePodParams,
    DeletePodResult,
    DeploymentResult,
    DrainParams,
    DrainResult,
    EventInfo,
    EventsParams,
    EventsResult,
    ExecParams,
    ExecResultModel,
    ListPodsParams,
    ListPodsResult,
    NodeParams,
    NodeResult,
    PodLog,
    PodLogsParams,
    PodLogsResult,
    RestartResult,
    ScaleParams,
    ScaleResult,
    WaitRolloutParams,
    WaitRolloutResult,
    WorkloadParams,
    allowed_by,
)
from runbook.actions.kubernetes.ops import (
    RESTARTED_AT,
    _annotation_changes,
    _drain_plan,
    _event_time,
    _exec_target,
    _exit_code,
    _pdb_state,
    _pod_info,
    _read_annotatable,
    _read_pod,
    _scale_plan,
    _set_unschedulable,
    _target,
    _wait_gone,
    describe_annotate,
    describe_apply_pdb,
    describe_cordon,
    describe_delete_pod,
    describe_drain,
    describe_exec,
    describe_rollout_restart,
    describe_scale,
    describe_uncordon,
)
from runbook.actions.registry import action

# ============================================================================================ read-only


@action(
    "kubernetes.get_deployment", summary="Replicas (desired/ready/available/updated), conditions, annotations"
)
def get_deployment(ctx: ActionContext, params: WorkloadParams) -> DeploymentResult:
    """Read a deployment (or statefulset with ``kind: statefulset``): replica counts, rollout state,
    conditions and annotations (e.g. a maintenance flag). ``kubectl get deploy NAME -o yaml``."""
    obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
    r = rollout_of(obj)
    conditions = [
        Condition(type=c.type, status=c.status, reason=c.reason or "", message=redact_log(c.message or ""))
        for c in (obj.status.conditions if obj.status else None) or []
    ]
    paused = bool(getattr(obj.spec, "paused", False))
    state = "rollout complete" if r.done else f"rollout in progress ({r.describe()})"
    if r.deadline_exceeded:
        state = f"rollout stuck: {r.deadline_exceeded}"
    return DeploymentResult(
        summary=f"{params.kind} {params.namespace}/{params.deployment}: {r.ready}/{r.desired} ready, "
        f"{r.updated} updated, {r.available} available; {state}{' (paused)' if paused else ''}",
        namespace=params.namespace,
        name=params.deployment,
        kind=params.kind,
        desired=r.desired,
        ready=r.ready,
        available=r.available,
        updated=r.updated,
        generation=r.generation,
        observed_generation=r.observed_generation,
        rollout_complete=r.done,
        paused=paused,
        images=[c.image or "" for c in obj.spec.template.spec.containers],
        conditions=conditions,
        annotations=dict(obj.metadata.annotations or {}),
    )


@action(
    "kubernetes.list_pods", summary="Pods with phase, readiness, restarts, OOMKilled/CrashLoopBackOff counts"
)
def list_pods(ctx: ActionContext, params: ListPodsParams) -> ListPodsResult:
    """List pods by label selector (and node): phase, readiness, restarts, the waiting reason
    (CrashLoopBackOff, ImagePullBackOff...) and the last termination reason (OOMKilled, Error...),
    with counts a ``when:`` can test (``steps.pods.crash_looping > 0``). ``kubectl get pods -l ...``."""
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


@action("kubernetes.pod_logs", summary="Tail (and grep) a pod's logs, secrets redacted")
def pod_logs(ctx: ActionContext, params: PodLogsParams) -> PodLogsResult:
    """Last ``tail_lines`` lines of one pod, or of up to ``max_pods`` pods matching a selector
    (lines prefixed with the pod name), optionally only lines matching ``grep`` and optionally of the
    previous (crashed) container. Every line is redacted before grep and before it leaves the action,
    so neither the result nor the grep can reveal a password. ``kubectl logs --tail=N | grep``."""
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
        names = sorted(p.metadata.name for p in pods.items)[: params.max_pods]
        if not names:
            raise ActionError(f"no pod in {params.namespace} matches {params.selector!r}", backend=BACKEND)
    pattern = re.compile(params.grep) if params.grep else None
    out: list[str] = []
    per_pod: list[PodLog] = []
    total_matched = 0
    for name in names:
        kwargs: dict[str, Any] = {
            "tail_lines": params.tail_lines,
            "limit_bytes": params.max_bytes,
            "previous": params.previous,
            "_preload_content": False,
        }
        if params.container:
            kwargs["container"] = params.container
        try:
            raw = call(
                ctx,
                f"read logs of pod {params.namespace}/{name}",
                kc.core.read_namespaced_pod_log,
                name,
                params.namespace,
                **kwargs,
            )
        except KubeApiError as exc:
            if params.pod:
                raise
            per_pod.append(PodLog(pod=name, lines=0, matched=0, error=str(exc)))
            continue
        # Raw bytes: the client's own str decoding rewrites JSON-looking log lines.
        lines = [redact_log(line) for line in raw.data.decode("utf-8", "replace").splitlines()]
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


@action("kubernetes.events", summary="Recent events of a namespace or object, warnings first-class")
def events(ctx: ActionContext, params: EventsParams) -> EventsResult:
    """Events newest first, filtered by involved object (kind/name), warnings only and age; with a
    count per reason (BackOff, OOMKilling, FailedScheduling...). ``kubectl get events``."""
    kc = clients(ctx)
    fields = []
    if params.kind:
        fields.append(f"involvedObject.kind={params.kind}")
    if params.name:
        fields.append(f"involvedObject.name={params.name}")
    if params.warnings_only:
        fields.append("type=Warning")
    kwargs = {"field_selector": ",".join(fields)} if fields else {}
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


@action("kubernetes.wait_rollout", summary="Wait until a rollout completes (updated == ready == desired)")
def wait_rollout(ctx: ActionContext, params: WaitRolloutParams) -> WaitRolloutResult:
    """Poll until the controller has observed the latest generation and every replica is updated,
    ready and available; fails on timeout or when the deployment reports ProgressDeadlineExceeded.
    Transient API errors while polling are tolerated until the deadline (an API blip is not a failed
    rollout). ``kubectl rollout status``."""
    start = time.monotonic()
    deadline = start + min(params.timeout_seconds, ctx.remaining(default=params.timeout_seconds))
    what = f"{params.kind} {params.namespace}/{params.deployment}"
    last = "no status read yet"
    while True:
        try:
            obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
        except KubeUnavailable as exc:
            last = str(exc)
        else:
            r = rollout_of(obj)
            if r.done:
                waited = round(time.monotonic() - start, 2)
                return WaitRolloutResult(
                    summary=f"rollout of {what} complete: {r.ready}/{r.desired} ready after {waited}s",
                    namespace=params.namespace,
                    name=params.deployment,
                    desired=r.desired,
                    ready=r.ready,
                    updated=r.updated,
                    waited_seconds=waited,
                )
            if r.deadline_exceeded:
                raise ActionError(
                    f"rollout of {what} failed: {r.deadline_exceeded} ({r.describe()})", backend=BACKEND
                )
            last = r.describe()
        left = deadline - time.monotonic()
        if left <= 0:
            raise ActionError(
                f"rollout of {what} not complete after {time.monotonic() - start:.1f}s: {last}",
                backend=BACKEND,
            )
        time.sleep(min(params.poll_interval, left))


# ============================================================================================ scale


@action(
    "kubernetes.scale",
    summary="Scale a deployment/statefulset within max_replicas and the DB budget",
    destructive=True,
    describe=describe_scale,
)
def scale(ctx: ActionContext, params: ScaleParams) -> ScaleResult:
    """Set the replica count through the scale subresource. Guardrails: scaling up beyond
    ``max_replicas`` is refused; with ``use_database`` the target must also fit the PostgreSQL
    connection budget floor((max_connections - db_headroom) / db_pool_size) (seed: "don't exceed DB
    connection budgets when scaling consumers"). Scaling down is always allowed, even from above a
    bound, because it only relieves pressure. If the budget cannot be read the action refuses."""
    current, budget, refusal, _ = _scale_plan(ctx, params)
    what = f"{params.kind} {params.namespace}/{params.deployment}"
    if refusal:
        raise GuardrailRefused(f"refusing to scale {what}: {refusal}", backend=BACKEND)
    if params.replicas != current:
        kc = clients(ctx)
        fn = (
            kc.apps.patch_namespaced_stateful_set_scale
            if params.kind == "statefulset"
            else kc.apps.patch_namespaced_deployment_scale
        )
        call(
            ctx,
            f"scale {what}",
            fn,
            params.deployment,
            params.namespace,
            {"spec": {"replicas": params.replicas}},
        )
    return ScaleResult(
        summary=f"scaled {what} from {current} to {params.replicas} replicas"
        if params.replicas != current
        else f"{what} already has {current} replicas",
        namespace=params.namespace,
        name=params.deployment,
        previous=current,
        replicas=params.replicas,
        db_budget=budget,
    )


# ============================================================================ restart / annotate


@action(
    "kubernetes.rollout_restart",
    summary="Rolling restart of a deployment/statefulset",
    destructive=True,
    describe=describe_rollout_restart,
)
def rollout_restart(ctx: ActionContext, params: WorkloadParams) -> RestartResult:
    """``kubectl rollout restart``: patch ``spec.template.metadata.annotations`` with
    ``kubectl.kubernetes.io/restartedAt`` so the controller replaces pods under its rollout strategy
    (and PDBs). Refuses a paused deployment (the restart would silently not happen). Follow with
    ``kubernetes.wait_rollout``."""
    obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
    what = f"{params.kind} {params.namespace}/{params.deployment}"
    if getattr(obj.spec, "paused", False):
        raise GuardrailRefused(f"{what} is paused: resume it before restarting", backend=BACKEND)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    new = patch_workload(ctx, params.kind, params.namespace, params.deployment, body)
    replicas = int(new.spec.replicas if new.spec.replicas is not None else 1)
    return RestartResult(
        summary=f"restarted {what} at {stamp}: {replicas} pods will be replaced",
        namespace=params.namespace,
        name=params.deployment,
        restarted_at=stamp,
        generation=int(new.metadata.generation or 0),
        pods=replicas,
    )


@action(
    "kubernetes.annotate",
    summary="Set or remove annotations (e.g. maintenance mode)",
    destructive=True,
    describe=describe_annotate,
)
def annotate(ctx: ActionContext, params: AnnotateParams) -> AnnotateResult:
    """``kubectl annotate``: set annotations on a deployment, statefulset, node or pod; a null value
    removes the key (``kubectl annotate ... maintenance-``). With ``overwrite: false`` an annotation
    that already has a different value is left alone and the step fails (someone else owns it)."""
    current = dict(_read_annotatable(ctx, params).metadata.annotations or {})
    changes = _annotation_changes(current, params)
    clash = [k for k, v in changes.items() if k in current and v is not None]
    if clash and not params.overwrite:
        raise GuardrailRefused(
            f"{_target(params)} already has {', '.join(f'{k}={current[k]!r}' for k in clash)} "
            f"(overwrite is false)",
            backend=BACKEND,
        )
    if changes:
        kc = clients(ctx)
        body = {"metadata": {"annotations": changes}}
        what = f"annotate {_target(params)}"
        if params.kind == "node":
            new = call(ctx, what, kc.core.patch_node, params.name, body)
        elif params.kind == "pod":
            new = call(ctx, what, kc.core.patch_namespaced_pod, params.name, params.namespace, body)
        else:
            new = patch_workload(ctx, params.kind, params.namespace or "", params.name, body)
        current = dict(new.metadata.annotations or {})
    summary = (
        f"annotated {_target(params)}: "
        + ", ".join(f"{k}={'(removed)' if v is None else v}" for k, v in changes.items())
        if changes
        else f"{_target(params)}: annotations already as requested"
    )
    return AnnotateResult(
        summary=summary,
        kind=params.kind,
        name=params.name,
        namespace=params.namespace,
        changed=changes,
        annotations=current,
    )


# ============================================================================================ pods and nodes


@action(
    "kubernetes.delete_pod",
    summary="Delete a pod so its controller recreates it",
    destructive=True,
    describe=describe_delete_pod,
)
def delete_pod(ctx: ActionContext, params: DeletePodParams) -> DeletePodResult:
    """``kubectl delete pod``: the usual fix for one wedged consumer. Refuses a pod without a
    controlling owner unless ``allow_unmanaged`` (it would be gone for good)."""
    pod = _read_pod(ctx, params.namespace, params.pod)
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


@action("kubernetes.cordon", summary="Mark a node unschedulable", destructive=True, describe=describe_cordon)
def cordon(ctx: ActionContext, params: NodeParams) -> NodeResult:
    """``kubectl cordon``: no new pods land on the node; running pods stay."""
    return _set_unschedulable(ctx, params.node, True)


@action(
    "kubernetes.uncordon",
    summary="Mark a node schedulable again",
    destructive=True,
    describe=describe_uncordon,
)
def uncordon(ctx: ActionContext, params: NodeParams) -> NodeResult:
    """``kubectl uncordon``: end of node maintenance."""
    return _set_unschedulable(ctx, params.node, False)


@action(
    "kubernetes.drain",
    summary="Cordon a node and evict its pods, respecting PodDisruptionBudgets",
    destructive=True,
    describe=describe_drain,
)
def drain(ctx: ActionContext, params: DrainParams) -> DrainResult:
    """``kubectl drain --ignore-daemonsets``: cordon, then evict every pod through the Eviction API so
    PodDisruptionBudgets decide. A 429 (budget exhausted) is retried every ``retry_interval`` until
    ``timeout_seconds``; pods still blocked then are reported (the step fails unless
    ``fail_on_blocked: false``) and are never deleted by force. DaemonSet and static mirror pods are
    skipped; unmanaged or emptyDir pods make the drain refuse before anything changes unless allowed.
    The node stays cordoned afterwards: uncordon is a separate, deliberate step."""
    start = time.monotonic()
    deadline = start + min(params.timeout_seconds, ctx.remaining(default=params.timeout_seconds))
    node, pending, skipped, refused = _drain_plan(ctx, params)
    if refused:
        raise GuardrailRefused(f"refusing to drain node {params.node}: {', '.join(refused)}", backend=BACKEND)
    kc = clients(ctx)
    if not (node.spec and node.spec.unschedulable):
        call(
            ctx,
            f"cordon node {params.node}",
            kc.core.patch_node,
            params.node,
            {"spec": {"unschedulable": True}},
        )
    evicted: list[Any] = []
    blocked: dict[str, str] = {}
    while pending:
        for pod in list(pending):
            ns, name = pod.metadata.namespace, pod.metadata.name
            body = k8s.V1Eviction(
                metadata=k8s.V1ObjectMeta(name=name, namespace=ns),
                delete_options=None
                if params.grace_period_seconds is None
                else k8s.V1DeleteOptions(grace_period_seconds=params.grace_period_seconds),
            )
            try:
                call(
                    ctx,
                    f"evict pod {ns}/{name}",
                    kc.core.create_namespaced_pod_eviction,
                    name,
                    ns,
                    body,
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except KubeApiError as exc:
                if exc.status == 404:  # already gone: nothing left to evict
                    pending.remove(pod)
                    continue
                if exc.status == 429:
                    blocked[f"{ns}/{name}"] = str(exc).split(": ", 2)[-1]
                    continue
                raise
            pending.remove(pod)
            blocked.pop(f"{ns}/{name}", None)
            evicted.append(pod)
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            break
        time.sleep(min(params.retry_interval, left))
    terminating = _wait_gone(ctx, evicted, deadline)
    names = [f"{p.metadata.namespace}/{p.metadata.name}" for p in evicted]
    complete = not pending
    summary = f"drained node {params.node}: evicted {len(evicted)} pods" + (
        f", skipped {len(skipped)}" if skipped else ""
    )
    if not complete:
        summary = (
            f"drain of node {params.node} incomplete after {time.monotonic() - start:.1f}s: "
            f"{len(pending)} pods blocked by PodDisruptionBudgets ("
            + "; ".join(f"{k}: {v}" for k, v in blocked.items())
            + f"); evicted {len(evicted)}; node stays cordoned"
        )
        if params.fail_on_blocked:
            raise ActionError(summary, backend=BACKEND)
    return DrainResult(
        summary=summary,
        node=params.node,
        complete=complete,
        evicted=names,
        blocked=[f"{k} ({v})" for k, v in blocked.items()],
        skipped=skipped,
        terminating=terminating,
    )


# ============================================================================================ PDB


@action(
    "kubernetes.apply_pdb",
    summary="Create or replace a PodDisruptionBudget",
    destructive=True,
    describe=describe_apply_pdb,
)
def apply_pdb(ctx: ActionContext, params: ApplyPdbParams) -> ApplyPdbResult:
    """Seed maintenance step "create PDB to limit disruption": create the PodDisruptionBudget, or
    replace the existing one (optimistic concurrency on resourceVersion: a concurrent edit fails the
    step instead of being overwritten). The namespace must exist."""
    existing, matching = _pdb_state(ctx, params)
    key, value = params.bound()
    body = k8s.V1PodDisruptionBudget(
        metadata=k8s.V1ObjectMeta(
            name=params.name,
            namespace=params.namespace,
            resource_version=existing.metadata.resource_version if existing else None,
        ),
        spec=k8s.V1PodDisruptionBudgetSpec(
            selector=k8s.V1LabelSelector(match_labels=dict(params.match_labels)),
            min_available=value if key == "minAvailable" else None,
            max_unavailable=value if key == "maxUnavailable" else None,
        ),
    )
    kc = clients(ctx)
    what = f"{'replace' if existing else 'create'} PodDisruptionBudget {params.namespace}/{params.name}"
    if existing is None:
        call(ctx, what, kc.policy.create_namespaced_pod_disruption_budget, params.namespace, body)
    else:
        call(
            ctx, what, kc.policy.replace_namespaced_pod_disruption_budget, params.name, params.namespace, body
        )
    fresh = call(
        ctx,
        f"read PodDisruptionBudget {params.namespace}/{params.name}",
        kc.policy.read_namespaced_pod_disruption_budget,
        params.name,
        params.namespace,
    )
    allowed = int(fresh.status.disruptions_allowed or 0) if fresh.status else 0
    return ApplyPdbResult(
        summary=f"{'replaced' if existing else 'created'} PodDisruptionBudget "
        f"{params.namespace}/{params.name} "
        f"({key}={value}, {matching} pods, {allowed} disruptions allowed now)",
        namespace=params.namespace,
        name=params.name,
        created=existing is None,
        expected_pods=matching,
        disruptions_allowed=allowed,
    )


# ============================================================================================ exec


@action(
    "kubernetes.exec",
    summary="Run a command the playbook allows (argv, no shell) in a pod container",
    destructive=True,
    describe=describe_exec,
)
def exec_(ctx: ActionContext, params: ExecParams) -> ExecResultModel:
    """``kubectl exec POD -- CMD ARGS``: e.g. ``rabbitmqctl forget_cluster_node rabbit@failed``. The
    command runs only if the step's literal ``allow`` list admits it (e.g. ``allow: ["rabbitmqctl
    forget_cluster_node *"]``); anything else is refused before the pod is contacted. There is no list
    of forbidden programs: ``python3 -c``, ``awk 'BEGIN{system(...)}'`` or ``rabbitmqctl eval`` run only
    where a playbook explicitly allows them. The argv is sent as is, never through a shell. Output is
    capped and redacted; a non-zero exit fails the step unless ``fail_on_nonzero: false``. Uses the
    exec websocket (channel protocol v4/v5)."""
    if allowed_by(list(params.command), list(params.allow)) is None:  # params built without validation
        raise ActionError(
            f"command {list(params.command)!r} is not in this step's allow list: not sent", backend=BACKEND
        )
    _, container = _exec_target(ctx, params)
    timeout = min(params.timeout_seconds, ctx.remaining(default=params.timeout_seconds))
    where = f"exec in pod {params.namespace}/{params.pod}"
    kc = clients(ctx)
    cap = params.max_output_bytes

    def run() -> tuple[str, str, int | None, bool]:
        ws = stream(
            kc.core.connect_get_namespaced_pod_exec,
            params.pod,
            params.namespace,
            command=list(params.command),
            container=container,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
            _request_timeout=timeout,
        )
        out, err, truncated = "", "", False
        end = time.monotonic() + timeout
        try:
            while ws.is_open() and time.monotonic() < end:
                ws.update(timeout=min(0.5, max(0.0, end - time.monotonic())))
                out += ws.read_stdout(timeout=0) if ws.peek_stdout(timeout=0) else ""
                err += ws.read_stderr(timeout=0) if ws.peek_stderr(timeout=0) else ""
                if len(out) > cap or len(err) > cap:
                    truncated = True
                    break
            still_open = ws.is_open()
            out += ws.read_stdout(timeout=0) if ws.peek_stdout(timeout=0) else ""
            err += ws.read_stderr(timeout=0) if ws.peek_stderr(timeout=0) else ""
            code = None
            if not still_open:
                status = ws.read_channel(3)
                code = _exit_code(status)
        finally:
            ws.close(timeout=0.5)  # default waits 3 s for the server's close frame
        if still_open and not truncated:
            raise KubeUnavailable(f"{where}: command still running after {timeout:.1f}s (timeout)")
        return out, err, code, truncated

    try:
        out, err, code, truncated = run_bounded(run, timeout + 2.0, where)
    except k8s.ApiException as exc:  # websocket handshake refused (404 pod, 403 RBAC...) or transport error
        raise ActionError(
            redact_log(f"{where}: {exc.reason or exc}".splitlines()[0]), backend=BACKEND
        ) from None
    out, err = redact_log(out[:cap]), redact_log(err[:cap])
    exit_code = -1 if code is None else code
    cmd = " ".join(params.command)
    if exit_code != 0 and params.fail_on_nonzero and not truncated:
        tail = (err or out).strip().splitlines()[-1:] or [""]
        raise ActionError(f"{where}: {cmd!r} exited {exit_code}: {tail[0][:300]}", backend=BACKEND)
    return ExecResultModel(
        summary=f"ran {cmd!r} in {params.namespace}/{params.pod}: exit {exit_code}"
        + (f" (output truncated at {cap} bytes)" if truncated else ""),
        namespace=params.namespace,
        pod=params.pod,
        container=container,
        exit_code=exit_code,
        stdout=out,
        stderr=err,
        truncated=truncated,
    )
