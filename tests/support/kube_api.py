"""Moved to :mod:`runbook_devtools.kube_api` (``make demo`` serves the demo cluster to a ``runbook serve``
subprocess at run time); re-exported here so tests keep importing it from tests.support, and
``python -m tests.support.kube_api`` keeps working."""

from __future__ import annotations

from runbook_devtools.kube_api import (  # noqa: F401 - re-exports
    DEFAULT_TOKEN,
    RESOURCES,
    ApiError,
    ExecResult,
    Fault,
    KubeAPIServer,
    RequestRecord,
    demo_exec,
    field_selector_matches,
    free_port,
    json_patch,
    label_selector_matches,
    main,
    match_labels_selector,
    merge_patch,
    now_iso,
    pod_ready,
    status_body,
)

if __name__ == "__main__":
    main()
