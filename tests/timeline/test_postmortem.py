"""The postmortem draft rendered from a real rehearsal run's timeline.

A rehearsal drives the real engine over the shipped backlog-triage playbook (recorded backend
results, scripted approvals), so the events are exactly what a production run records; the draft
must show the verdict with its evidence, who decided what and when, mitigations taken and
declined, and the follow-ups that belong to the verdict.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions import ActionRegistry
from runbook.core.settings import Settings
from runbook.store.timeline import TimelineStore
from runbook.testing.rehearsal import run_rehearsal
from runbook.timeline.postmortem import load_followups, render_postmortem

ROOT = Path(__file__).resolve().parents[2]
REHEARSALS = ROOT / "tests" / "rehearsals"


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))


def rehearse(name: str, registry: ActionRegistry, settings: Settings, store: TimelineStore) -> str:
    report = run_rehearsal(
        REHEARSALS / name, registry=registry, settings=settings, store=store, playbooks_dir=ROOT / "playbooks"
    )
    assert not report.problems, report.explain()
    return report.run_id


def test_draft_of_a_poison_message_incident(
    registry: ActionRegistry, settings: Settings, store: TimelineStore
) -> None:
    run_id = rehearse("backlog_triage/poison_messages.yaml", registry, settings, store)
    text = render_postmortem(store, run_id)
    assert text.startswith("# Postmortem draft: backlog-triage — Queue depth > 1000 on plans")
    assert "- Outcome: **completed**" in text
    assert "| impact start (incident created) | 2026-11-23 03:00:00 UTC |" in text
    assert "Verdict: **poison_messages** — 1 message(s) of plans carry failure evidence (ids job-7731" in text
    assert "Other rules that also held (competing explanations to rule out): retry_storm." in text
    # mitigations taken, with the action, and the decisions with who/why
    assert "- Taken: `quarantine` (queue.quarantine)" in text
    assert "- Taken: `redrive_rest` (queue.redrive)" in text
    assert "- `quarantine`: **approved** by alice at " in text
    assert '"job-7731 blocks the head"' in text
    assert "- `redrive_rest`: **approved** by bob" in text
    # every step with its final status; the timeline keeps every event
    assert "| kafka_lag | skipped |" in text
    assert "| canary_consumed | succeeded |" in text
    assert text.count("| approval.requested |") == 3
    # follow-ups for this verdict, then the ones every postmortem gets
    assert "dead-letter the payload instead of requeueing it (StarForge). | prevent | _unassigned_ |" in text
    assert "Enforce producer rate limits" not in text
    assert "| Schedule a game-day that replays this incident (StarForge). | process |" in text


def test_draft_shows_declined_mitigations_and_failures(
    registry: ActionRegistry, settings: Settings, store: TimelineStore
) -> None:
    run_id = rehearse("backlog_triage/producer_storm.yaml", registry, settings, store)
    text = render_postmortem(store, run_id)
    assert "Verdict: **producer_storm**" in text
    assert "- Declined: `scale_consumers`" in text and "by carol" in text
    assert "- `scale_consumers`: **denied** by carol" in text
    assert '"DB budget reserved for the billing batch"' in text
    assert "- Taken: `pause_producer_flag` (postgres.execute)" in text
    assert "| Enforce producer rate limits at the API" in text

    failed_id = rehearse("backlog_triage/consumer_outage.yaml", registry, settings, store)
    failed = render_postmortem(store, failed_id)
    assert "- Outcome: **failed** — canary messages came back to the failed set / DLQ of plans" in failed
    assert "- Failed: `canary_clean`" in failed
    assert "| impact start (run started) |" in failed  # no incident: the run start is the best bound
    assert "| Fix the crash cause found in the consumer logs (OOM, exception) and add a regression" in failed
    assert "regression test (StarForge). | repair | _unassigned_ |" in failed


def test_draft_without_a_verdict_or_approvals(
    registry: ActionRegistry, settings: Settings, store: TimelineStore
) -> None:
    run_id = rehearse("daily_hygiene/quiet_day.yaml", registry, settings, store)
    text = render_postmortem(store, run_id)
    assert "No verdict was recorded by this run." in text
    assert "- No approval was needed." in text
    assert "- None taken." in text


def test_every_shipped_verdict_has_followups() -> None:
    table = load_followups(None)  # the packaged followups.yaml
    verdicts = {
        "producer_storm",
        "consumer_outage",
        "slow_processing",
        "retry_storm",
        "poison_messages",
        "database_trouble",
        "no_backlog",
        "executions_stuck",
        "consumers_hung",
        "consumers_crash_looping",
        "no_consumers",
        "broker_connection_problems",
        "rabbit_node_down",
        "kafka_broker_down",
        "kafka_under_replicated",
        "rabbit_alarm",
        "unknown",
    }
    assert verdicts <= set(table), sorted(verdicts - set(table))
    assert table["always"]
