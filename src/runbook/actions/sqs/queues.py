"""Naming, lookup and attribute reads of SQS queues, and the ledger of the triage's own receives.

Why a ledger: SQS has no peek. Every look at a message is a ReceiveMessage, and every receive adds
one to the message's ``ApproximateReceiveCount`` - the very evidence a poison verdict rests on. So
every receive this process makes and then gives back (sample, a quarantine scan that passes a
message by) is recorded per (queue URL, message id), and a later look subtracts it. The ledger
lives in the process: a long-lived one (the gateway, ``runbook serve``'s fast lane) keeps it across
runs, a run in a process of its own starts empty, and receives made by another runbook process are
not known here - which is why the sample also reports the count as seen and when the message was
first received.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from runbook.actions.context import ActionError
from runbook.actions.sqs.client import BACKEND, QueueMissing, SQSClient

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}(\.fifo)?$")
MESSAGE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
COUNT_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]
LEDGER_SIZE = 50_000


def check_name(name: str, what: str = "queue") -> str:
    if not QUEUE_NAME.match(name or ""):
        raise ActionError(f"bad SQS {what} name {name!r} (letters, digits, - and _, .fifo)", backend=BACKEND)
    return name


def check_ids(ids: list[str]) -> list[str]:
    for message_id in ids:
        if not MESSAGE_ID.match(message_id):
            raise ActionError(f"bad SQS message id {message_id!r}", backend=BACKEND)
    return list(dict.fromkeys(ids))


def queue_url(sqs: SQSClient, name: str, account: str | None = None) -> str:
    """The URL of queue ``name``; a missing queue is one clear error naming it."""
    check_name(name)
    params: dict[str, Any] = {"QueueName": name}
    if account:
        params["QueueOwnerAWSAccountId"] = account
    try:
        return str(sqs.call("get_queue_url", **params)["QueueUrl"])
    except QueueMissing:
        raise QueueMissing(f"SQS queue {name!r} not found at {sqs.endpoint}", backend=BACKEND) from None


def attributes(sqs: SQSClient, url: str, names: list[str] | None = None) -> dict[str, str]:
    got = sqs.call("get_queue_attributes", QueueUrl=url, AttributeNames=names or ["All"])
    return dict(got.get("Attributes") or {})


def counts(attrs: dict[str, str]) -> tuple[int, int, int]:
    """(visible, in flight, delayed) from the Approximate* attributes."""
    visible, hidden, delayed = (int(attrs.get(a) or 0) for a in COUNT_ATTRIBUTES)
    return visible, hidden, delayed


@dataclass
class DeadLetter:
    """The redrive policy's dead-letter queue of a source queue."""

    name: str
    url: str
    arn: str
    max_receive_count: int | None


def dead_letter(sqs: SQSClient, attrs: dict[str, str], fallback: str | None) -> DeadLetter | None:
    """The DLQ named by ``RedrivePolicy.deadLetterTargetArn`` (``fallback`` only when the queue has
    no redrive policy); None when there is none or it does not exist."""
    policy: dict[str, Any] = {}
    try:
        policy = json.loads(attrs.get("RedrivePolicy") or "{}")
    except ValueError:
        policy = {}
    arn = str(policy.get("deadLetterTargetArn") or "")
    name, account = fallback, None
    if arn.count(":") >= 5:  # arn:aws:sqs:REGION:ACCOUNT:NAME
        account, name = arn.rsplit(":", 2)[-2:]
    if not name or not QUEUE_NAME.match(name):
        return None
    try:
        url = queue_url(sqs, name, account)
    except QueueMissing:
        if arn:
            raise ActionError(f"the redrive policy's DLQ {name!r} does not exist", backend=BACKEND) from None
        return None
    if not arn:
        arn = attributes(sqs, url, ["QueueArn"]).get("QueueArn", "")
    limit = policy.get("maxReceiveCount")
    return DeadLetter(name=name, url=url, arn=arn, max_receive_count=int(limit) if limit else None)


class Ledger:
    """Receives this process made of messages it gave back, per (queue URL, message id), bounded."""

    def __init__(self, size: int = LEDGER_SIZE) -> None:
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def own(self, url: str, message_id: str) -> int:
        with self._lock:
            return self._seen.get((url, message_id), 0)

    def add(self, url: str, message_id: str, receives: int = 1) -> None:
        with self._lock:
            key = (url, message_id)
            self._seen[key] = self._seen.pop(key, 0) + receives
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)

    def forget(self, url: str, message_id: str) -> None:
        with self._lock:
            self._seen.pop((url, message_id), None)


LEDGER = Ledger()


def receive(sqs: SQSClient, url: str, n: int, hold: int, **names: list[str]) -> list[dict[str, Any]]:
    """Up to ``n`` (at most 10) messages held for ``hold`` seconds. A short poll first; when it
    finds nothing, one long poll of a second: AWS's short poll asks only a subset of its servers
    and can answer empty while messages wait, so an empty short poll alone never ends a scan."""
    for wait in (0, 1):
        got = sqs.call(
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, n)),
            VisibilityTimeout=hold,
            WaitTimeSeconds=wait,
            **names,
        )
        if got.get("Messages"):
            return list(got["Messages"])
    return []


def release(sqs: SQSClient, url: str, handles: list[str]) -> list[str]:
    """Make held messages visible again at once (visibility 0); returns the handles that failed
    (they become visible by themselves when the hold expires, so nothing is lost)."""
    failed: list[str] = []
    for start in range(0, len(handles), 10):
        chunk = handles[start : start + 10]
        entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)]
        try:
            got = sqs.call("change_message_visibility_batch", QueueUrl=url, Entries=entries)
        except ActionError:
            failed.extend(chunk)
            continue
        failed.extend(chunk[int(f["Id"])] for f in got.get("Failed") or [])
    return failed
