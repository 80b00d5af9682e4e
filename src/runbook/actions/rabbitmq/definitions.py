"""Restoring RabbitMQ definitions from a backup: the diff against the broker, and the gated import
(``rabbitmq.diff_definitions``, ``rabbitmq.import_definitions``; declared with their user docs in
:mod:`runbook.actions.rabbitmq.actions`).

The backup is a file under ``<data dir>/definitions/`` named relatively (``rabbitmq.export_definitions``
writes there), read through :func:`runbook.core.files.read_private`: no absolute path, no ``..``, no
symlink. Its SHA-256 is part of the approved call, so the file imported is the file the approver saw.
The diff never shows values that may hold secrets (password hashes, parameter values such as shovel
URIs): only names and which properties differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.rabbitmq.client import BACKEND, management, q
from runbook.actions.rabbitmq.models import (
    DefinitionsDiffParams,
    DefinitionsDiffResult,
    ImportDefinitionsParams,
    ImportDefinitionsResult,
    KindDiff,
)
from runbook.core import files

DEFINITIONS = "definitions"
MAX_BYTES = 32 << 20
SHOWN = 20  # names listed per kind and change

Key = Callable[[dict[str, Any]], str]


def _vq(d: dict[str, Any]) -> str:
    return f"{d.get('vhost', '/')}/{d.get('name', '')}"


#: kind -> (identity, the properties compared; None: identity only)
KINDS: dict[str, tuple[Key, tuple[str, ...] | None]] = {
    "vhosts": (lambda d: str(d.get("name", "")), ()),
    "users": (lambda d: str(d.get("name", "")), ("tags", "password_hash", "hashing_algorithm")),
    "permissions": (lambda d: f"{d.get('user')}@{d.get('vhost')}", ("configure", "write", "read")),
    "policies": (_vq, ("pattern", "definition", "apply-to", "priority")),
    "queues": (_vq, ("durable", "auto_delete", "arguments")),
    "exchanges": (_vq, ("type", "durable", "auto_delete", "internal", "arguments")),
    "bindings": (
        lambda d: (
            f"{d.get('vhost', '/')}/{d.get('source')}->{d.get('destination_type')}:{d.get('destination')}"
            f" [{d.get('routing_key')}] {json.dumps(d.get('arguments') or {}, sort_keys=True)}"
        ),
        None,
    ),
    "parameters": (lambda d: f"{d.get('vhost')}/{d.get('component')}/{d.get('name')}", ("value",)),
}
#: kinds whose changed properties make the import fail (RabbitMQ never redeclares them differently)
CONFLICTING = ("queues", "exchanges")


def _load(name: str) -> tuple[dict[str, Any], str, int]:
    """(document, sha256, size) of the backup ``definitions/<name>``; ActionError saying why not."""
    try:
        parts = files.relative_parts(name)
        data = files.read_private(files.data_dir(), PurePosixPath(DEFINITIONS, *parts), max_bytes=MAX_BYTES)
    except files.UnsafePath as exc:
        raise ActionError(f"definitions file refused: {exc}", backend=BACKEND) from None
    except FileNotFoundError:
        raise ActionError(
            f"no definitions file {name!r} under <data dir>/{DEFINITIONS}/", backend=BACKEND
        ) from None
    except (ValueError, OSError) as exc:
        raise ActionError(f"definitions file {name!r} unreadable: {exc}", backend=BACKEND) from None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ActionError(f"definitions file {name!r} is not JSON: {exc}", backend=BACKEND) from None
    if not isinstance(doc, dict):
        raise ActionError(f"definitions file {name!r} is not a definitions object", backend=BACKEND)
    return doc, hashlib.sha256(data).hexdigest(), len(data)


def _scoped(doc: dict[str, Any], vhost: str | None) -> dict[str, Any]:
    """A whole-broker export narrowed to one vhost (a vhost export has no ``vhost`` fields: add them)."""
    if vhost is None:
        return doc
    out: dict[str, Any] = {}
    for kind, items in doc.items():
        if isinstance(items, list) and kind in KINDS and kind not in ("vhosts", "users"):
            out[kind] = [
                {**i, "vhost": i.get("vhost", vhost)} for i in items if i.get("vhost", vhost) == vhost
            ]
    return out


def _diff_kind(kind: str, mine: list[Any], theirs: list[Any]) -> KindDiff:
    key, props = KINDS[kind]
    file_items = {key(i): i for i in mine if isinstance(i, dict)}
    broker_items = {key(i): i for i in theirs if isinstance(i, dict)}
    added = sorted(set(file_items) - set(broker_items))
    only_broker = sorted(set(broker_items) - set(file_items))
    changed: list[str] = []
    for name in sorted(set(file_items) & set(broker_items)):
        differ = [p for p in props or () if file_items[name].get(p) != broker_items[name].get(p)]
        if differ:
            changed.append(f"{name} ({', '.join(differ)})")
    return KindDiff(
        kind=kind,
        in_file=len(file_items),
        on_broker=len(broker_items),
        to_add=len(added),
        to_change=len(changed),
        only_on_broker=len(only_broker),
        added=added[:SHOWN],
        changed=changed[:SHOWN],
        conflicts=kind in CONFLICTING and bool(changed),
    )


def diff(ctx: ActionContext, name: str, vhost: str | None) -> tuple[list[KindDiff], str, int]:
    doc, sha, size = _load(name)
    api = "/api/definitions" if vhost is None else f"/api/definitions/{q(vhost)}"
    current = management(ctx).get(api, timeout=ctx.remaining(), not_found=f"vhost {vhost!r} not found") or {}
    mine, theirs = _scoped(doc, vhost), _scoped(current, vhost)
    kinds = [
        _diff_kind(kind, list(mine.get(kind) or []), list(theirs.get(kind) or []))
        for kind in KINDS
        if mine.get(kind) or theirs.get(kind)
    ]
    return kinds, sha, size


def _describe_kinds(kinds: list[KindDiff]) -> str:
    parts = []
    for k in kinds:
        if k.to_add or k.to_change:
            bits = []
            if k.to_add:
                bits.append(f"+{k.to_add} ({', '.join(k.added[:5])}{', ...' if k.to_add > 5 else ''})")
            if k.to_change:
                bits.append(
                    f"~{k.to_change} ({', '.join(k.changed[:3])}{', ...' if k.to_change > 3 else ''})"
                )
            parts.append(f"{k.kind} {' '.join(bits)}")
    return "; ".join(parts) or "nothing to add or change"


def diff_definitions(ctx: ActionContext, params: DefinitionsDiffParams) -> DefinitionsDiffResult:
    kinds, sha, size = diff(ctx, params.path, params.vhost)
    conflicts = [k.kind for k in kinds if k.conflicts]
    return DefinitionsDiffResult(
        summary=f"{params.path} (sha256 {sha[:12]}, {size} bytes) vs the broker: {_describe_kinds(kinds)}"
        + (f"; CONFLICTS in {', '.join(conflicts)} (the import would fail)" if conflicts else "")
        + f"; {sum(k.only_on_broker for k in kinds)} objects only on the broker stay untouched",
        path=params.path,
        sha256=sha,
        bytes=size,
        to_add=sum(k.to_add for k in kinds),
        to_change=sum(k.to_change for k in kinds),
        only_on_broker=sum(k.only_on_broker for k in kinds),
        conflicts=conflicts,
        kinds=kinds,
    )


def _checked(ctx: ActionContext, params: ImportDefinitionsParams) -> tuple[list[KindDiff], str]:
    kinds, sha, _ = diff(ctx, params.path, params.vhost)
    if sha != params.sha256:
        raise GuardrailRefused(
            f"{params.path} changed since it was reviewed (sha256 {sha[:12]}, approved {params.sha256[:12]}):"
            " nothing imported",
            backend=BACKEND,
        )
    conflicts = [k for k in kinds if k.conflicts]
    if conflicts:
        detail = "; ".join(f"{k.kind}: {', '.join(k.changed[:3])}" for k in conflicts)
        raise GuardrailRefused(
            f"{params.path} redefines existing objects with other properties ({detail}); RabbitMQ would"
            " refuse the import half-way: delete or rename them first",
            backend=BACKEND,
        )
    return kinds, sha


def describe_import(ctx: ActionContext, params: ImportDefinitionsParams) -> str:
    kinds, sha = _checked(ctx, params)
    where = "the whole broker" if params.vhost is None else f"vhost {params.vhost}"
    return (
        f"import {params.path} (sha256 {sha[:12]}) into {where}: {_describe_kinds(kinds)}; the import"
        f" adds and updates only, {sum(k.only_on_broker for k in kinds)} objects only on the broker"
        " stay as they are"
    )


def import_definitions(ctx: ActionContext, params: ImportDefinitionsParams) -> ImportDefinitionsResult:
    kinds, sha = _checked(ctx, params)
    doc, _, _ = _load(params.path)
    api = "/api/definitions" if params.vhost is None else f"/api/definitions/{q(params.vhost)}"
    management(ctx).request("POST", api, json=doc, timeout=ctx.remaining())
    after, _, _ = diff(ctx, params.path, params.vhost)
    missing = sum(k.to_add for k in after)
    added = sum(k.to_add for k in kinds)
    changed = sum(k.to_change for k in kinds)
    if missing:
        raise ActionError(
            f"imported {params.path} but {missing} objects are still missing: {_describe_kinds(after)}",
            backend=BACKEND,
        )
    return ImportDefinitionsResult(
        summary=f"imported {params.path} (sha256 {sha[:12]}): {added} added, {changed} updated;"
        " every object of the file is now on the broker",
        path=params.path,
        sha256=sha,
        added=added,
        changed=changed,
    )
