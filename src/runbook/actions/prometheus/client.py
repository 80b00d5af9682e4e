"""The HTTP side of the ``prometheus.*`` actions: httpx and prometheus_client's text parser, here only.

Every other Prometheus module uses :func:`api_get`, :func:`scrape_text` and :func:`parse_metrics`, so
swapping the HTTP client or the parser touches this file only. The exposition format is parsed by
``prometheus_client.parser`` (the reference implementation's Python parser), never by hand.

Credentials: basic auth as ``user:password@`` inside ``PROMETHEUS_URL`` and/or a bearer token in
``PROMETHEUS_BEARER_TOKEN``. Both are registered with the redactor when the client is built, travel
only as ``Authorization`` headers (the URL shown in errors has no userinfo), and are sent to a scraped
endpoint only when it has the same origin as ``PROMETHEUS_URL`` (a playbook naming another host
never receives them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.lazy import lazy_module
from runbook.core.redact import redact, register
from runbook.core.settings import Settings

if TYPE_CHECKING:
    import httpx
    from prometheus_client import parser as prom_parser
else:  # imported on the first metric step, not when the registry is loaded
    httpx = lazy_module("httpx")
    prom_parser = lazy_module("prometheus_client.parser")

BACKEND = "prometheus"
CLIENT_KEY = "prometheus.http"
#: the most a query answer or a scraped page may weigh before it is refused (read in a stream)
MAX_BYTES = 16 * 1024 * 1024

__all__ = [
    "BACKEND",
    "CLIENT_KEY",
    "MAX_BYTES",
    "PrometheusHTTP",
    "Sample",
    "api_get",
    "configured",
    "parse_metrics",
    "prometheus_http",
    "scrape_text",
]


def configured(settings: Settings) -> bool:
    return bool(settings.prometheus_url)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class PrometheusHTTP:
    """One keep-alive HTTP client per run, with the configured credentials."""

    def __init__(self, url: str, bearer_token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ActionError("PROMETHEUS_URL must be an http(s) URL", backend=BACKEND)
        auth: tuple[str, str] | None = None
        if parts.username is not None or parts.password is not None:
            auth = (unquote(parts.username or ""), unquote(parts.password or ""))
            register([auth[1], parts.password])
        register([bearer_token])
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        # one scheme per request, as Prometheus's own http_config allows: the token wins
        self._auth = httpx.BasicAuth(*auth) if auth and not bearer_token else None
        self._headers = headers
        self._http = httpx.Client(timeout=httpx.Timeout(30.0, connect=3.0), follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def get(self, url: str, params: dict[str, Any] | None, timeout: float, *, credentials: bool) -> bytes:
        """GET ``url``, streamed under :data:`MAX_BYTES`; transport errors and 5xx are transient."""
        shown = urlunsplit(urlsplit(url)._replace(query="", fragment=""))
        kwargs: dict[str, Any] = {
            "params": params,
            "timeout": httpx.Timeout(timeout, connect=min(3.0, timeout)),
        }
        if credentials:
            kwargs.update(headers=self._headers, auth=self._auth)
        try:
            with self._http.stream("GET", url, **kwargs) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise ActionError(f"{shown}: answer over {MAX_BYTES} bytes", backend=BACKEND)
                status = response.status_code
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"{shown} unreachable: {type(exc).__name__}: {redact(str(exc))[:200]}", backend=BACKEND
            ) from None
        if status >= 500:
            raise BackendUnavailable(f"{shown} answered {status}", backend=BACKEND)
        if status >= 400 and not (status in (400, 422) and body[:1] == b"{"):
            raise ActionError(f"{shown} answered {status}", backend=BACKEND)
        return bytes(body)

    def same_origin(self, url: str) -> bool:
        return _origin(url) == _origin(self.base)


def prometheus_http(settings: Settings) -> PrometheusHTTP:
    """The ``ctx.connections`` factory."""
    if not settings.prometheus_url:
        raise ActionError("PROMETHEUS_URL is not set", backend=BACKEND)
    return PrometheusHTTP(settings.prometheus_url, settings.prometheus_bearer_token)


def _client(ctx: ActionContext) -> PrometheusHTTP:
    return ctx.connections.get(CLIENT_KEY, prometheus_http)


def api_get(ctx: ActionContext, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/v1/<endpoint>``: the ``data`` of a successful answer, else a one-line ActionError."""
    import json

    http = _client(ctx)
    raw = http.get(f"{http.base}/api/v1/{endpoint}", params, ctx.remaining(30.0), credentials=True)
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ActionError(f"/api/v1/{endpoint}: the answer is not JSON", backend=BACKEND) from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        err = answer.get("error") if isinstance(answer, dict) else None
        kind = answer.get("errorType") if isinstance(answer, dict) else None
        raise ActionError(
            f"/api/v1/{endpoint}: {kind or 'error'}: {redact(str(err or 'no status'))[:300]}", backend=BACKEND
        )
    data = answer.get("data")
    return data if isinstance(data, dict) else {}


def scrape_text(ctx: ActionContext, url: str) -> str:
    """The text of one ``/metrics`` endpoint; credentials only for the Prometheus origin."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionError("scrape url must be an http(s) URL", backend=BACKEND)
    if parts.username or parts.password:
        raise ActionError("scrape url must not carry credentials", backend=BACKEND)
    http = ctx.connections.get(CLIENT_KEY, _scrape_client) if not configured(ctx.settings) else _client(ctx)
    raw = http.get(url, None, ctx.remaining(15.0), credentials=http.same_origin(url))
    return raw.decode("utf-8", "replace")


def _scrape_client(settings: Settings) -> PrometheusHTTP:
    """Without PROMETHEUS_URL a scrape still works (no credentials to send anywhere)."""
    return PrometheusHTTP("http://prometheus.invalid")


class Sample:
    """One parsed sample: metric name, labels, value (``prometheus_client``'s Sample, flattened)."""

    __slots__ = ("family", "labels", "name", "value")

    def __init__(self, family: str, name: str, labels: dict[str, str], value: float) -> None:
        self.family, self.name, self.labels, self.value = family, name, labels, value


def parse_metrics(text: str) -> Iterator[Sample]:
    """Every sample of a Prometheus text exposition; a malformed page is an ActionError."""
    try:
        for family in prom_parser.text_string_to_metric_families(text):
            for s in family.samples:
                yield Sample(family.name, s.name, dict(s.labels), float(s.value))
    except ValueError as exc:
        raise ActionError(f"not the Prometheus text format: {str(exc)[:200]}", backend=BACKEND) from None
