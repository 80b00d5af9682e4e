"""The local Prometheus and Alertmanager (``scripts/services.sh monitoring``) for the tests that need them.

A test that needs them and finds them absent fails with the command that starts them (never skips).
Their configs live under the data directory scripts/monitoring.sh used; Prometheus tells us where
(``/api/v1/status/flags``), so a test can add a rule file or rewrite Alertmanager's receivers and
reload both (``--web.enable-lifecycle`` / ``POST /-/reload``).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
HOW = "start them with `scripts/services.sh monitoring` (installs the Debian packages if needed)"


def require_monitoring() -> Path:
    """The monitoring data folder (``<data dir>/monitoring``), or a failure saying how to start them."""
    for name, url in (("Prometheus", PROMETHEUS), ("Alertmanager", ALERTMANAGER)):
        try:
            httpx.get(f"{url}/-/ready", timeout=3).raise_for_status()
        except httpx.HTTPError as exc:
            pytest.fail(f"{name} is not answering on {url} ({exc}); {HOW}", pytrace=False)
    flags = httpx.get(f"{PROMETHEUS}/api/v1/status/flags", timeout=5).json()["data"]
    return Path(flags["config.file"]).parent.parent


def reload(url: str) -> None:
    httpx.post(f"{url}/-/reload", timeout=10).raise_for_status()


def write_rules(base: Path, name: str, text: str) -> Path:
    path = base / "prometheus" / "rules" / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    reload(PROMETHEUS)
    return path


def remove_rules(path: Path) -> None:
    path.unlink(missing_ok=True)
    reload(PROMETHEUS)


def write_alertmanager(base: Path, text: str) -> None:
    (base / "alertmanager" / "alertmanager.yml").write_text(text, encoding="utf-8")
    reload(ALERTMANAGER)


def promql(query: str) -> list[dict]:
    r = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": query}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def wait_scraped(query: str, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = promql(query)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"Prometheus has no data for {query} after {timeout:.0f}s")
