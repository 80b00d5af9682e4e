"""prefect.yaml stays in step with the playbooks: one process-pool deployment per shipped playbook,
named after it (as `runbook serve` names it), with the playbook's cron schedules, and every
entrypoint loads through Prefect's own loader."""

from __future__ import annotations

from pathlib import Path

import yaml

from runbook.deploy import deployment_name, load_playbooks

ROOT = Path(__file__).resolve().parents[2]


def test_every_playbook_has_a_deployment_with_its_schedules() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    process = {
        d["entrypoint"].split(":")[1]: d
        for d in spec["deployments"]
        if d["work_pool"]["name"] == "runbook-process"
    }
    playbooks = {pb.name.replace("-", "_"): pb for pb in load_playbooks(ROOT / "playbooks")}
    assert set(process) == set(playbooks)
    for attr, pb in playbooks.items():
        crons = [(s["cron"], s["timezone"]) for s in process[attr].get("schedules") or []]
        assert crons == [(s.cron, s.timezone) for s in pb.triggers.schedule], attr
        assert process[attr]["name"] == deployment_name(pb) == pb.name, attr  # <playbook>/<playbook>


def test_deployment_names_are_unique_per_flow() -> None:
    """Two entries of one flow need distinct names (the Kubernetes example is `<playbook>-k8s`)."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pairs = [(d["entrypoint"], d["name"]) for d in spec["deployments"]]
    assert len(pairs) == len(set(pairs))
    assert all(d["name"] != "runbook" for d in spec["deployments"])
    k8s = [d for d in spec["deployments"] if d["work_pool"]["name"] == "runbook-k8s"]
    assert [d["name"] for d in k8s] == ["stuck-queue-k8s"]


def test_entrypoints_load_with_prefects_loader(monkeypatch) -> None:
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint("flows/playbooks.py:backlog_triage")
    assert flow.name == "backlog-triage"
    assert "queue" in flow.parameters.properties
