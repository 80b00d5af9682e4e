"""Loading the registry (every action's name, params and results) imports no vendor SDK that is
bound lazily, so ``runbook run`` reaches its first step sooner (issue 16); the SDK arrives with the
first call of its backend, and ``core.lazy`` forwards to the real module."""

from __future__ import annotations

import json
import subprocess
import sys

#: the SDKs a run pays for only when one of its steps calls that backend
LAZY = ("kubernetes", "pdpyras", "slack_sdk", "prometheus_client")

PROBE = (
    "import json, sys\n"
    "from runbook.runtime import cached_registry\n"
    "names = sorted(s.name for s in cached_registry())\n"
    f"loaded = [m for m in {LAZY!r} if m in sys.modules]\n"
    "print(json.dumps({'loaded': loaded, 'actions': len(names),"
    " 'kube': 'kubernetes.rollout_restart' in names}))\n"
)


def test_registry_loads_without_the_lazy_sdks() -> None:
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == [], f"imported while loading the registry: {seen['loaded']}"
    assert seen["actions"] > 20 and seen["kube"]  # the specs are all there, SDK or not


def test_lazy_module_imports_on_first_use() -> None:
    probe = (
        "import sys\n"
        "from runbook.core.lazy import lazy_module\n"
        "m = lazy_module('colorsys')\n"
        "assert 'colorsys' not in sys.modules\n"
        "assert m.rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1)\n"
        "assert 'colorsys' in sys.modules\n"
        "try:\n"
        "    m.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
