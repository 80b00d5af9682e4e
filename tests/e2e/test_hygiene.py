"""daily-hygiene and weekly-hygiene end to end: real queues, real dead-lettered messages (x-death),
real statistics tables; the report's contents and the bounded deletes are checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pika
import pytest

from runbook.core.settings import Settings
from tests.e2e.conftest import (
    connect,
    declare,
    delete_queues,
    pg_execute,
    publish,
    ready,
    run_playbook,
    settle,
    wait_until,
)
from tests.support.pg_roles import writer_url


@pytest.fixture
def queues() -> Iterator[tuple[str, str]]:
    """A work queue that dead-letters into ``<name>.dlq``: 6 messages rejected by a consumer (with an
    x-exception-type header), 2 expired by TTL; 25 messages left waiting with no consumer."""
    tag = uuid.uuid4().hex[:8]
    work, dlq = f"e2e-hyg-{tag}", f"e2e-hyg-{tag}.dlq"
    declare(dlq)
    declare(work, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    try:
        publish(work, 4, prefix="bad", headers={"x-exception-type": "ValueError"})
        publish(work, 2, prefix="slow", headers={"x-exception-type": "TimeoutError"})
        conn = connect()
        try:
            ch = conn.channel()
            for _ in range(6):
                method, _, _ = ch.basic_get(work)
                ch.basic_nack(method.delivery_tag, requeue=False)
            for i in range(2):  # per-message TTL: dead-lettered as "expired"
                ch.basic_publish("", work, b"{}", pika.BasicProperties(expiration="1", message_id=f"ttl-{i}"))
        finally:
            conn.close()
        wait_until(lambda: ready(dlq) == 8, 20, "dead-lettering")
        publish(work, 25)
        settle(work, 25, 0)
        settle(dlq, 8, 0)
        yield work, dlq
    finally:
        delete_queues(work, dlq)


def test_daily_report(e2e_env: Settings, queues: tuple[str, str]) -> None:
    work, dlq = queues
    result = run_playbook("daily-hygiene", {"dlq_alert_depth": 5, "top_n": 50}, f"e2e-{work}")
    assert result.status == "completed", result.text()
    facts = result.output("facts")["values"]
    assert work in facts["stuck"] and work in facts["no_consumers"]
    assert dlq in facts["dlq_over"] and dlq not in facts["stuck"]
    report = result.output("report")
    text = report["text"] if "text" in report else report["summary"]
    assert "Daily queue report" in text
    assert f"{dlq}=8" in text
    assert "Kafka lag: not configured" in text
    finding = [e for e in result.events if e.kind.value == "finding" and e.step_id == "report"]
    assert finding and work in str(finding[0].details.get("stuck"))  # stuck queues make it a finding
    assert ready(work) == 25 and ready(dlq) == 8  # read-only: nothing moved


@pytest.fixture
def stats_tables(monkeypatch: pytest.MonkeyPatch, e2e_env: Settings) -> Iterator[tuple[str, str]]:
    """Attune's tables (the only ones weekly-hygiene's enum lets a run delete from): 3 stale inactive
    statistics rows (deletable), 1 stale but active, 1 fresh; 6 snapshots past retention (more than
    the run's max_rows allows). The run connects as a least-privilege writer role, not a superuser."""
    monkeypatch.setenv("DATABASE_URL", writer_url())
    schema = "attune"
    stats, snaps = f"{schema}.queue_stats", f"{schema}.queue_snapshots"
    pg_execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    pg_execute(f"DROP TABLE IF EXISTS {stats}, {snaps}")
    pg_execute(
        f"CREATE TABLE {stats} (queue_name text PRIMARY KEY, queue_length int, active_count int,"
        " last_updated timestamptz)"
    )
    pg_execute(
        f"INSERT INTO {stats} VALUES ('old-a', 0, 0, now() - interval '30 days'),"
        " ('old-b', 0, 0, now() - interval '9 days'), ('old-c', 0, 0, now() - interval '8 days'),"
        " ('old-busy', 5, 1, now() - interval '30 days'), ('fresh', 0, 0, now() - interval '1 day')"
    )
    pg_execute(f"CREATE TABLE {snaps} (id int PRIMARY KEY, snapshot_time timestamptz)")
    pg_execute(f"INSERT INTO {snaps} SELECT g, now() - interval '60 days' FROM generate_series(1, 6) g")
    yield stats, snaps
    pg_execute(f"DROP TABLE IF EXISTS {stats}, {snaps}")


def test_weekly_review_and_bounded_cleanup(
    e2e_env: Settings, queues: tuple[str, str], stats_tables: tuple[str, str]
) -> None:
    _work, dlq = queues
    stats, snaps = stats_tables
    result = run_playbook(
        "weekly-hygiene",
        {"dlq": dlq, "stats_table": stats, "snapshots_table": snaps, "max_delete_rows": 4},
        f"e2e-{dlq}",
    )
    assert result.status == "completed", result.text()
    review = result.output("review")
    assert review["count"] == 8
    assert review["death_reasons"] == {"rejected": 6, "expired": 2}
    categories = result.output("grouped")["values"]["categories"]
    assert (categories["rejected"], categories["transient"]) == (6, 2)
    text = result.output("report")["summary"]
    assert "rejected=6" in text and "expired=2" in text
    assert "ValueError=4" in text and "TimeoutError=2" in text
    assert "3 of 3 deleted" in text
    # the bounded deletes: exactly the stale inactive rows; the snapshot delete (6 > 4) rolled back
    assert result.output("delete_stale_stats")["rows_affected"] == 3
    left = sorted(r[0] for r in pg_execute(f"SELECT queue_name FROM {stats}"))
    assert left == ["fresh", "old-busy"]
    assert result.statuses["delete_old_snapshots"] == "failed"
    assert pg_execute(f"SELECT count(*) FROM {snaps}")[0][0] == 6
    assert ready(dlq) == 8  # the review requeued every message in place


@pytest.mark.parametrize(
    "table",
    [
        "public.e2e_victim; DROP TABLE e2e_victim",  # SQL in a param
        '"Weird Name"',  # quoted identifiers are not identifiers here
        "pg_catalog.pg_authid",  # a valid name outside the enum
        "e2e_victim",  # an ordinary table outside the enum
    ],
)
def test_weekly_cleanup_table_cannot_be_chosen_by_a_run(
    e2e_env: Settings, stats_tables: tuple[str, str], table: str
) -> None:
    """The deletes run without approval, so a run's params cannot aim them anywhere but the
    reviewed tables: the run is refused before any step, and every table keeps its rows."""
    from runbook.compiler.params import ParamError

    pg_execute("CREATE TABLE IF NOT EXISTS e2e_victim (id int)")
    pg_execute("INSERT INTO e2e_victim VALUES (1)")
    try:
        before = pg_execute("SELECT count(*) FROM e2e_victim")[0][0]
        with pytest.raises(ParamError) as info:
            run_playbook("weekly-hygiene", {"snapshots_table": table}, f"e2e-victim-{uuid.uuid4().hex[:6]}")
        text = str(info.value)
        assert "not a plain table name" in text or "is not one of ['attune.queue_snapshots']" in text
        assert pg_execute("SELECT count(*) FROM e2e_victim")[0][0] == before
        assert pg_execute(f"SELECT count(*) FROM {stats_tables[1]}")[0][0] == 6
    finally:
        pg_execute("DROP TABLE IF EXISTS e2e_victim")
