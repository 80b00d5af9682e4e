"""Settings read from the environment, in one place.

Every other module receives a ``Settings`` object instead of reading ``os.environ`` itself, so tests
can hand in their own and nothing hides a configuration knob. Variable names are a contract
(see DESIGN.md, Environment).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


def data_dir() -> Path:
    """The user's runbook data directory (SQLite timeline, Prefect home of the embedded server),
    created and kept 0700: it holds dumps, postmortems and the store of a production run."""
    from runbook.core.files import data_dir as _data_dir
    from runbook.core.files import ensure_private_root

    return ensure_private_root(_data_dir())


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    playbooks: Path = Path("playbooks")
    database_url: str = ""
    pagerduty_webhook_secrets: tuple[str, ...] = ()
    slack_signing_secret: str | None = None
    slack_bot_token: str | None = None
    slack_channel: str | None = None
    slack_api_url: str | None = None
    pagerduty_api_token: str | None = None
    pagerduty_from_email: str | None = None
    approvers_file: Path | None = None
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    rabbitmq_management_url: str = "http://guest:guest@127.0.0.1:15672"
    kafka_bootstrap_servers: str | None = None
    #: the Redis of BullMQ queues (queue.* actions with system bullmq)
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: SQS (queue.* with system sqs): a local server's endpoint (none: AWS's own) and the region
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    #: AWS credentials when given as variables; none: boto3's own chain (profile, SSO, instance role)
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    kubeconfig: str | None = None
    database_inspect_url: str | None = None
    prefect_api_url: str = "http://127.0.0.1:4200/api"
    public_url: str = "http://127.0.0.1:8080"
    #: the only Slack workspace (team id) or Enterprise Grid org whose clicks count; none: no click counts
    slack_team_id: str | None = None
    #: an operator's folder of postmortem templates (besides the packaged ones); none: packaged only
    templates_dir: Path | None = None
    #: how often a run proves it is alive (the reaper's threshold must be several beats)
    heartbeat_seconds: float = 10.0
    #: runbook serve also answers runs in-process (the fast lane) besides Prefect's runner
    fast_lane: bool = True
    #: Prometheus HTTP API for metric steps (basic auth as user:password in the URL); none: "not checked"
    prometheus_url: str | None = None
    #: bearer token sent to Prometheus (and to scraped /metrics endpoints of the same host)
    prometheus_bearer_token: str | None = None
    #: bearer token Alertmanager sends to POST /webhooks/alertmanager; none: alerts refused
    alertmanager_token: str | None = None
    #: how systemd.* actions reach systemctl (argv prefix): the local one, or e.g. ``ssh attune-1 systemctl``
    systemctl: tuple[str, ...] = ("systemctl",)
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        approvers = e.get("RUNBOOK_APPROVERS")
        return cls(
            playbooks=Path(e.get("RUNBOOK_PLAYBOOKS", "playbooks")),
            database_url=e.get("RUNBOOK_DATABASE_URL") or f"sqlite:///{data_dir() / 'runbook.db'}",
            pagerduty_webhook_secrets=_split(e.get("RUNBOOK_PAGERDUTY_WEBHOOK_SECRETS")),
            slack_signing_secret=e.get("RUNBOOK_SLACK_SIGNING_SECRET") or None,
            slack_bot_token=e.get("SLACK_BOT_TOKEN") or None,
            slack_channel=e.get("RUNBOOK_SLACK_CHANNEL") or None,
            slack_api_url=e.get("RUNBOOK_SLACK_API_URL") or None,
            pagerduty_api_token=e.get("PAGERDUTY_API_TOKEN") or None,
            pagerduty_from_email=e.get("PAGERDUTY_FROM_EMAIL") or None,
            approvers_file=Path(approvers) if approvers else None,
            rabbitmq_url=e.get("RABBITMQ_URL") or cls.rabbitmq_url,
            rabbitmq_management_url=e.get("RABBITMQ_MANAGEMENT_URL") or cls.rabbitmq_management_url,
            kafka_bootstrap_servers=e.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            redis_url=e.get("REDIS_URL") or cls.redis_url,
            aws_endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
            aws_region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or None,
            aws_access_key_id=e.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=e.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=e.get("AWS_SESSION_TOKEN") or None,
            kubeconfig=e.get("KUBECONFIG") or None,
            database_inspect_url=e.get("DATABASE_URL") or None,
            prefect_api_url=e.get("PREFECT_API_URL") or cls.prefect_api_url,
            public_url=e.get("RUNBOOK_PUBLIC_URL") or cls.public_url,
            slack_team_id=e.get("RUNBOOK_SLACK_TEAM_ID") or None,
            templates_dir=Path(e["RUNBOOK_TEMPLATES"]) if e.get("RUNBOOK_TEMPLATES") else None,
            heartbeat_seconds=float(e.get("RUNBOOK_HEARTBEAT_SECONDS") or cls.heartbeat_seconds),
            fast_lane=(e.get("RUNBOOK_FAST_LANE") or "1") != "0",
            prometheus_url=e.get("PROMETHEUS_URL") or None,
            prometheus_bearer_token=e.get("PROMETHEUS_BEARER_TOKEN") or None,
            alertmanager_token=e.get("RUNBOOK_ALERTMANAGER_TOKEN") or None,
            systemctl=tuple(shlex.split(e.get("RUNBOOK_SYSTEMCTL") or "")) or cls.systemctl,
        )

    def secrets(self) -> list[str]:
        """Every secret value these settings carry, for the redactor."""
        from runbook.core.redact import secrets_in_url

        found: list[str] = [*self.pagerduty_webhook_secrets]
        for value in (
            self.slack_signing_secret,
            self.slack_bot_token,
            self.pagerduty_api_token,
            self.prometheus_bearer_token,
            self.alertmanager_token,
            self.aws_secret_access_key,
            self.aws_session_token,
        ):
            if value:
                found.append(value)
        for url in (
            self.rabbitmq_url,
            self.rabbitmq_management_url,
            self.database_url,
            self.database_inspect_url,
            self.prometheus_url,
            self.kafka_bootstrap_servers,
            self.redis_url,
            self.aws_endpoint_url,
        ):
            found.extend(secrets_in_url(url or ""))
        return found
