"""The default exec simulator for pods of the demo cluster."""

from __future__ import annotations

import json
import time

from .base import ExecResult


def demo_exec(namespace: str, pod: str, container: str, command: list[str]) -> ExecResult:
    """Default exec simulator: a few commands drills and tests use.

    ``echo ARGS``, ``seq N``, ``false``, ``sleep S``, ``rabbitmqctl forget_cluster_node NODE``,
    ``rabbitmqctl cluster_status``, ``goqueue-admin health``, ``goqueue-admin cluster status``,
    ``df -h PATH``, ``printenv`` (prints a secret, for redaction tests); anything else
    answers exit code 127 like a missing binary.
    """
    if not command:
        return ExecResult(stderr="no command", exit_code=1)
    prog, args = command[0].rsplit("/", 1)[-1], command[1:]
    if prog == "echo":
        return ExecResult(stdout=" ".join(args) + "\n")
    if prog == "seq" and args:
        return ExecResult(stdout="".join(f"{i}\n" for i in range(1, int(args[-1]) + 1)))
    if prog == "false":
        return ExecResult(stderr="", exit_code=1)
    if prog == "true":
        return ExecResult()
    if prog == "sleep" and args:
        time.sleep(float(args[0]))
        return ExecResult()
    if prog == "goqueue-admin" and args == ["health"]:
        return ExecResult(stdout=json.dumps({"status": "ok", "node": pod, "raft": "follower"}) + "\n")
    if prog == "goqueue-admin" and args == ["cluster", "status"]:
        return ExecResult(stdout="cluster: goqueue\nmembers: 3/3\nleader: goqueue-0\nstatus: healthy\n")
    if prog == "df" and args[:1] == ["-h"]:
        where = args[1] if len(args) > 1 else "/"
        header = "Filesystem      Size  Used Avail Use% Mounted on\n"
        return ExecResult(stdout=f"{header}/dev/sdb         10G  3.1G  6.9G  31% {where}\n")
    if prog == "printenv":
        return ExecResult(stdout="HOME=/root\nRABBITMQ_PASSWORD=hunter2hunter2\n")
    if prog == "rabbitmqctl" and args[:1] == ["forget_cluster_node"] and len(args) >= 2:
        return ExecResult(stdout=f"Removing node {args[1]} from the cluster\n")
    if prog == "rabbitmqctl" and args[:1] == ["cluster_status"]:
        return ExecResult(stdout=f"Cluster status of node rabbit@{pod} ...\nRunning Nodes\n\nrabbit@{pod}\n")
    return ExecResult(stderr=f'exec: "{command[0]}": executable file not found in $PATH\n', exit_code=127)
