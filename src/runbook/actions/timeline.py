"""Timeline actions: notes and findings on the run's timeline, and the postmortem draft."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.registry import ActionResult, action
from runbook.config import data_dir
from runbook.timeline.events import Kind


class NoteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the note, one readable line")
    details: dict[str, Any] = Field(default_factory=dict, description="structured facts kept with it")
    finding: bool = Field(False, description="mark as a finding (shown prominently, used by the postmortem)")


class NoteResult(ActionResult):
    text: str


def _recorder(ctx: ActionContext) -> Any:
    if ctx.timeline is None or not hasattr(ctx.timeline, "emit"):
        raise ActionError("no timeline is attached to this run")
    return ctx.timeline


@action("timeline.note", summary="Write a note or a finding on the run's timeline")
def note(ctx: ActionContext, params: NoteParams) -> NoteResult:
    """Adds a line to the incident timeline (and the Slack thread). Findings carry their details
    (e.g. ``verdict`` and ``evidence``) into the postmortem."""
    kind = Kind.FINDING if params.finding else Kind.NOTE
    _recorder(ctx).emit(kind, params.text, step_id=ctx.step_id, details=params.details)
    return NoteResult(text=params.text, summary=params.text)


class PostmortemParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output: str | None = Field(None, description="file to write; default ~/.runbook/postmortems/<run>.md")
    template: str | None = Field(None, description="template path; default templates/postmortem.md.j2")


class PostmortemResult(ActionResult):
    path: str
    lines: int


@action("timeline.postmortem", summary="Render the postmortem draft from the run's timeline")
def postmortem(ctx: ActionContext, params: PostmortemParams) -> PostmortemResult:
    """Writes a Markdown draft (summary, impact window, timeline, verdict, mitigations, follow-ups)
    from everything the run recorded so far. Usually a ``finally`` step."""
    from runbook.timeline.postmortem import render_postmortem

    recorder = _recorder(ctx)
    text = render_postmortem(recorder.store, ctx.run_id, params.template)
    path = Path(params.output) if params.output else data_dir() / "postmortems" / f"{ctx.run_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return PostmortemResult(
        path=str(path), lines=text.count("\n"), summary=f"postmortem draft written to {path}"
    )
