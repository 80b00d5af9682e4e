"""Loading the registry (every action's name, params and results) imports no vendor SDK that is
bound lazily, so ``runbook run`` reaches its first step sooner (issue 16); the SDK arrives with the
first call of its backend, and ``core.lazy`` forwards to the real module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_a_run_imports_only_the_backends_its_playbook_uses(tmp_path: Path) -> None:
    """The default registry imports ``runbook.actions.<backend>.actions`` on the first look-up of a
    ``<backend>.…`` action: a playbook of ``core`` steps loads no RabbitMQ, PostgreSQL or Kafka
    client (pika, psycopg, pglast, confluent_kafka stay out of the process); a misspelt action
    still gets its suggestions, which need every name."""
    playbook = tmp_path / "core-only.yaml"
    playbook.write_text(
        "name: core-only\ntitle: core only\nowner: test\nsteps:\n"
        '  - {id: a, action: core.assert, with: {that: "{{ 1 == 1 }}"}}\n'
    )
    probe = (
        "import json, sys\n"
        "from runbook.runtime import cached_registry\n"
        "from runbook.spec.loading import load_playbook\n"
        "from runbook.spec.lint import lint_text\n"
        "registry = cached_registry()\n"
        f"load_playbook({str(playbook)!r}, registry)\n"
        "heavy = ('pika', 'psycopg', 'pglast', 'confluent_kafka', 'redis', 'boto3')\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "bad = 'name: t\\ntitle: t\\nowner: o\\nsteps:\\n  - {id: a, action: rabbitmq.purg}\\n'\n"
        "_, typo = lint_text(bad, 't.yaml', registry)\n"
        "print(json.dumps({'before': before, 'after': [m for m in heavy if m in sys.modules],"
        " 'typo': [str(p) for p in typo], 'actions': len(registry.names())}))\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["before"] == [], f"a core-only playbook imported: {seen['before']}"
    assert "pika" in seen["after"]  # listing every name loaded every backend
    assert any("did you mean 'rabbitmq." in p for p in seen["typo"]), seen["typo"]
    assert seen["actions"] > 60


def test_concurrent_first_look_ups_all_find_the_action() -> None:
    """The gateway looks actions up from several threads: one that arrives while another thread is
    still importing that backend waits for it, never sees the action as unknown."""
    probe = (
        "import json, threading\n"
        "from runbook.actions.registry import default_registry\n"
        "registry = default_registry()\n"
        "start = threading.Barrier(8)\n"
        "found = []\n"
        "def look():\n"
        "    start.wait()\n"
        "    found.append(registry.get('kubernetes.rollout_restart') is not None)\n"
        "threads = [threading.Thread(target=look) for _ in range(8)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(json.dumps(found))\n"
    )
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr[-2000:]
        assert json.loads(res.stdout.strip().splitlines()[-1]) == [True] * 8
