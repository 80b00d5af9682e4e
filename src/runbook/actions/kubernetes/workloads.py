"""Deployments and statefulsets: read, wait for a rollout, scale within budgets, rolling restart.

Bodies and ``describe`` texts of ``kubernetes.get_deployment``, ``wait_rollout``, ``scale`` and
``rollout_restart`` (declared, with their user docs, in :mod:`runbook.actions.kubernetes.actions`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kubernetes.client import (
    BACKEND,
    KubeUnavailable,
    call,
    clients,
    patch_workload,
    read_workload,
    redact_log,
    rollout_of,
)
from runbook.actions.kubernetes.models import (
    Condition,
    DeploymentResult,
    RestartResult,
    ScaleParams,
    ScaleResult,
    WaitRolloutParams,
    WaitRolloutResult,
    WorkloadParams,
)


def get_deployment(ctx: ActionContext, params: WorkloadParams) -> DeploymentResult:
    """Replica counts, rollout state, conditions (see ``kubernetes.get_deployment``)."""
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


def wait_rollout(ctx: ActionContext, params: WaitRolloutParams) -> WaitRolloutResult:
    """Poll until the rollout completes, tolerating API blips (see ``kubernetes.wait_rollout``)."""
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


def _db_budget(ctx: ActionContext, params: ScaleParams) -> tuple[int, int, int]:
    """(budget, max_connections, used): the seed's rule floor((max_connections - headroom) / pool_size).

    The limits come from the PostgreSQL backend (its pool, timeouts and error mapping): the one place
    a Kubernetes action asks another backend, imported here so a scale without a DB budget never
    loads the PostgreSQL driver.
    """
    from runbook.actions.postgres.activity import connection_limits

    limits = connection_limits(ctx)
    assert params.db_pool_size is not None
    budget = max(0, (int(limits.max_connections) - params.db_headroom) // params.db_pool_size)
    return budget, int(limits.max_connections), int(limits.used)


def _scale_plan(ctx: ActionContext, params: ScaleParams) -> tuple[int, int | None, str, str]:
    """(current, budget, refusal or "", description) — shared by describe and the action."""
    obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
    current = int(obj.spec.replicas if obj.spec.replicas is not None else 1)
    what = f"{params.kind} {params.namespace}/{params.deployment}"
    text = f"scale {what} from {current} to {params.replicas} replicas (max_replicas {params.max_replicas}"
    refusal = ""
    growing = params.replicas > current
    budget = None
    if params.use_database:
        budget, max_conn, used = _db_budget(ctx, params)
        text += (
            f"; DB budget floor(({max_conn} max_connections - {params.db_headroom} headroom) / "
            f"{params.db_pool_size} pool) = {budget} replicas, {used} connections in use now"
        )
        if growing and params.replicas > budget:
            refusal = (
                f"{params.replicas} replicas x {params.db_pool_size} connections exceeds the "
                f"DB-connection budget "
                f"of {budget} replicas (max_connections {max_conn}, headroom {params.db_headroom})"
            )
    if growing and params.replicas > params.max_replicas:
        refusal = f"{params.replicas} replicas exceeds max_replicas {params.max_replicas}"
    text += ")"
    if params.replicas == current:
        text += "; already at that count, nothing changes"
    return current, budget, refusal, text + (f"; REFUSED: {refusal}" if refusal else "")


def describe_scale(ctx: ActionContext, params: ScaleParams) -> str:
    return _scale_plan(ctx, params)[3]


def scale(ctx: ActionContext, params: ScaleParams) -> ScaleResult:
    """Apply the scale plan through the scale subresource, or refuse (see ``kubernetes.scale``)."""
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


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def describe_rollout_restart(ctx: ActionContext, params: WorkloadParams) -> str:
    obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
    r = rollout_of(obj)
    before = ((obj.spec.template.metadata.annotations if obj.spec.template.metadata else None) or {}).get(
        RESTARTED_AT
    )
    text = (
        f"rolling restart of {params.kind} {params.namespace}/{params.deployment}: replaces its "
        f"{r.desired} pods "
        f"({r.ready}/{r.desired} ready now) by setting pod-template annotation {RESTARTED_AT} "
        f"{before or '(unset)'} -> <now>"
    )
    if getattr(obj.spec, "paused", False):
        text += "; REFUSED: the deployment is paused"
    return text


def rollout_restart(ctx: ActionContext, params: WorkloadParams) -> RestartResult:
    """Stamp the pod template so the controller rolls (see ``kubernetes.rollout_restart``)."""
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
