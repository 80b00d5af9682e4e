"""Timeline actions: notes and findings on the run's timeline, and the postmortem draft."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.registry import ActionResult, action
from runbook.core import files
from runbook.core.events import Kind

#: the folder of the data directory postmortem drafts are written to
POSTMORTEMS = "postmortems"


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
    output: str | None = Field(
        None,
        description="file NAME under <data dir>/postmortems/ (relative, no '..');"
        " default <date>-<playbook>-<first 8 of the run id>.md",
    )
    template: str | None = Field(
        None,
        description="template NAME in RUNBOOK_TEMPLATES or the packaged templates (not a path);"
        " default postmortem.md.j2",
    )
    overwrite: bool = Field(True, description="replace an earlier draft of the same name (a re-render)")


class PostmortemResult(ActionResult):
    path: str
    lines: int


def default_name(ctx: ActionContext) -> str:
    """``<date>-<playbook>-<run8>.md``: sorted by date, readable, unique per run."""
    run = _recorder(ctx).store.get_run(ctx.run_id) or {}
    date = str(run.get("started_at") or "")[:10] or datetime.now(UTC).strftime("%Y-%m-%d")
    playbook = re.sub(r"[^a-z0-9_-]+", "-", (ctx.playbook or str(run.get("playbook") or "run")).lower())
    return f"{date}-{playbook}-{re.sub(r'[^a-zA-Z0-9]', '', ctx.run_id)[:8]}.md"


@action("timeline.postmortem", summary="Render the postmortem draft from the run's timeline")
def postmortem(ctx: ActionContext, params: PostmortemParams) -> PostmortemResult:
    """Writes a Markdown draft (summary, impact window, timeline, verdict, mitigations, follow-ups)
    from everything the run recorded so far. Usually a ``finally`` step."""
    from runbook.core.sandbox import ExpressionError
    from runbook.timeline.postmortem import TemplateRefused, render_postmortem

    if ctx.dry_run:  # a rehearsal of the playbook is no incident: nothing to write up
        return PostmortemResult(path="", lines=0, summary="dry run: no postmortem draft written")
    name = params.output if params.output is not None else default_name(ctx)
    try:
        parts = files.relative_parts(name)
    except files.UnsafePath as exc:
        raise ActionError(f"timeline.postmortem: output refused, nothing written: {exc}") from None
    recorder = _recorder(ctx)

    def render_and_write() -> tuple[Path, str]:
        text = render_postmortem(
            recorder.store, ctx.run_id, params.template, folder=ctx.settings.templates_dir
        )
        path = files.write_private(
            files.data_dir(), PurePosixPath(POSTMORTEMS, *parts), text.encode("utf-8"), overwrite=True
        )
        return path, text

    try:
        text = render_postmortem(
            recorder.store, ctx.run_id, params.template, folder=ctx.settings.templates_dir
        )
    except TemplateRefused as exc:
        raise ActionError(f"timeline.postmortem: {exc}; nothing written") from None
    except ExpressionError as exc:
        raise ActionError(f"timeline.postmortem: the template failed: {exc}; nothing written") from None
    try:
        path = files.write_private(
            files.data_dir(),
            PurePosixPath(POSTMORTEMS, *parts),
            text.encode("utf-8"),
            overwrite=params.overwrite,
        )
    except (files.UnsafePath, FileExistsError) as exc:
        raise ActionError(f"timeline.postmortem: output {name!r} refused, nothing written: {exc}") from None
    # written in ``finally``, before ``run.finished``: once the run's end is recorded, the same
    # file is rendered again, so the draft on disk has the outcome and the last steps
    if hasattr(recorder, "after_finish"):
        recorder.after_finish(lambda _event: render_and_write())
    return PostmortemResult(
        path=str(path), lines=text.count("\n"), summary=f"postmortem draft written to {path}"
    )
