"""The pure verdict rules of ``queue.evidence`` (issue 14): no services, milliseconds each."""

from __future__ import annotations

from runbook.actions.queue.evidence import find_suspects, progress_verdict
from runbook.actions.queue.system import Counters, Message


def counters(at: float, depth: int, *, done: int = 0, delivered: int = 0, again: int = 0) -> Counters:
    return Counters(
        at=at, depth=depth, in_flight=0, consumers=1, completed=done, delivered=delivered, redelivered=again
    )


def test_an_empty_queue_whose_deliveries_vanish_unacked_is_stalled_not_idle() -> None:
    # a hot dead-letter loop: the message is mostly in the retry queue, delivered and rejected
    verdict, evidence = progress_verdict(counters(0, 0), counters(6, 0, delivered=87))
    assert verdict == "stalled"
    assert "none completes" in evidence[-1]


def test_an_empty_quiet_queue_is_idle_and_a_drained_one_progressing() -> None:
    assert progress_verdict(counters(0, 0), counters(6, 0))[0] == "idle"
    assert progress_verdict(counters(0, 0), counters(6, 0, done=5, delivered=5))[0] == "progressing"
    assert progress_verdict(counters(0, 9), counters(6, 4, done=5, delivered=5))[0] == "draining"


def test_a_requeue_loop_with_nothing_completed_is_stalled() -> None:
    verdict, _ = progress_verdict(counters(0, 40), counters(6, 40, delivered=30000, again=30000))
    assert verdict == "stalled"


def suspects(*messages: Message) -> list[str]:
    return find_suspects(messages, min_attempts=3, min_deaths=3, wedge_seconds=60).ids


def test_one_message_redelivered_before_the_look_is_the_suspect() -> None:
    assert suspects(Message("m-0", redelivered_before_look=True), Message("m-1")) == ["m-0"]


def test_a_requeued_batch_cannot_be_told_apart() -> None:
    found = find_suspects(
        [Message(f"m-{i}", redelivered_before_look=True) for i in range(10)],
        min_attempts=3,
        min_deaths=3,
        wedge_seconds=60,
    )
    assert found.ids == [] and found.indistinguishable and len(found.candidates) == 10


def test_counted_evidence_wins_over_flags() -> None:
    found = find_suspects(
        [
            Message("x-0", deaths=8),
            Message("q-0", delivery_count=20),
            Message("m-1", redelivered_before_look=True),
        ],
        min_attempts=3,
        min_deaths=3,
        wedge_seconds=60,
    )
    assert found.ids == ["x-0", "q-0"] and found.strong == ["x-0", "q-0"]
    assert (
        "dead-lettered 8 times (x-death)" in found.evidence[0] and "delivered 20 times" in found.evidence[1]
    )


def test_only_a_classic_queue_redelivering_without_acks_gets_a_watching_consumer() -> None:
    from runbook.actions.rabbitmq.system import looks_like_requeue_loop

    def doc(kind: str = "classic", ack: float = 0.0, redeliver: float = 5000.0, **args: object) -> dict:
        stats = {"ack_details": {"rate": ack}, "redeliver_details": {"rate": redeliver}}
        return {"type": kind, "consumers": 1, "message_stats": stats, "arguments": args}

    assert looks_like_requeue_loop(doc())
    assert not looks_like_requeue_loop(doc(ack=900.0))  # a retry storm that still completes
    assert not looks_like_requeue_loop(doc(redeliver=0.0))  # slow but healthy
    assert not looks_like_requeue_loop(doc(kind="quorum"))  # x-delivery-count says it already
    assert not looks_like_requeue_loop(doc(**{"x-single-active-consumer": True}))
    assert not looks_like_requeue_loop({**doc(), "consumers": 0})
