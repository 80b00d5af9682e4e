"""The only module importing boto3/botocore: the SQS client of ``queue.*`` with system ``sqs``.

Endpoint, region and (optionally) credentials come from :class:`Settings` (``AWS_ENDPOINT_URL``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` ...); without credentials in the
settings boto3's own chain (profile, SSO, instance role) answers. Every call goes through
:meth:`SQSClient.call`, which turns botocore's errors into :class:`BackendUnavailable` (cannot
reach SQS, throttled, server error: transient) or :class:`ActionError` (anything else), one
redacted line naming the backend and the cause; a missing queue is :class:`QueueMissing`.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.redact import redact, register
from runbook.core.settings import Settings

BACKEND = "sqs"
MISSING_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
TRANSIENT_CODES = {
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "KmsThrottled",
}
UNSUPPORTED_CODES = {"InvalidAction", "UnknownOperation", "UnsupportedOperation", "NotImplemented"}


class QueueMissing(ActionError):
    """The named queue does not exist (or this principal may not see it)."""


class Unsupported(ActionError):
    """The server does not implement the operation (e.g. StartMessageMoveTask on a local server)."""


class SQSClient:
    """A boto3 SQS client with typed, redacted errors and bounded timeouts."""

    def __init__(self, settings: Settings) -> None:
        register([s for s in (settings.aws_secret_access_key, settings.aws_session_token) if s])
        self.endpoint = settings.aws_endpoint_url or "AWS"
        self.region = settings.aws_region or "us-east-1"
        # The longest call runbook makes is a 1 s long poll: a read that has not answered in 10 s
        # has stalled, and a triage step should fail over (or fail, naming SQS) rather than wait.
        config = botocore.config.Config(
            connect_timeout=5,
            read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        credentials: dict[str, Any] = {}
        if settings.aws_access_key_id and settings.aws_secret_access_key:
            credentials = {
                "aws_access_key_id": settings.aws_access_key_id,
                "aws_secret_access_key": settings.aws_secret_access_key,
                "aws_session_token": settings.aws_session_token,
            }
        try:
            self.client: Any = boto3.session.Session().client(
                "sqs",
                endpoint_url=settings.aws_endpoint_url,
                region_name=self.region,
                config=config,
                **credentials,
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise ActionError(redact(f"cannot build the SQS client: {exc}"), backend=BACKEND) from None

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One SQS API call (``call("get_queue_attributes", QueueUrl=..., AttributeNames=[...])``)."""
        try:
            result: dict[str, Any] = getattr(self.client, operation)(**params)
            return result
        except botocore.exceptions.ClientError as exc:
            raise self._client_error(operation, exc) from None
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
            raise BackendUnavailable(
                redact(f"SQS unreachable at {self.endpoint} ({operation}): {exc}"), backend=BACKEND
            ) from None
        except botocore.exceptions.NoCredentialsError:
            raise ActionError(
                "no AWS credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an AWS profile)",
                backend=BACKEND,
            ) from None
        except botocore.exceptions.ParamValidationError as exc:
            raise ActionError(redact(f"bad {operation} request: {exc}"), backend=BACKEND) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ActionError(redact(f"SQS {operation} failed: {exc}"), backend=BACKEND) from None

    def _client_error(self, operation: str, exc: botocore.exceptions.ClientError) -> ActionError:
        error = exc.response.get("Error", {}) or {}
        code = str(error.get("Code") or "")
        text = str(error.get("Message") or exc).strip().splitlines() or [""]
        message = redact(f"SQS {operation}: {code or 'error'}: {text[0][:300]}")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if code in MISSING_CODES:
            return QueueMissing(message, backend=BACKEND)
        if code in UNSUPPORTED_CODES or status in (404, 501) or "not yet implemented" in message.lower():
            return Unsupported(message, backend=BACKEND)
        if code in TRANSIENT_CODES or status >= 500:
            return BackendUnavailable(message, backend=BACKEND)
        return ActionError(message, backend=BACKEND)

    def close(self) -> None:
        self.client.close()


def sqs_client(settings: Settings) -> SQSClient:
    return SQSClient(settings)


def sqs_of(ctx: ActionContext) -> SQSClient:
    return ctx.connections.get("sqs.client", sqs_client)
