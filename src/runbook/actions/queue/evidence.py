"""Pure rules: which sampled messages are suspects, and how a progress window reads.

Why here and not in the playbook: these are the rules the verdicts rest on (issue 14), tested on
their own, identical for every system. Only per-message evidence counts:

* strong: attempts made, delivery count or x-death at or above the threshold;
* wedged: a message a worker has held far longer than the others (10x their median and at least
  ``wedge_seconds``) - meaningful when nothing completes, which the playbook checks;
* weak: RabbitMQ's ``redelivered`` flag *as it was before this run first looked* (a peek requeues
  and so sets it; only a message's first sighting counts). One such message in a queue that
  completes nothing is a hot requeue loop; several equally flagged ones (a prefetch burst requeued
  together) cannot be told apart, and the sample says so instead of guessing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from runbook.actions.queue.system import Counters, Message


@dataclass
class Suspects:
    ids: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    indistinguishable: bool = False
    candidates: list[str] = field(default_factory=list)
    wedged: list[str] = field(default_factory=list)
    # suspects on counted evidence (attempts, deliveries, x-death): they hold even while the queue
    # completes other work; wedged-only and requeue-flag suspects mean something only when it does not
    strong: list[str] = field(default_factory=list)


def wedged(messages: Sequence[Message], wedge_seconds: float) -> list[str]:
    """Ids held by a worker ``>= wedge_seconds`` and 10x longer than the median of the others."""
    held = [m for m in messages if m.in_flight_seconds is not None]
    out = []
    for m in held:
        others = [o.in_flight_seconds or 0.0 for o in held if o is not m]
        median = statistics.median(others) if others else 0.0
        seconds = m.in_flight_seconds or 0.0
        if seconds >= wedge_seconds and seconds >= 10 * median:
            out.append(m.id)
    return out


def find_suspects(
    messages: Sequence[Message], *, min_attempts: int, min_deaths: int, wedge_seconds: float
) -> Suspects:
    found = Suspects(wedged=wedged(messages, wedge_seconds))
    for m in messages:
        why = []
        if m.attempts is not None and m.attempts >= min_attempts:
            why.append(f"{m.attempts} attempts made")
        if m.delivery_count is not None and m.delivery_count >= min_attempts and not m.attempts:
            why.append(f"delivered {m.delivery_count} times")
        if m.deaths >= min_deaths:
            why.append(f"dead-lettered {m.deaths} times (x-death)")
        if why:
            found.strong.append(m.id)
        if m.id in found.wedged:
            why.append(f"held by a worker for {m.in_flight_seconds:.0f}s")
        if why:
            reason = f"; last error {m.failed_reason!r}" if m.failed_reason else ""
            found.ids.append(m.id)
            found.evidence.append(f"{m.id}: {', '.join(why)}{reason}")
    if found.ids:
        return found
    weak = [m.id for m in messages if m.redelivered_before_look]
    if len(weak) == 1:
        found.ids = weak
        found.evidence = [f"{weak[0]}: already redelivered before the triage looked (requeue loop)"]
    elif len(weak) > 1:
        found.indistinguishable = True
        found.candidates = weak
        found.evidence = [
            f"{len(weak)} messages requeued together, each redelivered before the triage looked and"
            " otherwise alike (a prefetch burst): the poison one cannot be told apart"
        ]
    return found


def progress_verdict(a: Counters, b: Counters) -> tuple[str, list[str]]:
    """``idle`` / ``draining`` / ``progressing`` / ``stalled`` from two reads (completions decide)."""
    seconds = max(0.001, b.at - a.at)
    done = b.completed - a.completed
    delivered = b.delivered - a.delivered
    again = b.redelivered - a.redelivered
    change = b.depth - a.depth
    evidence = [
        f"depth {a.depth} -> {b.depth} ({change:+d}) over {seconds:.0f}s",
        f"completed {done}, delivered {delivered}, redelivered/retried {again}, failed {b.failed - a.failed}",
        f"consumers {b.consumers if b.consumers is not None else 'unknown'}, in flight {b.in_flight}",
    ]
    if b.depth == 0 and a.depth == 0 and done == 0 and delivered == 0:
        return "idle", evidence + ["no messages and no traffic"]
    if done > 0:
        return ("draining" if change < 0 else "progressing"), evidence
    if b.depth == 0 and delivered == 0:
        return "idle", evidence
    if b.depth == 0:
        # an empty queue whose deliveries all vanish unacked (rejected, dead-lettered, dropped and
        # back again): not a cleared backlog - nothing completes (issue 14)
        evidence.append("messages are delivered but none completes (rejected or dead-lettered)")
    elif again > 0 or delivered > 0:
        evidence.append("messages are delivered but none completes (a consumer fails or requeues them)")
    elif b.in_flight > 0:
        evidence.append("workers hold messages and complete none (stuck or very slow handlers)")
    else:
        evidence.append("messages wait and nothing takes them")
    return "stalled", evidence
