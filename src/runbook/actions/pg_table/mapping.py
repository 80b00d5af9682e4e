"""How a table is a queue: the column mapping a playbook passes (or a preset from the seeds).

Why a mapping and not a fixed schema: every team's job table differs (StarForge ``queue_jobs`` with
``pending``/``run_after``/``attempts``; Attune's ``attune.execution`` with ``requested``/``running``
and no attempts column). Column and table names only ever reach SQL as quoted identifiers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runbook.actions.context import ActionError

BACKEND = "pg_table"


class TableMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str = Field(description="the queue table (schema-qualified or on the search path)")
    id_column: str = "id"
    status_column: str = "status"
    ready_values: list[str] = Field(default_factory=lambda: ["pending"], min_length=1)
    running_values: list[str] = Field(default_factory=lambda: ["running"])
    done_values: list[str] = Field(default_factory=lambda: ["done", "completed"])
    failed_values: list[str] = Field(default_factory=lambda: ["failed"], min_length=1)
    created_column: str = "created_at"
    run_after_column: str | None = "run_after"
    updated_column: str | None = "updated_at"
    attempts_column: str | None = "attempts"
    type_column: str | None = "type"
    error_column: str | None = "last_error"
    payload_column: str | None = "payload"
    dlq_table: str | None = Field(
        None, description="DLQ table (id, original_job_id, type, payload, reason, created_at)"
    )


PRESETS: dict[str, dict[str, Any]] = {
    # seed 004 StarForge: queue_jobs + queue_jobs_dlq
    "starforge": {
        "table": "queue_jobs",
        "dlq_table": "queue_jobs_dlq",
        "running_values": ["running", "processing"],
        "done_values": ["done", "completed", "succeeded"],
    },
    # seed 002 Attune: executions are the queue's items (attune.execution)
    "attune": {
        "table": "attune.execution",
        "ready_values": ["requested", "scheduling", "scheduled"],
        "running_values": ["running"],
        "done_values": ["completed", "succeeded"],
        "failed_values": ["failed", "timeout"],
        "created_column": "created",
        "run_after_column": None,
        "updated_column": "updated",
        "attempts_column": None,
        "type_column": "action",
        "error_column": None,
        "payload_column": None,
        "dlq_table": None,
    },
}


def mapping_of(value: dict[str, Any] | str | None) -> TableMapping:
    """A preset name, or a mapping dict (a preset's fields overridden with ``preset: name``)."""
    if value is None:
        raise ActionError(
            "system pg_table needs `table`: a mapping or a preset (starforge, attune)", backend=BACKEND
        )
    if isinstance(value, str):
        if value not in PRESETS:
            raise ActionError(f"unknown table preset {value!r}; one of {', '.join(PRESETS)}", backend=BACKEND)
        return TableMapping.model_validate(PRESETS[value])
    data = dict(value)
    preset = data.pop("preset", None)
    if preset is not None:
        data = {**PRESETS.get(str(preset), {}), **data}
    try:
        return TableMapping.model_validate(data)
    except ValidationError as exc:
        raise ActionError(f"bad table mapping: {exc.errors()[0]['msg']}", backend=BACKEND) from None
