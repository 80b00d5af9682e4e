"""Data placed in Slack text is shown as text, never read as Slack markup.

Slack mrkdwn gives ``<...>`` meaning: ``<!channel>``/``<!here>`` notify everyone, ``<@U123>`` pings a
person, ``<https://evil|https://good>`` is a link whose visible text lies about its target. Incident
titles (anyone who can open a PagerDuty incident writes them), queue names, broker data, step
summaries, parameters, evidence and reasons typed by users all reach Slack messages, so every such
value goes through one of these helpers at the point the message is built; runbook's own markup
(bold, code spans, its own links) is written around the escaped values. Slack's documented escaping
is exactly ``&`` → ``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;``.

Backticks cannot be escaped in mrkdwn, so inside code they are neutralised instead: a backtick in a
value would close an inline code span, and three would close a code block and let the rest of the value
be read as markup again.
"""

from __future__ import annotations

from typing import Any

ZWSP = "\u200b"  # zero-width space: keeps backticks visible but never three in a row
BACKTICK_LOOKALIKE = "\u02cb"  # ˋ modifier letter grave accent: shown in place of ` inside a code span


def escape(value: Any) -> str:
    """``value`` as Slack mrkdwn text that shows exactly that text (``&``, ``<``, ``>`` escaped)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value: Any) -> str:
    """``value`` inside an inline code span: escaped, with its backticks unable to end the span."""
    return "`" + escape(value).replace("`", BACKTICK_LOOKALIKE) + "`"


def code_block(value: Any) -> str:
    """``value`` inside a fenced code block: escaped, and no run of backticks can close the fence."""
    return "```" + escape(value).replace("`", "`" + ZWSP) + "```"
