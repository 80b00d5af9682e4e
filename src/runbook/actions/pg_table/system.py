"""A database table used as a queue (``system: pg_table``): the StarForge ``queue_jobs`` table,
Attune's executions, or any table a mapping describes (see :mod:`.mapping`).

Reads are single aggregate/indexed queries bounded by the step's budget. Quarantine is one
transaction: the named rows still ready or running are marked failed and, where the mapping has a
DLQ table, copied into it (payload kept, reason recorded); a crash before COMMIT changes nothing.
Redrive moves failed rows (never those already in the DLQ table) back to the first ready value.
"""

from __future__ import annotations

import json
import time
from typing import Any

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.pg_table.mapping import BACKEND, TableMapping, mapping_of
from runbook.actions.postgres.client import (
    Cursor,
    PgError,
    dict_row,
    get_pool,
    map_error,
    pgsql,
    resolve_table,
    set_timeouts,
)
from runbook.actions.queue.system import Counters, Message, MoveReport, Stats, Target
from runbook.core.redact import redact

MAX_IDS = 10_000
I = pgsql.Identifier  # noqa: E741 - reads as SQL: I(column)


def _col(name: str | None, default: str = "NULL") -> pgsql.Composable:
    return I(name) if name else pgsql.SQL(default)


class TableQueue:
    name = "pg_table"

    def _run(self, ctx: ActionContext, target: Target, what: str, work: Any) -> Any:
        m = mapping_of(target.table)
        try:
            with get_pool(ctx).connection(ctx.remaining()) as conn:
                with conn.cursor(row_factory=dict_row) as cur:
                    set_timeouts(cur, ctx, lock_timeout_ms=5000)
                    table = resolve_table(cur, m.table, kinds="rp").identifier()
                    out = work(cur, m, table)
                conn.commit()
                return out
        except PgError as exc:
            raise map_error(exc, ctx, f"{what} on {m.table}") from None

    def stats(self, ctx: ActionContext, target: Target) -> Stats:
        def work(cur: Cursor[Any], m: TableMapping, table: pgsql.Composed) -> Stats:
            due = pgsql.SQL("coalesce({}, {})").format(_col(m.run_after_column), I(m.created_column))
            cur.execute(
                pgsql.SQL(
                    "SELECT count(*) FILTER (WHERE {s} = ANY(%(ready)s)) AS ready,"
                    " count(*) FILTER (WHERE {s} = ANY(%(running)s)) AS running,"
                    " count(*) FILTER (WHERE {s} = ANY(%(failed)s)) AS failed,"
                    " count(*) FILTER (WHERE {s} = ANY(%(done)s)) AS done,"
                    " extract(epoch FROM now() - min({due}) FILTER (WHERE {s} = ANY(%(ready)s)"
                    " AND {due} <= now()))::float AS oldest,"
                    " count(*) FILTER (WHERE {s} = ANY(%(ready)s) AND {due} > now()) AS later"
                    " FROM {t}"
                ).format(s=I(m.status_column), due=due, t=table),
                {
                    "ready": m.ready_values,
                    "running": m.running_values,
                    "failed": m.failed_values,
                    "done": m.done_values,
                },
            )
            row = cur.fetchone() or {}
            ready = int(row.get("ready") or 0)
            return Stats(
                depth=ready + int(row.get("running") or 0),
                ready=ready - int(row.get("later") or 0),
                in_flight=int(row.get("running") or 0),
                delayed=int(row.get("later") or 0),
                oldest_age_seconds=round(row["oldest"], 1) if row.get("oldest") is not None else None,
                dlq_depth=int(row.get("failed") or 0),
                completed_total=int(row.get("done") or 0),
                failed_total=int(row.get("failed") or 0),
                details={"table": m.table},
            )

        result: Stats = self._run(ctx, target, "queue stats", work)
        return result

    def _counters(self, ctx: ActionContext, target: Target) -> Counters:
        def work(cur: Cursor[Any], m: TableMapping, table: pgsql.Composed) -> Counters:
            cur.execute(
                pgsql.SQL(
                    "SELECT count(*) FILTER (WHERE {s} = ANY(%(ready)s) OR {s} = ANY(%(running)s)) AS depth,"
                    " count(*) FILTER (WHERE {s} = ANY(%(running)s)) AS running,"
                    " count(*) FILTER (WHERE {s} = ANY(%(done)s)) AS done,"
                    " count(*) FILTER (WHERE {s} = ANY(%(failed)s)) AS failed,"
                    " count(*) AS inserted,"
                    # every attempt is a delivery; a row finished or running with no attempt counted
                    # (set by hand, or a worker that counts only failures) was delivered once
                    " coalesce(sum(CASE WHEN coalesce({a}, 0) = 0 AND ({s} = ANY(%(finished)s))"
                    " THEN 1 ELSE coalesce({a}, 0) END), 0) AS delivered,"
                    # attempts after a row's first are its retries
                    " coalesce(sum(greatest(coalesce({a}, 0) - 1, 0)), 0) AS retries FROM {t}"
                ).format(s=I(m.status_column), a=_col(m.attempts_column, "0"), t=table),
                {
                    "ready": m.ready_values,
                    "running": m.running_values,
                    "failed": m.failed_values,
                    "done": m.done_values,
                    "finished": m.done_values + m.failed_values + m.running_values,
                },
            )
            r = cur.fetchone() or {}
            return Counters(
                at=time.time(),
                depth=int(r["depth"]),
                in_flight=int(r["running"]),
                consumers=None,
                completed=int(r["done"]),
                delivered=int(r["delivered"]),
                redelivered=int(r["retries"]),
                failed=int(r["failed"]),
                published=int(r["inserted"]),  # rows are kept when finished: every row was published
            )

        result: Counters = self._run(ctx, target, "queue counters", work)
        return result

    def window(self, ctx: ActionContext, target: Target, seconds: float) -> tuple[Counters, Counters]:
        """Rows inserted, finished and attempted between two reads. ``attempts`` counts every try
        (the StarForge worker counts the attempt when it claims the row): each attempt is a
        delivery, and only attempts after a row's first are retries. Counting every attempt as a
        retry made a healthy worker (one attempt per row) look like a 50% retry storm; rows
        inserted were not counted at all, so a producer storm read as publish rate 0."""
        a = self._counters(ctx, target)
        time.sleep(seconds)
        return a, self._counters(ctx, target)

    def sample(self, ctx: ActionContext, target: Target, count: int) -> list[Message]:
        def work(cur: Cursor[Any], m: TableMapping, table: pgsql.Composed) -> list[Message]:
            since = _col(m.updated_column, "NULL")
            cur.execute(
                pgsql.SQL(
                    "(SELECT {id}::text AS id, {s}::text AS status, {ty}::text AS type, {a} AS attempts,"
                    " left({e}::text, 200) AS error, extract(epoch FROM now() - {c})::float AS age,"
                    " extract(epoch FROM now() - {u})::float AS held FROM {t} WHERE {s} = ANY(%(running)s)"
                    " ORDER BY {u} LIMIT 1000)"
                    " UNION ALL (SELECT {id}::text, {s}::text, {ty}::text, {a}, left({e}::text, 200),"
                    " extract(epoch FROM now() - {c})::float, NULL FROM {t} WHERE {s} = ANY(%(ready)s)"
                    " ORDER BY coalesce({ra}, {c}), {c} LIMIT %(n)s)"
                    # rows retried with a backoff sit behind the head: the most-attempted live rows too
                    " UNION ALL (SELECT {id}::text, {s}::text, {ty}::text, {a}, left({e}::text, 200),"
                    " extract(epoch FROM now() - {c})::float, NULL FROM {t} WHERE {s} = ANY(%(ready)s)"
                    " AND {a} > 0 ORDER BY {a} DESC LIMIT %(n)s)"
                ).format(
                    id=I(m.id_column),
                    s=I(m.status_column),
                    ty=_col(m.type_column),
                    a=_col(m.attempts_column),
                    e=_col(m.error_column),
                    c=I(m.created_column),
                    u=since,
                    ra=_col(m.run_after_column),
                    t=table,
                ),
                {"running": m.running_values, "ready": m.ready_values, "n": count},
            )
            rows = list({r["id"]: r for r in reversed(cur.fetchall())}.values())[::-1]  # first sighting wins
            return [
                Message(
                    id=r["id"],
                    state="running" if r["status"] in m.running_values else "waiting",
                    type=r["type"],
                    attempts=r["attempts"],
                    failed_reason=redact(r["error"]) if r["error"] else None,
                    in_flight_seconds=round(r["held"], 1) if r["held"] is not None else None,
                    age_seconds=round(r["age"], 1) if r["age"] is not None else None,
                )
                for r in rows
            ]

        result: list[Message] = self._run(ctx, target, "queue sample", work)
        return result

    @staticmethod
    def _id_type(cur: Cursor[Any], m: TableMapping) -> pgsql.Composable:
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
            (m.table, m.id_column),
        )
        row = cur.fetchone()
        if row is None:
            raise ActionError(f"{m.table} has no column {m.id_column!r}", backend=BACKEND)
        return pgsql.SQL(str(row["t"]))  # a type name from the catalog, not from the playbook

    def describe_quarantine(self, ctx: ActionContext, target: Target, ids: list[str]) -> str:
        m = mapping_of(target.table)
        where = f"copied into {m.dlq_table} and " if m.dlq_table else ""
        return (
            f"in one transaction, {where}marked {m.failed_values[0]!r} in {m.table}: exactly the rows with"
            f" {m.id_column} in ({', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}) that are still"
            f" {'/'.join(m.ready_values + m.running_values)} ({len(ids)} ids)"
        )

    def quarantine(self, ctx: ActionContext, target: Target, ids: list[str], reason: str) -> MoveReport:
        if len(ids) > MAX_IDS:
            raise ActionError(f"at most {MAX_IDS} ids per quarantine", backend=BACKEND)

        def work(cur: Cursor[Any], m: TableMapping, table: pgsql.Composed) -> MoveReport:
            id_type = self._id_type(cur, m)
            try:
                typed = pgsql.SQL("%(ids)s::text[]::{}[]").format(id_type)
                update = pgsql.SQL(
                    "UPDATE {t} SET {s} = %(failed)s{u}{e} WHERE {id} = ANY({typed})"
                    " AND {s} = ANY(%(live)s) RETURNING {id}::text AS id, {ty}::text AS type, {p} AS payload"
                ).format(
                    t=table,
                    s=I(m.status_column),
                    id=I(m.id_column),
                    typed=typed,
                    u=pgsql.SQL(", {} = now()").format(I(m.updated_column))
                    if m.updated_column
                    else pgsql.SQL(""),
                    e=pgsql.SQL(", {} = %(reason_json)s").format(I(m.error_column))
                    if m.error_column
                    else pgsql.SQL(""),
                    ty=_col(m.type_column),
                    p=_col(m.payload_column),
                )
                args = {
                    "ids": ids,
                    "failed": m.failed_values[0],
                    "live": m.ready_values + m.running_values,
                    "reason": reason,
                    "reason_json": json.dumps({"reason": reason}),
                }
                if m.dlq_table:
                    dlq = resolve_table(cur, m.dlq_table, kinds="rp").identifier()
                    cur.execute(
                        pgsql.SQL(
                            "WITH moved AS ({u})"
                            " INSERT INTO {d} (id, original_job_id, type, payload, reason, created_at)"
                            " SELECT gen_random_uuid(), moved.id::text::{it}, type, payload, %(reason)s,"
                            " now()"
                            " FROM moved"
                            " RETURNING original_job_id::text AS id"
                        ).format(u=update, d=dlq, it=id_type),
                        args,
                    )
                else:
                    cur.execute(update, args)
            except PgError as exc:
                raise map_error(exc, ctx, "quarantine") from None
            moved = [r["id"] for r in cur.fetchall()]
            done = set(moved)  # built once: rebuilt per id it made 10,000 ids take seconds
            return MoveReport(
                moved=len(moved),
                ids=moved,
                missing=[i for i in ids if i not in done],
                destination=m.dlq_table or f"{m.table} ({m.failed_values[0]})",
            )

        report: MoveReport = self._run(ctx, target, "quarantine", work)
        return report

    def describe_redrive(self, ctx: ActionContext, target: Target, count: int | None) -> str:
        m = mapping_of(target.table)
        what = f"the oldest {count}" if count else "all"
        skip = f" (rows quarantined into {m.dlq_table} stay failed)" if m.dlq_table else ""
        return f"set {what} {'/'.join(m.failed_values)} rows of {m.table} back to {m.ready_values[0]!r}{skip}"

    def redrive(self, ctx: ActionContext, target: Target, count: int | None) -> MoveReport:
        def work(cur: Cursor[Any], m: TableMapping, table: pgsql.Composed) -> MoveReport:
            skip: pgsql.Composable = pgsql.SQL("")
            if m.dlq_table:
                dlq = resolve_table(cur, m.dlq_table, kinds="rp").identifier()
                skip = pgsql.SQL(
                    " AND NOT EXISTS (SELECT 1 FROM {d} WHERE {d}.original_job_id = q.{id})"
                ).format(d=dlq, id=I(m.id_column))
            order = _col(m.updated_column, m.id_column) if m.updated_column else I(m.id_column)
            cur.execute(
                pgsql.SQL(
                    "UPDATE {t} SET {s} = %(ready)s{ra} WHERE {id} IN"
                    " (SELECT q.{id} FROM {t} q WHERE q.{s} = ANY(%(failed)s)"
                    "{skip} ORDER BY q.{o} LIMIT %(n)s FOR UPDATE SKIP LOCKED) RETURNING {id}::text AS id"
                ).format(
                    t=table,
                    s=I(m.status_column),
                    id=I(m.id_column),
                    skip=skip,
                    o=order,
                    ra=pgsql.SQL(", {} = now()").format(I(m.run_after_column))
                    if m.run_after_column
                    else pgsql.SQL(""),
                ),
                {"ready": m.ready_values[0], "failed": m.failed_values, "n": count},
            )
            moved = [r["id"] for r in cur.fetchall()]
            cur.execute(
                pgsql.SQL("SELECT count(*) AS n FROM {t} WHERE {s} = ANY(%(failed)s)").format(
                    t=table, s=I(m.status_column)
                ),
                {"failed": m.failed_values},
            )
            left = int((cur.fetchone() or {"n": 0})["n"])
            return MoveReport(moved=len(moved), ids=moved[:50], remaining=left, destination=m.table)

        report: MoveReport = self._run(ctx, target, "redrive", work)
        return report
