"""The whole broker: node health as the management API sees it, and the definitions backup.

Bodies of ``rabbitmq.node_health`` and ``rabbitmq.export_definitions`` (declared, with their user
docs, in :mod:`runbook.actions.rabbitmq.actions`).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.rabbitmq.client import BACKEND, management, q
from runbook.actions.rabbitmq.inspect import node_problems
from runbook.actions.rabbitmq.models import ExportParams, ExportResult, NodeHealthParams, NodeHealthResult
from runbook.core import files

#: the folder of the data directory definitions exports are written to
DEFINITIONS = "definitions"


def node_health(ctx: ActionContext, params: NodeHealthParams) -> NodeHealthResult:
    """Every node's state and the problems found (see ``rabbitmq.node_health``)."""
    nodes = management(ctx).get("/api/nodes", timeout=ctx.remaining()) or []
    rows, problems = [], []
    for node in sorted(nodes, key=lambda n: n.get("name", "")):
        found = node_problems(node)
        problems.extend(found)
        rows.append(
            {
                "name": node.get("name"),
                "running": bool(node.get("running")),
                "mem_alarm": node.get("mem_alarm"),
                "disk_free_alarm": node.get("disk_free_alarm"),
                "partitions": node.get("partitions") or [],
                "fd_used": node.get("fd_used"),
                "fd_total": node.get("fd_total"),
                "mem_used": node.get("mem_used"),
                "mem_limit": node.get("mem_limit"),
                "disk_free": node.get("disk_free"),
                "uptime_seconds": (node.get("uptime") or 0) // 1000 if node.get("running") else None,
                "problems": found,
            }
        )
    running = sum(1 for r in rows if r["running"])
    ok = not problems and bool(rows)
    summary = f"{running}/{len(rows)} nodes running; " + (
        "healthy" if ok else "; ".join(problems) or "no nodes"
    )
    return NodeHealthResult(
        ok=ok, nodes=rows, running=running, total=len(rows), problems=problems, summary=summary
    )


def export_definitions(ctx: ActionContext, params: ExportParams) -> ExportResult:
    """Write the broker's definitions under the data directory (see ``rabbitmq.export_definitions``).

    The path is checked before the broker is asked anything, so a refused path writes nothing.
    """
    name = params.path if params.path is not None else f"definitions-{ctx.run_id or 'export'}.json"
    try:
        parts = files.relative_parts(name)
    except files.UnsafePath as exc:
        raise ActionError(
            f"export_definitions: path refused, nothing written: {exc}", backend=BACKEND
        ) from None
    api = "/api/definitions" if params.vhost is None else f"/api/definitions/{q(params.vhost)}"
    doc = (
        management(ctx).get(api, timeout=ctx.remaining(), not_found=f"vhost {params.vhost!r} not found") or {}
    )
    data = json.dumps(doc, indent=2, sort_keys=True).encode()
    try:
        path = files.write_private(
            files.data_dir(), PurePosixPath(DEFINITIONS, *parts), data, overwrite=params.overwrite
        )
    except (files.UnsafePath, FileExistsError) as exc:
        raise ActionError(
            f"export_definitions: path {name!r} refused, nothing written: {exc}", backend=BACKEND
        ) from None
    counts = {
        k: len(doc.get(k) or []) for k in ("queues", "exchanges", "bindings", "policies", "users", "vhosts")
    }
    return ExportResult(
        path=str(path),
        bytes=len(data),
        **counts,
        summary=f"definitions written to {path} ({len(data)} bytes; "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ")",
    )
