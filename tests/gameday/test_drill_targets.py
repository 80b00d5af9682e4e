"""Drills refuse targets that are not on loopback (issue 12, class 8), before touching anything.

Every non-loopback address here (10.0.0.1, 192.0.2.x) is refused by inspection: the tests fail if any
socket connects anywhere, and names resolve through a fake resolver."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from runbook_devtools.drills import run_drill
from runbook_devtools.drills.faults import FAULTS
from runbook_devtools.drills.targets import NotLoopback, loopback_problems

from runbook.cli import main
from runbook.core.settings import Settings

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {{server: "https://127.0.0.1:6443"}}
  - name: other
    cluster: {{server: "{server}"}}
contexts: []
"""


def fake_resolve(host: str) -> list[str]:
    return {
        "db.internal": ["10.0.0.7"],
        "mixed.example": ["127.0.0.1", "192.0.2.4"],
        "me.test": ["127.0.1.1"],
    }[host]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail on any outgoing connection (the check must refuse without one)."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise AssertionError(f"connection attempted to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/"}, []),
        ({"RABBITMQ_URL": "amqp://guest:guest@localhost/"}, []),
        ({"RABBITMQ_MANAGEMENT_URL": "http://guest:guest@[::1]:15672"}, []),
        ({"DATABASE_URL": "postgresql:///test?host=/var/run/postgresql"}, []),
        ({"DATABASE_URL": "postgresql://root@127.0.0.5:5432/test"}, []),
        ({"REDIS_URL": "unix:///run/redis.sock"}, []),
        ({"KAFKA_BOOTSTRAP_SERVERS": "PLAINTEXT://127.0.0.1:9092,localhost:9093"}, []),
        ({"DATABASE_URL": "postgresql://root@me.test/test"}, []),
        (
            {"RABBITMQ_URL": "amqp://guest:hunter2@10.0.0.1:5672/"},
            ["RABBITMQ_URL: 10.0.0.1 is not a loopback"],
        ),
        (
            {"RABBITMQ_MANAGEMENT_URL": "https://u:p@[2001:db8::1]:15671"},
            ["RABBITMQ_MANAGEMENT_URL: 2001:db8::1"],
        ),
        ({"DATABASE_URL": "host=10.0.0.1 dbname=prod password=hunter2"}, ["DATABASE_URL: 10.0.0.1 is not"]),
        (
            {"DATABASE_URL": "postgresql://u@127.0.0.1,10.0.0.1/prod"},
            ["DATABASE_URL: 10.0.0.1 is not"],
        ),
        (
            {"DATABASE_URL": "postgresql://u:hunter2@db.internal/prod"},
            ["DATABASE_URL: db.internal resolves to 10.0.0.7"],
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092,10.0.0.1:9092"}, ["KAFKA_BOOTSTRAP_SERVERS: 10.0.0.1"]),
        (
            {"REDIS_URL": "redis://:hunter2@mixed.example:6379/0"},
            ["REDIS_URL: mixed.example resolves to 192.0.2.4"],
        ),
        ({"AWS_ENDPOINT_URL": "https://sqs.eu-west-1.amazonaws.com.invalid"}, ["AWS_ENDPOINT_URL:"]),
    ],
)
def test_each_target_variable_is_checked(
    env: dict[str, str], expected: list[str], no_connections: list
) -> None:
    def resolve(host: str) -> list[str]:
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return fake_resolve(host)

    found = loopback_problems(env, resolve=resolve)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start)
        assert "hunter2" not in line  # credentials in URLs are never shown
    assert no_connections == []


def test_kubeconfig_server_is_checked(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.write_text(KUBECONFIG.format(server="https://localhost:6443"))
    remote = tmp_path / "remote"
    remote.write_text(KUBECONFIG.format(server="https://10.0.0.1:6443"))
    assert loopback_problems({"KUBECONFIG": str(local)}) == []
    assert loopback_problems({"KUBECONFIG": f"{local}:{remote}"}) == [
        "KUBECONFIG: 10.0.0.1 is not a loopback address"
    ]
    [missing] = loopback_problems({"KUBECONFIG": str(tmp_path / "nope")})
    assert missing.startswith("KUBECONFIG: cannot read") and "FileNotFoundError" in missing


def test_runbook_drill_approve_refuses_a_remote_broker_before_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_connections: list
) -> None:
    monkeypatch.setenv("RABBITMQ_URL", "amqp://guest:hunter2@10.0.0.1:5672/")
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", "http://guest:hunter2@10.0.0.1:15672")
    code = main(["drill", "backlog-triage", "--fault", "backlog-poison", "--approve"])
    captured = capsys.readouterr()
    assert code == 1
    assert "drills run only against services on this machine" in captured.err
    assert "RABBITMQ_URL: 10.0.0.1 is not a loopback address" in captured.err
    assert "RABBITMQ_MANAGEMENT_URL: 10.0.0.1" in captured.err
    assert "hunter2" not in captured.err + captured.out
    assert "injecting" not in captured.out  # refused before the fault
    assert no_connections == []


def test_run_drill_and_faults_refuse_a_remote_cluster_and_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_connections: list
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(server="https://10.0.0.1:6443"))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("DATABASE_URL", "postgresql://root@10.0.0.1:5432/prod")
    with pytest.raises(NotLoopback, match="KUBECONFIG: 10.0.0.1 .*DATABASE_URL: 10.0.0.1"):
        run_drill("backlog-triage", "backlog-poison", approve=True)
    # a fault built directly (tests, the demo) refuses too
    for name in ("stuck-executions", "backlog-poison"):
        with pytest.raises(NotLoopback, match="DATABASE_URL"):
            FAULTS[name]("t1", Settings.from_env())
    assert no_connections == []
