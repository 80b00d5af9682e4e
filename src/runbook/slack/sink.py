"""The run's Slack thread: every timeline event posted as it happens, through a durable outbox.

``publish`` only writes a row to the outbox table and wakes the process's flusher thread, so a slow
or dead Slack never slows or fails a run. The flusher posts rows in order (the run-started message
first: it becomes the thread, or a new ``#inc-<id>-<slug>`` channel when the playbook asks),
approval requests as Block Kit messages with buttons, and after a decision ``chat.update``s the
request in place. 429s are retried after ``Retry-After`` by slack_sdk; when Slack is unreachable the
rows stay, the flusher backs off, and they are posted when Slack is back (on the next event, on the
backoff timer, or by any other runbook process sharing the store, e.g. the gateway).

Every text posted here is built by :mod:`runbook.slack.blocks`, which escapes each data
value (see :mod:`runbook.slack.text`); nothing else puts data into Slack text.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from runbook.approvals.policy import PolicyFile
from runbook.core.events import Event, Kind
from runbook.core.gate import GateRequest
from runbook.core.settings import Settings
from runbook.slack import blocks as sb
from runbook.slack import client as slack_client
from runbook.slack.client import make_client
from runbook.slack.text import code
from runbook.store.approvals import ApprovalStore
from runbook.store.slack import SlackStore
from runbook.store.timeline import TimelineStore

log = logging.getLogger("runbook.slack")

TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
DECIDED = (Kind.APPROVAL_APPROVED, Kind.APPROVAL_DENIED, Kind.APPROVAL_EXPIRED, Kind.APPROVAL_VOIDED)


def channel_name(incident: dict[str, Any], fallback: str) -> str:
    """``inc-<id>-<slug>``: lowercase, Slack's allowed characters, at most 80."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(incident.get("title") or fallback).lower()).strip("-")
    ident = re.sub(r"[^a-z0-9]+", "-", str(incident.get("id")).lower()).strip("-")
    return f"inc-{ident}-{slug}"[:80].rstrip("-")


class SlackDown(Exception):
    """Slack could not be reached or answered 5xx/429 after retries: keep the row, try later."""


class Outbox:
    """Posts outbox rows in order; one per process and store, with a background flusher thread."""

    def __init__(self, settings: Settings, store: ApprovalStore) -> None:
        self.settings = settings
        self.store = store
        self.slack = SlackStore(store.db)
        self._client: Any = None
        self._lock = threading.Lock()  # one flush at a time in this process
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.backoff = 0.0
        self._policy = PolicyFile(settings.approvers_file)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    def kick(self) -> None:
        """New work: flush now (this also retries at once when Slack was down)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="slack-outbox", daemon=True)
            self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.backoff or 30.0)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the flusher never dies
                log.warning("slack outbox: %s", exc)

    def drain(self, run_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` for this run's rows to be posted (end of run, before the process exits)."""
        end = time.monotonic() + timeout
        self.kick()
        while time.monotonic() < end:
            if not self.slack.outbox_counts(run_id).get("unsent"):
                return True
            time.sleep(0.05)
        return False

    def flush(self, limit: int = 200) -> int:
        """Post what can be posted now; returns how many rows went out."""
        with self._lock:
            sent = 0
            blocked: set[str] = set()
            for row in self.slack.unsent(limit):
                if row["run_id"] in blocked or not self.slack.claim(row["id"]):
                    blocked.add(row["run_id"])  # keep each run's order: nothing after a held row
                    continue
                try:
                    self._send(row)
                except SlackDown as exc:
                    self.slack.release(row["id"], str(exc))
                    self.backoff = min(60.0, max(1.0, self.backoff * 2))
                    log.info(
                        "slack unreachable (%s); %s kept in the outbox, retry in %.0fs",
                        exc,
                        f"row {row['id']}",
                        self.backoff,
                    )
                    return sent
                except Exception as exc:  # noqa: BLE001 - a permanent error drops the row, not the run
                    log.warning("slack rejected outbox row %s (%s): %s", row["id"], row["op"], exc)
                    self.slack.mark_sent(row["id"], dead=str(exc))
                    continue
                self.slack.mark_sent(row["id"])
                sent += 1
            self.backoff = 0.0
            return sent

    def mentions(self, req: GateRequest) -> list[str]:
        """The Slack ids of the people who may approve ``req`` (from the approvers file), to
        @-mention them; empty when the file names none or cannot be read."""
        try:
            policy = self._policy.get()
            return [sid for person in policy.members(req.approvers) for sid in policy.slack_ids(person)]
        except Exception as exc:  # noqa: BLE001 - a mention is a courtesy: never block the message
            log.warning("approvers for mentions: %s", exc)
            return []

    def _request_blocks(self, req: Any) -> list[dict[str, Any]]:
        mentions = self.mentions(req.request)
        if req.status == "pending":
            return sb.approval_blocks(req, self.store.votes(req.id), mentions)
        return sb.decided_blocks(req, mentions)

    # -- the calls -----------------------------------------------------------------------------
    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except slack_client.SlackApiError as exc:
            status = getattr(exc.response, "status_code", 200)
            error = exc.response.get("error", "") if hasattr(exc.response, "get") else ""
            if status >= 500 or status == 429 or error in TRANSIENT_ERRORS:
                raise SlackDown(f"{method}: HTTP {status} {error}".strip()) from None
            raise RuntimeError(f"{method}: {error or status}") from None
        except (OSError, TimeoutError) as exc:
            raise SlackDown(f"{method}: {type(exc).__name__}") from None

    def _send(self, row: dict[str, Any]) -> None:
        op, body, run_id = row["op"], row["body"], row["run_id"]
        if op == "root":
            self._root(run_id, body)
            return
        channel, thread_ts = self._thread_of(run_id)
        thread = {"thread_ts": thread_ts} if thread_ts else {}
        if op == "event":
            broadcast = {"reply_broadcast": True} if body.get("broadcast") and thread_ts else {}
            self._call(
                "chat_postMessage",
                channel=channel,
                text=body["text"],
                unfurl_links=False,
                **thread,
                **broadcast,
            )
        elif op == "finish":
            if thread_ts:  # the thread's first message says how the run ended
                self._call("chat_update", channel=channel, ts=thread_ts, text=body["text"])
        elif op == "approval":
            req = self.store.get(body["request_id"])
            if req is None:
                return
            blocks = self._request_blocks(req)
            resp = self._call(
                "chat_postMessage",
                channel=channel,
                text=sb.request_fallback(req),
                blocks=blocks,
                reply_broadcast=bool(thread_ts),
                **thread,
            )
            self.store.set_slack_message(req.id, resp["channel"], resp["ts"])
        elif op == "update":
            req = self.store.get(body["request_id"])
            if req is None or not req.slack_ts or not req.slack_channel:
                return  # never posted (Slack was not configured then): nothing to update
            blocks = self._request_blocks(req)
            text = sb.request_fallback(req) if req.status == "pending" else sb.decided_text(req)
            self._call("chat_update", channel=req.slack_channel, ts=req.slack_ts, text=text, blocks=blocks)
        else:
            raise RuntimeError(f"unknown outbox op {op!r}")

    def _root(self, run_id: str, body: dict[str, Any]) -> None:
        if self.slack.thread(run_id):
            return
        channel = self.settings.slack_channel
        threaded = True
        if body.get("incident_channel"):
            channel = self._incident_channel(body["incident_channel"]) or channel
            threaded = channel == self.settings.slack_channel
        if not channel:
            raise RuntimeError("no Slack channel: set RUNBOOK_SLACK_CHANNEL")
        resp = self._call("chat_postMessage", channel=channel, text=body["text"], unfurl_links=False)
        self.slack.set_thread(run_id, resp["channel"], resp["ts"] if threaded else "")

    def _incident_channel(self, name: str) -> str | None:
        try:
            created: str = self._call("conversations_create", name=name)["channel"]["id"]
            return created
        except RuntimeError as exc:
            if "name_taken" not in str(exc):
                log.warning("could not create #%s: %s; using %s", name, exc, self.settings.slack_channel)
                return None
        cursor = None
        while True:  # the channel exists (another run of this incident): find and reuse it
            resp = self._call("conversations_list", limit=200, cursor=cursor, exclude_archived=True)
            for ch in resp.get("channels", []):
                if ch.get("name") == name:
                    return str(ch["id"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def _thread_of(self, run_id: str) -> tuple[str, str]:
        found = self.slack.thread(run_id)
        if found:
            return found
        if not self.settings.slack_channel:
            raise RuntimeError("no Slack channel: set RUNBOOK_SLACK_CHANNEL")
        # events of a run whose start was never posted here (e.g. decided from the gateway)
        resp = self._call(
            "chat_postMessage",
            channel=self.settings.slack_channel,
            text=f"runbook run {code(run_id)} (continued)",
        )
        self.slack.set_thread(run_id, resp["channel"], resp["ts"])
        return resp["channel"], resp["ts"]


_outboxes: dict[tuple[str, str | None, str | None], Outbox] = {}
_outboxes_lock = threading.Lock()


def outbox_for(settings: Settings, store: ApprovalStore) -> Outbox:
    key = (store.db.url, settings.slack_api_url, settings.slack_channel)
    with _outboxes_lock:
        box = _outboxes.get(key)
        if box is None or box.settings != settings:
            box = _outboxes[key] = Outbox(settings, store)
        return box


class SlackSink:
    """Timeline sink for one run: turns events into outbox rows and wakes the flusher."""

    def __init__(
        self,
        settings: Settings,
        store: ApprovalStore,
        run_id: str,
        *,
        playbook: Any = None,
        drain_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.slack = SlackStore(store.db)
        self.run_id = run_id
        self.playbook = playbook
        self.outbox = outbox_for(settings, store)
        self.drain_seconds = drain_seconds
        self._started: Event | None = None

    def _started_event(self) -> Event | None:
        if self._started is None:  # a resumed run: its start was published by an earlier process
            events = TimelineStore(self.store.db).events(self.run_id)
            self._started = next((e for e in events if e.kind == Kind.RUN_STARTED), None)
        return self._started

    def publish(self, event: Event) -> None:
        if event.kind == Kind.RUN_FINISHED:
            playbook = getattr(self.playbook, "name", None) or (
                (self._started_event() or event).details.get("playbook", "run")
            )
            self.slack.enqueue(
                self.run_id, "event", {"text": sb.finished_text(event, playbook), "broadcast": True}
            )
            self.slack.enqueue(
                self.run_id, "finish", {"text": sb.finished_root_text(self._started_event(), event)}
            )
            self.outbox.drain(self.run_id, self.drain_seconds)
            return
        if event.kind == Kind.RUN_STARTED:
            self._started = event
            incident = event.details.get("incident") or {}
            wants = bool(getattr(self.playbook, "incident_channel", False)) and incident.get("id")
            name = channel_name(incident, getattr(self.playbook, "name", "run")) if wants else None
            self.slack.enqueue(
                self.run_id, "root", {"text": sb.root_text(event, self.run_id), "incident_channel": name}
            )
        elif event.kind == Kind.APPROVAL_REQUESTED and event.details.get("request_id"):
            self.slack.enqueue(self.run_id, "event", {"text": sb.event_text(event)})
            self.slack.enqueue(self.run_id, "approval", {"request_id": event.details["request_id"]})
        else:
            self.slack.enqueue(self.run_id, "event", {"text": sb.event_text(event)})
            if event.details.get("request_id") and (event.kind in DECIDED or event.details.get("partial")):
                self.slack.enqueue(self.run_id, "update", {"request_id": event.details["request_id"]})
        self.outbox.kick()


def sink_for_settings(
    settings: Settings, timeline: TimelineStore, run_id: str, playbook: Any = None
) -> SlackSink | None:
    """A Slack sink when a bot token is configured (and somewhere to post), else None (console only)."""
    if not settings.slack_bot_token:
        return None
    if not settings.slack_channel and not getattr(playbook, "incident_channel", False):
        log.warning("SLACK_BOT_TOKEN is set but RUNBOOK_SLACK_CHANNEL is not: the timeline is not posted")
        return None
    return SlackSink(settings, ApprovalStore(timeline.db), run_id, playbook=playbook)


def flush_outbox(settings: Settings, timeline: TimelineStore) -> int:
    """Post everything still waiting in the outbox (e.g. after a Slack outage); returns rows posted."""
    return outbox_for(settings, ApprovalStore(timeline.db)).flush()
