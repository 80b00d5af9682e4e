"""Test-only actions for approval tests: a destructive action that leaves evidence of each
execution in a file, and a read-only one reading a value a test changes (the "queue depth")."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions import ActionContext, ActionResult, action


class RecordParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(description="file that gets one line per execution")
    label: str = Field("x", description="what to write")


class RecordResult(ActionResult):
    executions: int


def describe_record(ctx: ActionContext, params: RecordParams) -> str:
    return f"append {params.label!r} to {params.file}"


@action(
    "testing.record",
    summary="Append a line to a file (destructive)",
    destructive=True,
    describe=describe_record,
)
def record(ctx: ActionContext, params: RecordParams) -> RecordResult:
    """Leaves one line per execution so a test can count how often the gated step really ran."""
    path = Path(params.file)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(params.label + "\n")
    n = len(path.read_text(encoding="utf-8").splitlines())
    return RecordResult(executions=n, summary=f"recorded {params.label} ({n} executions)")


class ReadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(description="file holding an integer")


class ReadResult(ActionResult):
    value: int


@action("testing.read_value", summary="Read an integer from a file (read-only)")
def read_value(ctx: ActionContext, params: ReadParams) -> ReadResult:
    """Stands in for a live measurement (queue depth) that can change between two runs."""
    value = int(Path(params.file).read_text(encoding="utf-8").strip() or 0)
    return ReadResult(value=value, summary=f"value is {value}")
