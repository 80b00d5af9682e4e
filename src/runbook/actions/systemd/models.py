"""Params and results of the systemd actions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from runbook.actions.registry import ActionResult

#: a unit name as systemd spells it (templates and instances included); never an option or a glob
UNIT = r"^[A-Za-z0-9][A-Za-z0-9:_.@\\-]*\.(service|socket|timer|target|path|mount)$"


class _Params(BaseModel):
    model_config = {"extra": "forbid"}


class UnitStatusParams(_Params):
    units: list[Annotated[str, Field(pattern=UNIT)]] = Field(
        min_length=1,
        max_length=50,
        description="unit names, e.g. [attune-executor.service, attune-worker@1.service]",
    )


class UnitInfo(BaseModel):
    name: str
    load_state: str
    active_state: str
    sub_state: str
    main_pid: int
    restarts: int
    result: str
    exit_status: int
    active_since: str


class UnitStatusResult(ActionResult):
    active: int
    total: int
    failed: list[str]
    not_found: list[str]
    inactive: list[str]
    restarts: int
    units: list[UnitInfo]


class RestartUnitParams(_Params):
    unit: str = Field(pattern=UNIT, description="the unit to restart, e.g. attune-executor.service")
    wait_seconds: float = Field(
        30, gt=0, le=600, description="wait this long for the unit to be active again"
    )


class RestartUnitResult(ActionResult):
    unit: str
    previous_pid: int
    pid: int
    active_state: str
    sub_state: str
    restarts: int
