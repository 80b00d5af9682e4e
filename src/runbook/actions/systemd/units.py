"""Bodies of ``systemd.unit_status`` and ``systemd.restart_unit`` (declared in :mod:`.actions`)."""

from __future__ import annotations

import time

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.systemd.client import BACKEND, run, show
from runbook.actions.systemd.models import (
    RestartUnitParams,
    RestartUnitResult,
    UnitInfo,
    UnitStatusParams,
    UnitStatusResult,
)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def unit_info(ctx: ActionContext, unit: str) -> UnitInfo:
    p = show(ctx, unit)
    return UnitInfo(
        name=unit,
        load_state=p.get("LoadState", ""),
        active_state=p.get("ActiveState", ""),
        sub_state=p.get("SubState", ""),
        main_pid=_int(p.get("MainPID", "0")),
        restarts=_int(p.get("NRestarts", "0")),
        result=p.get("Result", ""),
        exit_status=_int(p.get("ExecMainStatus", "0")),
        active_since=p.get("ActiveEnterTimestamp", ""),
    )


def unit_status(ctx: ActionContext, params: UnitStatusParams) -> UnitStatusResult:
    infos = [unit_info(ctx, u) for u in params.units]
    not_found = [i.name for i in infos if i.load_state == "not-found"]
    failed = [i.name for i in infos if i.active_state == "failed"]
    inactive = [
        i.name for i in infos if i.active_state in ("inactive", "deactivating") and i.name not in not_found
    ]
    active = sum(1 for i in infos if i.active_state == "active")
    parts = [f"{active}/{len(infos)} active"]
    parts += [f"failed: {', '.join(failed)}"] if failed else []
    parts += [f"inactive: {', '.join(inactive)}"] if inactive else []
    parts += [f"not found: {', '.join(not_found)}"] if not_found else []
    restarts = sum(i.restarts for i in infos)
    if restarts:
        parts.append(f"{restarts} automatic restarts")
    return UnitStatusResult(
        summary="; ".join(parts),
        active=active,
        total=len(infos),
        failed=failed,
        not_found=not_found,
        inactive=inactive,
        restarts=restarts,
        units=infos,
    )


def _existing(ctx: ActionContext, unit: str) -> UnitInfo:
    info = unit_info(ctx, unit)
    if info.load_state != "loaded":
        raise GuardrailRefused(
            f"unit {unit} is {info.load_state or 'unknown'}: nothing to restart", backend=BACKEND
        )
    return info


def describe_restart(ctx: ActionContext, params: RestartUnitParams) -> str:
    info = _existing(ctx, params.unit)
    since = f" since {info.active_since}" if info.active_since else ""
    return (
        f"restart {params.unit} (now {info.active_state}/{info.sub_state}{since}, pid {info.main_pid},"
        f" {info.restarts} automatic restarts); wait up to {params.wait_seconds:g}s for it to be active again"
    )


def restart_unit(ctx: ActionContext, params: RestartUnitParams) -> RestartUnitResult:
    before = _existing(ctx, params.unit)
    run(ctx, "restart", params.unit)
    deadline = time.monotonic() + min(params.wait_seconds, ctx.remaining(default=params.wait_seconds))
    after = unit_info(ctx, params.unit)
    while after.active_state != "active" and time.monotonic() < deadline:
        time.sleep(0.2)
        after = unit_info(ctx, params.unit)
    if after.active_state != "active":
        raise ActionError(
            f"{params.unit} restarted but is {after.active_state}/{after.sub_state} after"
            f" {params.wait_seconds:g}s (result {after.result}, exit status {after.exit_status})",
            backend=BACKEND,
        )
    return RestartUnitResult(
        summary=f"restarted {params.unit}: pid {before.main_pid} -> {after.main_pid},"
        f" {after.active_state}/{after.sub_state}",
        unit=params.unit,
        previous_pid=before.main_pid,
        pid=after.main_pid,
        active_state=after.active_state,
        sub_state=after.sub_state,
        restarts=after.restarts,
    )
