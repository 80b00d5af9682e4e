"""A real SQS-speaking server on loopback (moto in server mode) and boto3 helpers for SQS tests.

Why a server and not ``mock_aws``: the code under test talks HTTP through its own boto3 client
built from Settings (``AWS_ENDPOINT_URL``), exactly as against AWS; nothing is patched. The
fixture starts one ``ThreadedMotoServer`` per test session on a free port - under pytest-xdist
that is one per worker, so workers never share state; tests still use unique queue names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from runbook.core.settings import Settings

REGION = "us-east-1"
KEY, SECRET = "testing", "testing-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_sqs() -> Iterator[str]:
    """The endpoint URL of a moto server on loopback."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        pytest.fail(
            f"moto is not installed ({exc}); install the test extra:"
            " .venv/bin/pip install 'moto[server]>=5,<6'",
            pytrace=False,
        )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def sqs_settings(settings: Settings, endpoint: str) -> Settings:
    return dataclasses.replace(
        settings,
        aws_endpoint_url=endpoint,
        aws_region=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


class SQSBench:
    """Queues of one test (unique names) and the boto3 calls that make incidents."""

    def __init__(self, endpoint: str, tag: str | None = None) -> None:
        self.tag = tag or uuid.uuid4().hex[:8]
        self.client: Any = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )
        self.urls: list[str] = []

    def create(self, name: str, max_receive_count: int | None = None, dlq: str | None = None) -> str:
        attrs: dict[str, str] = {}
        if dlq and max_receive_count:
            arn = self.arn(dlq)
            policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)}
            attrs["RedrivePolicy"] = json.dumps(policy)
        url = str(self.client.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"])
        self.urls.append(url)
        return url

    def url(self, name: str) -> str:
        return str(self.client.get_queue_url(QueueName=name)["QueueUrl"])

    def arn(self, name: str) -> str:
        got = self.client.get_queue_attributes(QueueUrl=self.url(name), AttributeNames=["QueueArn"])
        return str(got["Attributes"]["QueueArn"])

    def send(self, name: str, n: int, prefix: str = "m") -> list[str]:
        url, ids = self.url(name), []
        for i in range(n):
            got = self.client.send_message(
                QueueUrl=url,
                MessageBody=f'{{"job": "{prefix}-{i}", "secret": "body-{i}"}}',
                MessageAttributes={"kind": {"DataType": "String", "StringValue": prefix}},
            )
            ids.append(str(got["MessageId"]))
        return ids

    def receive_times(self, name: str, message_id: str, times: int) -> None:
        """A consumer that fails on ``message_id``: receive it ``times`` times, never deleting it.
        Call it while that message is the only one visible (others would gain receives too)."""
        url, done = self.url(name), 0
        while done < times:
            for m in self.client.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", []):
                assert m["MessageId"] == message_id, "receive_times needs the poison alone in the queue"
                done += 1
                self.client.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )

    def counts(self, name: str) -> tuple[int, int]:
        a = self.client.get_queue_attributes(QueueUrl=self.url(name), AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

    def drain(self, name: str) -> dict[str, dict[str, Any]]:
        """Every message of ``name`` by id (received and deleted): the final check of a test."""
        url, out = self.url(name), {}
        while True:
            got = self.client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                return out
            for m in got:
                out[m["MessageId"]] = m
                self.client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def close(self) -> None:
        for url in self.urls:
            try:
                self.client.delete_queue(QueueUrl=url)
            except Exception:  # noqa: BLE001 - cleanup of a per-test queue on a per-session server
                pass
