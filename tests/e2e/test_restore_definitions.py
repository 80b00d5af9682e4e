"""restore-definitions end to end on the real RabbitMQ: a vhost loses its queue, exchange and binding,
the backup under the data directory's definitions/ folder is diffed, the import approved through the
real approval path, and the topology is back with messages flowing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, mgmt, run_playbook


def test_lost_topology_is_restored_from_the_backup(e2e_env: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    vhost = f"e2e-restore-{tag}"
    v = quote(vhost, safe="")
    assert mgmt("PUT", f"/api/vhosts/{v}").status_code in (201, 204)
    try:
        mgmt("PUT", f"/api/permissions/{v}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
        mgmt("PUT", f"/api/exchanges/{v}/orders", json={"type": "topic", "durable": True})
        mgmt(
            "PUT",
            f"/api/queues/{v}/orders-work",
            json={"durable": True, "arguments": {"x-queue-type": "quorum"}},
        )
        mgmt("POST", f"/api/bindings/{v}/e/orders/q/orders-work", json={"routing_key": "order.*"})
        backup = tmp_path / "home" / "definitions" / "nightly.json"
        backup.parent.mkdir(parents=True, mode=0o700)
        backup.write_text(json.dumps(mgmt("GET", f"/api/definitions/{v}").json()))
        # the incident: the queue and the exchange (with its binding) are gone
        mgmt("DELETE", f"/api/queues/{v}/orders-work")
        mgmt("DELETE", f"/api/exchanges/{v}/orders")
        assert mgmt("GET", f"/api/queues/{v}/orders-work").status_code == 404

        with Approver(e2e_env, f"e2e-{tag}", {"import": "approve"}) as approver:
            result = run_playbook(
                "restore-definitions", {"backup": "nightly.json", "vhost": vhost}, f"e2e-{tag}"
            )
        assert result.status == "completed", result.text()
        assert approver.steps() == ["import"]
        diff = result.output("diff")
        assert diff["to_add"] >= 3 and not diff["conflicts"]
        proposed = approver.request("import").params
        assert proposed == {"path": "nightly.json", "sha256": diff["sha256"], "vhost": vhost}
        queue = mgmt("GET", f"/api/queues/{v}/orders-work").json()
        assert queue["arguments"]["x-queue-type"] == "quorum"
        bindings = mgmt("GET", f"/api/exchanges/{v}/orders/bindings/source").json()
        assert [(b["destination"], b["routing_key"]) for b in bindings] == [("orders-work", "order.*")]
        assert result.output("verify")["to_add"] == 0 and result.output("canary")["ok"]
        safety = Path(result.output("safety_export")["path"])
        assert safety.parent == backup.parent and safety.name.startswith("before-restore-")
    finally:
        mgmt("DELETE", f"/api/vhosts/{v}")
