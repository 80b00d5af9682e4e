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
from tests.support.sqs import KEY, REGION, SECRET, SQSBench, moto_sqs  # noqa: F401  (fixture)


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


class AttuneDB:
    """A database of its own holding Attune's ``attune`` schema: weekly-hygiene's enum pins the
    cleanup to ``attune.queue_stats`` / ``attune.queue_snapshots``, names other tests (and other
    people's runs) use too, so the test takes a whole database to be alone with them."""

    def __init__(self) -> None:
        self.name = f"e2e_weekly_{uuid.uuid4().hex[:8]}"
        self.url = f"postgresql://root@127.0.0.1:5432/{self.name}"

    def sql(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


@pytest.fixture
def stats_tables(monkeypatch: pytest.MonkeyPatch, e2e_env: Settings) -> Iterator[tuple[str, str, AttuneDB]]:
    """Attune's tables (the only ones weekly-hygiene's enum lets a run delete from), in a database
    of the test's own: 3 stale inactive statistics rows (deletable), 1 stale but active, 1 fresh; 6
    snapshots past retention (more than the run's max_rows allows). The run connects as a
    least-privilege writer role, not a superuser."""
    db = AttuneDB()
    pg_execute(f"CREATE DATABASE {db.name}")
    monkeypatch.setenv("DATABASE_URL", writer_url().rsplit("/", 1)[0] + f"/{db.name}")
    stats, snaps = "attune.queue_stats", "attune.queue_snapshots"
    try:
        db.sql("CREATE SCHEMA attune")
        db.sql(
            f"CREATE TABLE {stats} (queue_name text PRIMARY KEY, queue_length int, active_count int,"
            " last_updated timestamptz)"
        )
        db.sql(
            f"INSERT INTO {stats} VALUES ('old-a', 0, 0, now() - interval '30 days'),"
            " ('old-b', 0, 0, now() - interval '9 days'), ('old-c', 0, 0, now() - interval '8 days'),"
            " ('old-busy', 5, 1, now() - interval '30 days'), ('fresh', 0, 0, now() - interval '1 day')"
        )
        db.sql(f"CREATE TABLE {snaps} (id int PRIMARY KEY, snapshot_time timestamptz)")
        db.sql(f"INSERT INTO {snaps} SELECT g, now() - interval '60 days' FROM generate_series(1, 6) g")
        yield stats, snaps, db
    finally:
        pg_execute(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")


def test_weekly_review_and_bounded_cleanup(
    e2e_env: Settings, queues: tuple[str, str], stats_tables: tuple[str, str, AttuneDB]
) -> None:
    _work, dlq = queues
    stats, snaps, db = stats_tables
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
    left = sorted(str(r[0]) for r in db.sql(f"SELECT queue_name FROM {stats}"))
    assert left == ["fresh", "old-busy"]
    assert result.statuses["delete_old_snapshots"] == "failed"
    assert db.sql(f"SELECT count(*) FROM {snaps}")[0][0] == 6
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
    e2e_env: Settings, stats_tables: tuple[str, str, AttuneDB], table: str
) -> None:
    """The deletes run without approval, so a run's params cannot aim them anywhere but the
    reviewed tables: the run is refused before any step, and every table keeps its rows."""
    from runbook.compiler.params import ParamError

    db = stats_tables[2]  # the victim lives in the test's own database: no other test sees it
    db.sql("CREATE TABLE IF NOT EXISTS e2e_victim (id int)")
    db.sql("INSERT INTO e2e_victim VALUES (1)")
    try:
        before = db.sql("SELECT count(*) FROM e2e_victim")[0][0]
        with pytest.raises(ParamError) as info:
            run_playbook("weekly-hygiene", {"snapshots_table": table}, f"e2e-victim-{uuid.uuid4().hex[:6]}")
        text = str(info.value)
        assert "not a plain table name" in text or "is not one of ['attune.queue_snapshots']" in text
        assert db.sql("SELECT count(*) FROM e2e_victim")[0][0] == before
        assert stats_tables[2].sql(f"SELECT count(*) FROM {stats_tables[1]}")[0][0] == 6
    finally:
        db.sql("DROP TABLE IF EXISTS e2e_victim")


# -- daily: unexpectedly empty queues [003] and Attune's daily queries [002] ---------------------


@pytest.fixture
def attune_stats(monkeypatch: pytest.MonkeyPatch, e2e_env: Settings) -> Iterator[str]:
    """Attune's queue_stats and action tables in a unique schema: action 7 (core.http.get) holds
    work and was last updated 45 minutes ago (stuck for the daily check's 30 min), action 3
    (core.echo) is busy and fresh, action 5 (core.noop) is idle; volumes differ for the top list."""
    monkeypatch.setenv("DATABASE_URL", writer_url())
    schema = f"e2e_daily_{uuid.uuid4().hex[:8]}"
    pg_execute(f"CREATE SCHEMA {schema}")
    pg_execute(f"CREATE TABLE {schema}.action (id bigint PRIMARY KEY, ref text NOT NULL)")
    pg_execute(f"INSERT INTO {schema}.action VALUES (3, 'core.echo'), (5, 'core.noop'), (7, 'core.http.get')")
    pg_execute(
        f"CREATE TABLE {schema}.queue_stats (action_id bigint PRIMARY KEY, queue_length int,"
        " active_count int, max_concurrent int, oldest_enqueued_at timestamptz, last_updated timestamptz,"
        " total_enqueued bigint, total_completed bigint)"
    )
    pg_execute(
        f"INSERT INTO {schema}.queue_stats VALUES"
        " (3, 4, 2, 5, now(), now(), 9000, 8994),"
        " (5, 0, 0, 5, NULL, now() - interval '2 days', 100, 100),"
        " (7, 55, 5, 5, now() - interval '1 hour', now() - interval '45 minutes', 1200, 1100)"
    )
    yield schema
    pg_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_daily_empty_queues_and_attune_queries(e2e_env: Settings, attune_stats: str) -> None:
    """A listed always-busy queue with no inflow is unexpectedly empty (a finding); a queue whose
    consumer waits while nothing is published is listed without alarm; an idle queue nobody
    consumes is neither. Attune's own daily queries name the stuck action by its ref."""
    tag = uuid.uuid4().hex[:8]
    waiting, busy, idle = f"e2e-hyg-wait-{tag}", f"e2e-hyg-busy-{tag}", f"e2e-hyg-idle-{tag}"
    declare(waiting, busy, idle)
    conn = connect()
    try:
        conn.channel().basic_consume(waiting, lambda *a: None)
        settle(waiting, 0, 1)
        result = run_playbook(
            "daily-hygiene",
            {
                "expected_busy": [busy],
                "queue_stats_table": f"{attune_stats}.queue_stats",
                "action_table": f"{attune_stats}.action",
            },
            f"e2e-{tag}",
        )
    finally:
        conn.close()
        delete_queues(waiting, busy, idle)
    assert result.status == "completed", result.text()
    facts = result.output("facts")["values"]
    assert busy in facts["empty_unexpected"] and waiting not in facts["empty_unexpected"]
    assert waiting in facts["empty_waiting"] and busy not in facts["empty_waiting"]
    assert idle not in facts["empty_unexpected"] + facts["empty_waiting"]
    text = result.output("report")["summary"]
    assert (
        "Attune queue_stats: 2 active (core.http.get 55 queued/5 running, core.echo 4 queued/2 running)"
        in text
    )
    assert "stuck 30+ min: core.http.get (45." in text
    assert "top by volume: core.echo 8994/9000, core.http.get 1100/1200, core.noop 100/100" in text
    finding = [e for e in result.events if e.kind.value == "finding" and e.step_id == "report"]
    assert finding and finding[0].details.get("attune_stuck") == [7]


def test_daily_on_a_table_queue(e2e_env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """system=pg_table: the report covers the one table queue through queue.* (StarForge's
    queue_jobs): stuck (jobs wait, none completes) and its failed rows as the DLQ; the Attune
    queries are left out (attune_queries false)."""
    monkeypatch.setenv("DATABASE_URL", writer_url())
    schema = f"e2e_dailyt_{uuid.uuid4().hex[:8]}"
    pg_execute(f"CREATE SCHEMA {schema}")
    try:
        pg_execute(
            f"CREATE TABLE {schema}.queue_jobs (id bigint PRIMARY KEY, type text, status text NOT NULL,"
            " payload jsonb, attempts int NOT NULL DEFAULT 0, last_error text, run_after timestamptz,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
        )
        pg_execute(
            f"INSERT INTO {schema}.queue_jobs (id, type, status) SELECT g, 'render', 'pending'"
            " FROM generate_series(1, 12) g"
        )
        pg_execute(
            f"INSERT INTO {schema}.queue_jobs (id, type, status, attempts, last_error)"
            " SELECT g, 'render', 'failed', 5, 'boom' FROM generate_series(100, 104) g"
        )
        mapping = {
            "preset": "starforge",
            "table": f"{schema}.queue_jobs",
            "dlq_table": None,
        }
        result = run_playbook(
            "daily-hygiene",
            {
                "system": "pg_table",
                "queue": "render",
                "table_mapping": mapping,
                "progress_window": 0.5,
                "dlq_alert_depth": 3,
                "attune_queries": False,
            },
            f"e2e-{schema}",
        )
    finally:
        pg_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    assert result.status == "completed", result.text()
    facts = result.output("facts")["values"]
    assert facts["stuck"] == ["render"] and facts["dlq_over"] == ["render (failed)"]
    text = result.output("report")["summary"]
    assert "Daily queue report (pg_table render): 1 queues, 12 messages, 1 active." in text
    assert "Attune queue_stats: not configured." in text
    assert result.statuses["queues"] == "skipped" and result.statuses["attune_stats"] == "skipped"


def test_daily_on_an_sqs_queue(e2e_env: Settings, moto_sqs: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """system=sqs (seed 003's queue-runtime on AWS): the one queue through queue.* on a real
    SQS-speaking server (moto, driven by boto3): messages wait and nothing completes (stuck), and
    the DLQ named by the queue's redrive policy holds 3 (over the alert depth)."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_sqs,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    bench = SQSBench(moto_sqs)
    try:
        queue, dlq = f"tasks-{bench.tag}", f"tasks-{bench.tag}-dlq"
        bench.create(dlq)
        bench.create(queue, max_receive_count=5, dlq=dlq)
        bench.send(queue, 8)
        bench.send(dlq, 3)
        result = run_playbook(
            "daily-hygiene",
            {
                "system": "sqs",
                "queue": queue,
                "progress_window": 1,
                "dlq_alert_depth": 2,
                "attune_queries": False,
            },
            f"e2e-{bench.tag}",
        )
    finally:
        bench.close()
    assert result.status == "completed", result.text()
    facts = result.output("facts")["values"]
    assert facts["stuck"] == [queue] and facts["dlq_over"] == [f"{queue} (failed)"]
    text = result.output("report")["summary"]
    assert f"Daily queue report (sqs {queue}): 1 queues, 8 messages, 1 active." in text
    assert f"DLQs: {queue} (failed)=3" in text


# -- weekly: a quorum DLQ is reviewed without walking its messages towards the delivery limit ----


def test_weekly_quorum_dlq_delivery_count_unchanged(e2e_env: Settings) -> None:
    """Three messages dead-lettered into a quorum DLQ. The weekly review must not peek them: on
    RabbitMQ 3.x a peek returns a message with x-delivery-count + 1 (towards the delivery-limit).
    After the run, the first real delivery of each still says x-delivery-count 0."""
    tag = uuid.uuid4().hex[:8]
    work, dlq = f"e2e-hygq-{tag}", f"e2e-hygq-{tag}.dlq"
    declare(dlq, arguments={"x-queue-type": "quorum", "x-delivery-limit": 5})
    declare(work, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    try:
        publish(work, 3, prefix="bad", headers={"x-exception-type": "ValueError"})
        conn = connect()
        try:
            ch = conn.channel()
            for _ in range(3):
                method, _, _ = ch.basic_get(work)
                ch.basic_nack(method.delivery_tag, requeue=False)
        finally:
            conn.close()
        wait_until(lambda: ready(dlq) == 3, 20, "dead-lettering into the quorum DLQ")
        settle(dlq, 3, 0)
        result = run_playbook("weekly-hygiene", {"dlq": dlq, "cleanup": False}, f"e2e-{tag}")
        assert result.status == "completed", result.text()
        assert result.statuses["review"] == "skipped"
        text = result.output("report")["summary"]
        assert f"Weekly DLQ review of {dlq}: quorum queue, 3 messages, not peeked" in text
        assert "Stale statistics: not configured; snapshots: not configured." in text
        counts = []
        conn = connect()
        try:
            ch = conn.channel()
            for _ in range(3):
                method, props, _ = ch.basic_get(dlq)
                counts.append((props.headers or {}).get("x-delivery-count", 0))
                ch.basic_ack(method.delivery_tag)
        finally:
            conn.close()
        assert counts == [0, 0, 0]
    finally:
        delete_queues(work, dlq)
