"""The loopback Kubernetes API server now lives in :mod:`runbook_devtools.kube` (one module per concern);
this name stays importable for existing callers, and ``python -m runbook_devtools.kube_api`` serves the
demo cluster as before."""

from __future__ import annotations

from runbook_devtools.kube import *  # noqa: F403 - the public names, re-exported
from runbook_devtools.kube import __all__  # noqa: F401
from runbook_devtools.kube.server import main

if __name__ == "__main__":
    main()
