"""Restoring definitions against the real RabbitMQ: the diff of a backup against the broker (names,
never secret values), and the gated import pinned to the reviewed file's SHA-256."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.rabbit import connect, mgmt

from runbook.actions import ActionError, ActionRegistry, GuardrailRefused, describe, invoke

pytestmark = pytest.mark.usefixtures("rabbitmq_available")


@pytest.fixture
def registry() -> ActionRegistry:
    return ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _cleanup(prefix: str) -> None:
    for q in mgmt("GET", "/api/queues/%2F").json():
        if q["name"].startswith(prefix):
            mgmt("DELETE", f"/api/queues/%2F/{q['name']}")
    for x in mgmt("GET", "/api/exchanges/%2F").json():
        if x["name"].startswith(prefix):
            mgmt("DELETE", f"/api/exchanges/%2F/{x['name']}")
    mgmt("DELETE", f"/api/policies/%2F/{prefix}-policy")


def test_diff_then_import_restores_what_was_lost(ctx, registry, unique, home) -> None:  # type: ignore[no-untyped-def]
    prefix = f"rb-{unique}"
    conn = connect()
    ch = conn.channel()
    try:
        ch.exchange_declare(f"{prefix}-x", "topic", durable=True)
        ch.queue_declare(f"{prefix}-work", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(f"{prefix}-work", f"{prefix}-x", "work.#")
        mgmt(
            "PUT",
            f"/api/policies/%2F/{prefix}-policy",
            json={"pattern": f"^{prefix}-dlq$", "definition": {"max-length": 10}},
        )
        invoke(registry["rabbitmq.export_definitions"], ctx, {"path": "restore.json", "vhost": "/"})
        # the incident: the queue, its exchange and binding are gone; a new queue exists only on the broker
        ch.queue_delete(f"{prefix}-work")
        ch.exchange_delete(f"{prefix}-x")
        ch.queue_declare(f"{prefix}-new", durable=True)

        d = invoke(registry["rabbitmq.diff_definitions"], ctx, {"path": "restore.json", "vhost": "/"})
        kinds = {k.kind: k for k in d.kinds}
        assert f"//{prefix}-work" in kinds["queues"].added or f"/{prefix}-work" in kinds["queues"].added
        assert any(prefix in a for a in kinds["exchanges"].added) and any(
            prefix in a for a in kinds["bindings"].added
        )
        assert kinds["queues"].only_on_broker >= 1 and not d.conflicts
        assert len(d.sha256) == 64 and "sha256" in d.summary

        spec = registry["rabbitmq.import_definitions"]
        params = {"path": "restore.json", "vhost": "/", "sha256": d.sha256}
        text = describe(spec, ctx, params)
        assert (
            text.startswith(f"import restore.json (sha256 {d.sha256[:12]}) into vhost /: ")
            and f"{prefix}-work" in text
        )
        with pytest.raises(GuardrailRefused, match="changed since it was reviewed"):
            invoke(spec, ctx, {**params, "sha256": "0" * 64})
        res = invoke(spec, ctx, params)
        assert res.added >= 3
        assert mgmt("GET", f"/api/queues/%2F/{prefix}-work").json()["arguments"]["x-queue-type"] == "quorum"
        bindings = mgmt("GET", f"/api/exchanges/%2F/{prefix}-x/bindings/source").json()
        assert [b["routing_key"] for b in bindings] == ["work.#"]
        assert mgmt("GET", f"/api/queues/%2F/{prefix}-new").status_code == 200  # an import never deletes

        # a queue redeclared with other properties: the import would fail half-way, so it is refused
        ch.queue_delete(f"{prefix}-work")
        ch.queue_declare(f"{prefix}-work", durable=True)
        again = invoke(registry["rabbitmq.diff_definitions"], ctx, {"path": "restore.json", "vhost": "/"})
        assert again.conflicts == ["queues"]
        with pytest.raises(GuardrailRefused, match="redefines existing objects"):
            invoke(spec, ctx, {**params, "sha256": again.sha256})
    finally:
        conn.close()
        _cleanup(prefix)


@pytest.mark.parametrize("path", ["../x.json", "/etc/passwd", "~/x.json", "sub/../../x.json"])
def test_only_files_under_the_definitions_folder(ctx, registry, home, path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ActionError, match="definitions file refused"):
        invoke(registry["rabbitmq.diff_definitions"], ctx, {"path": path})


def test_symlinks_and_missing_files_are_refused(ctx, registry, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = home / "definitions"
    folder.mkdir(parents=True)
    outside = tmp_path / "outside.json"
    outside.write_text('{"queues": []}')
    os.symlink(outside, folder / "link.json")
    with pytest.raises(ActionError, match="symlink"):
        invoke(registry["rabbitmq.diff_definitions"], ctx, {"path": "link.json"})
    with pytest.raises(ActionError, match="no definitions file 'nope.json'"):
        invoke(registry["rabbitmq.diff_definitions"], ctx, {"path": "nope.json"})
    (folder / "bad.json").write_text("[1, 2]")
    with pytest.raises(ActionError, match="not a definitions object"):
        invoke(registry["rabbitmq.diff_definitions"], ctx, {"path": "bad.json"})
