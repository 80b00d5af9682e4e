"""The one browser test: Debian's chromium, headless, driven over the DevTools protocol, opens a
paused run's page in the Prefect UI and finds there the step that waits and how to approve it.

Needs ``chromium`` (``scripts/services.sh browser`` installs the Debian package) and the Prefect
server's UI on 127.0.0.1:4200; never a downloaded browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from runbook.compiler.flow import build_flow
from runbook.runtime import from_environment
from runbook.spec.lint import lint_text

CHROMIUM = "/usr/bin/chromium"
HOW = "install Debian's chromium with `scripts/services.sh browser` (apt-get install -y chromium)"
PLAYBOOK = """
name: ui-paused-run
title: Paused run in the UI
owner: sre
steps:
  - id: restart_by_hand
    title: Restart the consumers by hand
    action: core.manual
    with: {instructions: "kubectl rollout restart deployment/orchestrator"}
    approval: {approvers: [incident-commander], timeout: 25s}
"""


class Chromium:
    """A headless chromium and one page, driven over CDP (a websocket)."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="rb-chromium-")
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "--window-size=1400,1000",
        ]  # fmt: skip
        self.proc = subprocess.Popen([CHROMIUM, *flags, "about:blank"], stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = connect(ws_url, max_size=None, open_timeout=10)
        self._id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                return dict(msg.get("result", {}))

    def text(self) -> str:
        res = self.send("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
        return str(res.get("result", {}).get("value", ""))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)


def test_paused_run_page_shows_the_step_and_how_to_approve(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: Any
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: {HOW}")
    ui = prefect_server.removesuffix("/api")
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'rb.db'}")
    pb, problems = lint_text(PLAYBOOK, "p.yaml", registry)
    assert not problems, problems
    flow = build_flow(pb, from_environment)
    box: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: box.update(state=flow(return_state=True)), daemon=True)
    runner.start()
    flow_run_id = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not flow_run_id:
        body = {
            "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}},
            "flows": {"name": {"any_": [pb.name]}},
        }
        runs = httpx.post(f"{prefect_server}/flow_runs/filter", json=body, timeout=10).json()
        flow_run_id = runs[0]["id"] if runs else ""
        time.sleep(0.5)
    assert flow_run_id, "the flow run never showed as Paused"

    browser = Chromium()
    text = ""
    try:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=f"{ui}/runs/flow-run/{flow_run_id}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = browser.text()
            if "restart_by_hand" in text and "runbook approve" in text:
                break
            time.sleep(1)
        shot = browser.send("Page.captureScreenshot", format="png")
        (tmp_path / "paused-run.png").write_bytes(__import__("base64").b64decode(shot["data"]))
    finally:
        browser.close()
    assert "Paused" in text, text[:2000]
    assert "Restart the consumers by hand (step restart_by_hand)" in text, text[:4000]
    assert f"runbook approve {flow_run_id} restart_by_hand --as USER" in text, text[:4000]
    assert "Resume here is refused" in text, text[:4000]
    runner.join(90)  # no decision: the request expires and the run ends Denied
    assert box["state"].name == "Denied", box["state"]
