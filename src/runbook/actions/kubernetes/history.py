"""Rollout history and rollback of StatefulSets and Deployments, and Helm release history
(``kubernetes.rollout_history``, ``rollout_undo``, ``helm_history``; declared with their user docs in
:mod:`runbook.actions.kubernetes.actions`).

The history is what ``kubectl rollout history`` reads: a StatefulSet's ControllerRevisions (labelled
with its selector, controlled by it; ``revision`` numbers, ``data`` the template patch), a Deployment's
ReplicaSets (``deployment.kubernetes.io/revision``). The rollback applies what ``kubectl rollout undo``
applies: the revision's ``data`` as a strategic-merge patch (StatefulSet), or a JSON patch replacing
``spec.template`` with the ReplicaSet's template minus ``pod-template-hash`` (Deployment).

Helm 3 keeps each release revision in a Secret ``sh.helm.release.v1.NAME.vN`` (labels ``owner=helm``,
``name``, ``status``, ``version``) whose ``release`` value is base64(gzip(JSON)); it is decoded here
without the helm binary, and only chart, versions, status, description and time leave this module
(never the values or the manifest, which may hold secrets).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kubernetes.client import (
    BACKEND,
    as_dict,
    call,
    clients,
    label_selector,
    read_workload,
    rollout_of,
)
from runbook.actions.kubernetes.state_models import (
    HelmHistoryParams,
    HelmHistoryResult,
    HelmRevision,
    HistoryParams,
    HistoryResult,
    Revision,
    UndoParams,
    UndoResult,
)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABELS = ("pod-template-hash", "controller-revision-hash")
MAX_RELEASE_BYTES = 8 << 20  # a decoded release larger than this is refused (gzip bomb)


@dataclass(frozen=True)
class _Entry:
    revision: int
    name: str
    template: dict[str, Any]
    change_cause: str


def _images(template: dict[str, Any]) -> list[str]:
    return [str(c.get("image", "")) for c in (template.get("spec") or {}).get("containers") or []]


def _owned(items: list[Any], uid: str) -> list[Any]:
    return [i for i in items if any(o.controller and o.uid == uid for o in i.metadata.owner_references or [])]


def _entries(ctx: ActionContext, params: HistoryParams, obj: Any) -> list[_Entry]:
    kc = clients(ctx)
    selector = label_selector(dict(obj.spec.selector.match_labels or {}))
    what = f"{params.kind} {params.namespace}/{params.name}"
    if params.kind == "statefulset":
        crs = call(
            ctx,
            f"list controllerrevisions of {what}",
            kc.apps.list_namespaced_controller_revision,
            params.namespace,
            label_selector=selector,
        ).items
        entries = []
        for cr in _owned(crs, obj.metadata.uid):
            data = cr.data if isinstance(cr.data, dict) else {}
            template = dict((data.get("spec") or {}).get("template") or {})
            template.pop("$patch", None)
            cause = (cr.metadata.annotations or {}).get(CHANGE_CAUSE, "")
            entries.append(_Entry(int(cr.revision), cr.metadata.name, template, cause))
    else:
        rss = call(
            ctx,
            f"list replicasets of {what}",
            kc.apps.list_namespaced_replica_set,
            params.namespace,
            label_selector=selector,
        ).items
        entries = []
        for rs in _owned(rss, obj.metadata.uid):
            notes = rs.metadata.annotations or {}
            template = as_dict(kc, rs.spec.template)
            entries.append(
                _Entry(int(notes.get(REVISION, "0")), rs.metadata.name, template, notes.get(CHANGE_CAUSE, ""))
            )
    return sorted(entries, key=lambda e: e.revision)


def _current(params: HistoryParams, obj: Any, entries: list[_Entry]) -> _Entry | None:
    if params.kind == "statefulset":
        target = (obj.status.update_revision if obj.status else None) or ""
        return next((e for e in entries if e.name == target), entries[-1] if entries else None)
    number = int((obj.metadata.annotations or {}).get(REVISION, "0"))
    return next((e for e in entries if e.revision == number), entries[-1] if entries else None)


def rollout_history(ctx: ActionContext, params: HistoryParams) -> HistoryResult:
    obj = read_workload(ctx, params.kind, params.namespace, params.name)
    entries = _entries(ctx, params, obj)
    current = _current(params, obj, entries)
    number = current.revision if current else 0
    older = [e.revision for e in entries if e.revision < number]
    r = rollout_of(obj)
    images = [c.image or "" for c in obj.spec.template.spec.containers]
    revisions = [
        Revision(
            revision=e.revision,
            name=e.name,
            images=_images(e.template),
            change_cause=e.change_cause,
            current=e is current,
        )
        for e in entries
    ]
    listing = ", ".join(
        f"{e.revision}{'*' if e is current else ''} ({', '.join(_images(e.template))})" for e in entries
    )
    return HistoryResult(
        summary=f"{params.kind} {params.namespace}/{params.name}: revision {number} of {len(entries)}"
        f" ({r.ready}/{r.desired} ready, {r.updated} updated); history: {listing or 'none'}",
        namespace=params.namespace,
        name=params.name,
        kind=params.kind,
        current_revision=number,
        previous_revision=max(older) if older else None,
        update_revision=(getattr(obj.status, "update_revision", None) or "") if obj.status else "",
        current_revision_name=current.name if current else "",
        desired=r.desired,
        ready=r.ready,
        updated=r.updated,
        images=images,
        revisions=revisions,
    )


def _plan(ctx: ActionContext, params: UndoParams) -> tuple[Any, _Entry, _Entry]:
    """(workload, current entry, target entry) or a refusal naming the revisions that exist."""
    what = f"{params.kind} {params.namespace}/{params.name}"
    obj = read_workload(ctx, params.kind, params.namespace, params.name)
    entries = _entries(ctx, params, obj)
    current = _current(params, obj, entries)
    if current is None:
        raise GuardrailRefused(f"{what} has no revision history: nothing to roll back to", backend=BACKEND)
    if params.to_revision == 0:
        older = [e for e in entries if e.revision < current.revision]
        if not older:
            raise GuardrailRefused(
                f"{what}: no revision before {current.revision} to roll back to", backend=BACKEND
            )
        return obj, current, older[-1]
    target = next((e for e in entries if e.revision == params.to_revision), None)
    if target is None:
        known = ", ".join(str(e.revision) for e in entries)
        raise GuardrailRefused(
            f"{what}: revision {params.to_revision} not found (history: {known})", backend=BACKEND
        )
    return obj, current, target


def describe_rollout_undo(ctx: ActionContext, params: UndoParams) -> str:
    obj, current, target = _plan(ctx, params)
    what = f"{params.kind} {params.namespace}/{params.name}"
    if current.revision == target.revision:
        images = ", ".join(_images(target.template))
        return f"nothing: {what} is already at revision {target.revision} ({images})"
    strategy = (
        (obj.spec.update_strategy.type if obj.spec.update_strategy else "RollingUpdate")
        if params.kind == "statefulset"
        else (obj.spec.strategy.type if obj.spec.strategy else "RollingUpdate")
    )
    return (
        f"roll {what} back from revision {current.revision} ({', '.join(_images(current.template))}) to"
        f" revision {target.revision} ({', '.join(_images(target.template))}); pods are replaced under its"
        f" {strategy} strategy ({rollout_of(obj).describe()} now)"
    )


def rollout_undo(ctx: ActionContext, params: UndoParams) -> UndoResult:
    obj, current, target = _plan(ctx, params)
    what = f"{params.kind} {params.namespace}/{params.name}"
    before = [c.image or "" for c in obj.spec.template.spec.containers]
    changed = current.revision != target.revision
    if changed:
        kc = clients(ctx)
        if params.kind == "statefulset":
            template = {**target.template, "$patch": "replace"}
            call(
                ctx,
                f"roll back {what}",
                kc.apps.patch_namespaced_stateful_set,
                params.name,
                params.namespace,
                {"spec": {"template": template}},
            )
        else:
            template = dict(target.template)
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            for key in HASH_LABELS:
                labels.pop(key, None)
            template["metadata"] = {**(template.get("metadata") or {}), "labels": labels}
            call(
                ctx,
                f"roll back {what}",
                kc.apps.patch_namespaced_deployment,
                params.name,
                params.namespace,
                [{"op": "replace", "path": "/spec/template", "value": template}],
            )
    after = _images(target.template)
    return UndoResult(
        summary=f"{what}: rolled back from revision {current.revision} ({', '.join(before)}) to revision"
        f" {target.revision} ({', '.join(after)}); follow with kubernetes.wait_rollout"
        if changed
        else f"{what} already at revision {target.revision}: nothing changed",
        namespace=params.namespace,
        name=params.name,
        kind=params.kind,
        from_revision=current.revision,
        to_revision=target.revision,
        images_before=before,
        images_after=after,
        changed=changed,
    )


def decode_release(value: str) -> dict[str, Any]:
    """A Helm 3 release from its Secret value (base64 of the API's data, then Helm's base64+gzip)."""
    try:
        raw = base64.b64decode(base64.b64decode(value, validate=True), validate=True)
        if raw[:2] == b"\x1f\x8b":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw, MAX_RELEASE_BYTES)
            if inflater.unconsumed_tail:
                raise ValueError(f"release larger than {MAX_RELEASE_BYTES} bytes")
        doc = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise ValueError(f"not a Helm release ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a Helm release (not an object)")
    return doc


def _helm_revision(secret: Any) -> HelmRevision:
    labels = secret.metadata.labels or {}
    try:
        doc = decode_release(str((secret.data or {}).get("release", "")))
    except ValueError as exc:
        return HelmRevision(
            revision=int(labels.get("version", "0") or 0),
            status=labels.get("status", "unknown"),
            chart="",
            chart_version="",
            app_version="",
            description=f"undecodable: {exc}",
            updated="",
        )
    info = doc.get("info") or {}
    meta = (doc.get("chart") or {}).get("metadata") or {}
    return HelmRevision(
        revision=int(doc.get("version") or labels.get("version") or 0),
        status=str(info.get("status") or labels.get("status") or "unknown"),
        chart=str(meta.get("name", "")),
        chart_version=str(meta.get("version", "")),
        app_version=str(meta.get("appVersion", "")),
        description=str(info.get("description", ""))[:300],
        updated=str(info.get("last_deployed", "")),
    )


def helm_history(ctx: ActionContext, params: HelmHistoryParams) -> HelmHistoryResult:
    secrets = call(
        ctx,
        f"list helm release secrets of {params.namespace}/{params.release}",
        clients(ctx).core.list_namespaced_secret,
        params.namespace,
        label_selector=f"owner=helm,name={params.release}",
    ).items
    secrets = [s for s in secrets if (s.type or "") == "helm.sh/release.v1"]
    if not secrets:
        raise ActionError(
            f"no Helm release {params.release!r} in namespace {params.namespace}"
            " (no sh.helm.release.v1 secrets labelled owner=helm)",
            backend=BACKEND,
        )
    revisions = sorted((_helm_revision(s) for s in secrets), key=lambda r: r.revision)[
        -params.max_revisions :
    ]
    deployed = [r.revision for r in revisions if r.status == "deployed"]
    newest = revisions[-1]
    good = [r.revision for r in revisions if r.status in ("deployed", "superseded") and r is not newest]
    failed = [r.revision for r in revisions if r.status == "failed"]
    listing = ", ".join(
        f"{r.revision} {r.status} {r.chart}-{r.chart_version} (app {r.app_version})" for r in revisions
    )
    return HelmHistoryResult(
        summary=f"helm release {params.namespace}/{params.release}: {listing}",
        namespace=params.namespace,
        release=params.release,
        deployed_revision=deployed[-1] if deployed else None,
        last_good_revision=good[-1] if good else None,
        failed=failed,
        revisions=revisions,
    )
