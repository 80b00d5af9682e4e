"""Slack: the Web API client, Block Kit texts, the run timeline's thread and its durable outbox."""
