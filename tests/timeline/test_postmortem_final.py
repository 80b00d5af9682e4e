"""The postmortem as the SRE book shapes it, and final on disk once the run has ended.

- a golden file: a fixed set of events (a PagerDuty incident, a verdict with a competing rule, an
  approved mitigation, a denied one, a passing ``core.assert``, a PagerDuty note that failed)
  rendered with the packaged template and compared with ``golden/postmortem.md``
  (``UPDATE_GOLDEN=1`` rewrites it after a deliberate template change; review the diff);
- detection from the alert's own time (PagerDuty ``created_at``, Alertmanager ``startsAt``);
- a failed notification is never a mitigation;
- ``core.assert`` says what held when it holds, never its failure text;
- the draft a ``finally`` step wrote is re-rendered after ``run.finished``: the file is final.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runbook.actions import ActionRegistry
from runbook.actions.context import ActionContext, Connections
from runbook.core.events import Event, Kind
from runbook.core.settings import Settings
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from runbook.testing.rehearsal import run_rehearsal
from runbook.timeline.postmortem import postmortem_facts, render_postmortem

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "postmortem.md"
T0 = datetime(2026, 11, 23, 3, 4, 0, tzinfo=UTC)
RUN = "golden-0001-aaaa-bbbb"


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNBOOK_TEMPLATES", raising=False)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


INCIDENT = {
    "id": "PGOLD1",
    "title": "Queue depth > 1000 on plans",
    "service": {"summary": "queue-platform"},
    "created_at": "2026-11-23T02:58:30Z",
}
EVENTS = [
    (0, Kind.RUN_STARTED, None, "Queue backlog triage", "pagerduty", {"playbook": "backlog-triage"}),
    (
        2,
        Kind.STEP_SUCCEEDED,
        "snapshot",
        "Snapshot: depth=5200, consumers=4",
        None,
        {"action": "queue.stats"},
    ),
    (
        9,
        Kind.FINDING,
        "verdict",
        "Root cause: poison_messages — job-7731 dead-lettered 5 times",
        None,
        {
            "verdict": "poison_messages",
            "evidence": "job-7731 dead-lettered 5 times (x-death)",
            "also_matched": ["poison_messages", "retry_storm"],
        },
    ),
    (
        10,
        Kind.STEP_FAILED,
        "pd_verdict",
        "Post the verdict to PagerDuty: PAGERDUTY_API_TOKEN is not set",
        None,
        {"action": "pagerduty.add_note", "destructive": False},
    ),
    (11, Kind.APPROVAL_REQUESTED, "quarantine", "Quarantine job-7731: approval requested", None, {}),
    (
        95,
        Kind.APPROVAL_APPROVED,
        "quarantine",
        "Quarantine job-7731: approved by alice",
        "alice",
        {"reason": "job-7731 blocks the head"},
    ),
    (
        97,
        Kind.STEP_SUCCEEDED,
        "quarantine",
        "Quarantine job-7731: moved=1",
        None,
        {"action": "queue.quarantine", "destructive": True},
    ),
    (98, Kind.APPROVAL_REQUESTED, "scale_consumers", "Scale consumers: approval requested", None, {}),
    (
        130,
        Kind.APPROVAL_DENIED,
        "scale_consumers",
        "Scale consumers: denied by carol",
        "carol",
        {"reason": "DB budget reserved"},
    ),
    (
        150,
        Kind.STEP_SUCCEEDED,
        "canary_clean",
        "No canary came back: no canary message came back (dlq_now=0, dlq_after_move=0)",
        None,
        {"action": "core.assert", "destructive": False},
    ),
    (
        151,
        Kind.STEP_SUCCEEDED,
        "postmortem",
        "postmortem draft written",
        None,
        {"action": "timeline.postmortem"},
    ),
    (
        152,
        Kind.RUN_FINISHED,
        None,
        "run denied: scale_consumers denied",
        None,
        {"status": "denied", "reason": "scale_consumers denied by carol"},
    ),
]


def golden_store(tmp_path: Path) -> TimelineStore:
    store = TimelineStore(open_database(f"sqlite:///{tmp_path / 'golden.db'}"))
    store.start_run(
        RUN,
        "backlog-triage",
        params={"queue": "plans", "incident": INCIDENT},
        incident_id="PGOLD1",
        requested_by="pagerduty",
        trigger="pagerduty",
    )
    for seconds, kind, step, summary, actor, details in EVENTS:
        store.append(
            Event(
                run_id=RUN,
                kind=kind,
                summary=summary,
                time=at(seconds),
                step_id=step,
                actor=actor,
                incident_id="PGOLD1",
                details=details,
            )
        )
    return store


FOLLOWUPS = """\
always:
  - "Write the impact and the timeline gaps into this draft."
poison_messages:
  - "Fail fast on unrecoverable errors and dead-letter the payload."
  - {item: "Alert on DLQ growth", type: detect, owner: queue-team}
"""


def test_golden_postmortem(tmp_path: Path) -> None:
    # the packaged template; a follow-ups file of the test's own, so editing the shipped advice
    # does not move the golden file
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "followups.yaml").write_text(FOLLOWUPS)
    text = render_postmortem(golden_store(tmp_path), RUN, folder=folder)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the postmortem changed; if on purpose, UPDATE_GOLDEN=1 and review the diff of " + str(GOLDEN)
    )


def test_the_sre_sections_are_there_in_order(tmp_path: Path) -> None:
    text = render_postmortem(golden_store(tmp_path), RUN, folder=None)
    sections = [
        "## Summary",
        "## Impact",
        "## Root causes",
        "## Trigger",
        "## Resolution",
        "### Decisions",
        "## Detection",
        "## Action items",
        "## Lessons learned",
        "### What went well",
        "### What went wrong",
        "### Where we got lucky",
        "## Timeline",
        "## Appendix: every event",
    ]
    positions = [text.index(s + "\n") for s in sections]
    assert positions == sorted(positions)
    # detection from the incident's own time, not the run start
    assert "- Detected at 2026-11-23 02:58:30 UTC (PagerDuty incident created)." in text
    assert "- The run started 5m 30s after the alert." in text
    # competing explanations name the other rule, not the verdict again
    assert "(competing explanations to rule out): retry_storm." in text
    # a failed PagerDuty note is what went wrong, never a mitigation
    resolution = text.split("## Resolution", 1)[1].split("## Detection", 1)[0]
    assert "pd_verdict" not in resolution
    assert "- Taken: `quarantine` (queue.quarantine)" in resolution
    assert "- Declined: `scale_consumers`" in resolution
    wrong = text.split("### What went wrong", 1)[1].split("### Where we got lucky", 1)[0]
    assert "Notification `pd_verdict` was not delivered" in wrong
    # action items carry a type and an owner
    assert "| Fail fast on unrecoverable errors" in text and "| prevent | _unassigned_ | _TODO_ |" in text
    # the key timeline is findings/decisions/actions/failures, the appendix keeps every event
    key = text.split("## Timeline", 1)[1].split("## Appendix", 1)[0]
    assert "| snapshot |" not in key and "| approval.denied | scale_consumers |" in key
    assert "| snapshot |" in text.split("## Appendix: every event", 1)[1]


def test_detection_from_alertmanager_starts_at() -> None:
    start = Event(run_id="r", kind=Kind.RUN_STARTED, summary="s", time=at(0))
    run = {"run_id": "r", "params": {"incident": {"startsAt": "2026-11-23T03:01:00Z"}}}
    facts = postmortem_facts(run, [start])
    assert facts["detected_at"] == at(-180)
    assert facts["detection_source"] == "Alertmanager alert started"
    assert facts["impact_source"] == "alert started"
    bare = postmortem_facts({"run_id": "r", "params": {}}, [start])
    assert bare["detected_at"] == at(0) and bare["detection_source"].startswith("run started")


def test_a_passing_assert_says_what_held(registry: ActionRegistry, settings: Settings) -> None:
    from runbook.actions.registry import invoke

    ctx = ActionContext(connections=Connections(settings))
    spec = registry["core.assert"]
    said = invoke(spec, ctx, {"that": True, "message": "canary came back: the cause is not fixed"})
    assert said.summary == "the condition held"
    with_facts = invoke(
        spec,
        ctx,
        {"that": True, "message": "canary came back", "holds": "no canary came back", "details": {"dlq": 0}},
    )
    assert with_facts.summary == "no canary came back (dlq=0)"
    assert "came back:" not in said.summary


def test_the_draft_on_disk_is_rerendered_after_the_run_ended(
    registry: ActionRegistry, settings: Settings, store: TimelineStore, tmp_path: Path
) -> None:
    report = run_rehearsal(
        ROOT / "tests" / "rehearsals" / "backlog_triage" / "poison_messages.yaml",
        registry=registry,
        settings=settings,
        store=store,
        playbooks_dir=ROOT / "playbooks",
    )
    assert not report.problems, report.explain()
    drafts = list((tmp_path / "home" / "postmortems").glob("*.md"))
    assert len(drafts) == 1
    text = drafts[0].read_text()
    assert "in progress" not in text and "- Outcome: **completed**" in text
    assert "| run.finished |" in text  # written in finally, completed after the run's end
    assert text.count("| postmortem |") >= 1 and "| pd_summary |" in text  # the steps after it too
    assert text == render_postmortem(store, report.run_id)
