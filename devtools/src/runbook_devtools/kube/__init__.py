"""A loopback Kubernetes API server for tests, playbook end-to-end runs, game-day drills and `make demo`.

No kube-apiserver can be had on these machines (see shared/NOTES.md), and the official client talks
urllib3 (and websocket-client for exec), so HTTP mocking libraries cannot intercept it. This package is
a small threaded HTTPS server that speaks enough of the real API, with real status codes and ``Status``
bodies, for the actions in ``runbook.actions.kubernetes`` *and the real kubectl* to be driven end to end:

- discovery (``/version``, ``/api``, ``/apis``, resource lists with verbs, short names, subresources)
  — :mod:`.resources`;
- an in-memory store of namespaces, nodes, pods, events, deployments, replicasets, statefulsets,
  daemonsets and PodDisruptionBudgets with a change journal — :mod:`.store`, :mod:`.pods`,
  :mod:`.seeding`;
- list with label/field selectors, ``limit``/``continue``, server-side Tables; create, replace,
  strategic-merge / merge / JSON patch, delete; scale, status, log and eviction subresources
  (429 when a PodDisruptionBudget would be violated) — :mod:`.rest`, :mod:`.selectors`,
  :mod:`.patches`, :mod:`.tables`;
- ``watch=true`` streams — :mod:`.watch`;
- a tiny controller manager (rolling updates through ReplicaSets, replacement of evicted pods) —
  :mod:`.controller`;
- TLS with a throwaway CA (kubectl sends no bearer token over plain HTTP) — :mod:`.tls`;
- exec over the websocket channel protocol, fault injection and a request log — :mod:`.http`.

Use it in tests as a context manager::

    with KubeAPIServer() as kube:
        kube.seed_demo()
        kubeconfig = kube.write_kubeconfig(tmp_path / "kc")   # also writes kc.ca.crt
        subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "deployments", "-A"])

or ``python -m runbook_devtools.kube_api --kubeconfig /tmp/kubeconfig`` for a drill.

Not implemented: RBAC, admission, server-side apply, aggregated discovery (clients fall back to the
legacy documents), graceful pod termination (deletes are immediate), strategic-merge ``$patch``
directives, SPDY exec, snapshot-consistent pagination (a continued list resumes after the last key).
This package imports nothing from ``runbook`` (``free_port`` is :func:`runbook_devtools.net.free_port`).
"""

from __future__ import annotations

from ..net import free_port
from .base import DEFAULT_TOKEN, ApiError, ExecResult, Fault, RequestRecord, now_iso, status_body
from .controller import pod_ready, template_hash
from .exec_sim import demo_exec
from .http import WS_GUID
from .patches import json_patch, merge_patch
from .resources import RESOURCES, WORKLOADS, not_found
from .selectors import field_selector_matches, label_selector_matches, match_labels_selector
from .server import KubeAPIServer, main

__all__ = [
    "DEFAULT_TOKEN",
    "RESOURCES",
    "WORKLOADS",
    "WS_GUID",
    "ApiError",
    "ExecResult",
    "Fault",
    "KubeAPIServer",
    "RequestRecord",
    "demo_exec",
    "field_selector_matches",
    "free_port",
    "json_patch",
    "label_selector_matches",
    "main",
    "match_labels_selector",
    "merge_patch",
    "not_found",
    "now_iso",
    "pod_ready",
    "status_body",
    "template_hash",
]
