"""Issue 12, class 5 (expressions): the sandbox is read-only and bounded.

Attacks come through the public surfaces: ``render_value``/``evaluate_condition`` (what ``with:``,
``when:`` and preconditions use) and the engine running a linted playbook. Each variant must fail
with a clear message and change nothing, quickly and without a large allocation.
"""

from __future__ import annotations

import resource
import time

import pytest

from runbook.actions import ActionRegistry
from runbook.compiler.engine import Engine, RunOptions
from runbook.compiler.params import coerce_params
from runbook.core.expressions import (
    ExpressionError,
    evaluate_condition,
    parse_template,
    references,
    render_value,
    wrap,
)
from runbook.core.sandbox import MAX_VALUE_CHARS, BoundedSandbox, OutputTooLarge
from runbook.spec.lint import lint_text
from runbook.timeline.postmortem import postmortem_environment

MODULES = ["runbook.actions.core.actions", "runbook.actions.timeline.actions", "tests.support.engine_actions"]


def context() -> dict:
    return {
        "params": wrap({"queue": "plans", "limit": 3, "tags": ["a", "b"]}),
        "steps": wrap({"snap": {"values": [1, 2], "pop": 5, "update": "u", "messages": 7}}),
        "incident": wrap({"title": "Queue depth > 1000"}),
        "run": wrap({"id": "run-1"}),
    }


def snapshot(ctx: dict) -> str:
    return repr(ctx)


# -- immutability -----------------------------------------------------------------------------------

MUTATIONS = [
    "{{ params.update({'queue': 'x'}) }}",
    "{{ params.pop('queue') }}",
    "{{ params.setdefault('evil', 1) }}",
    "{{ params.clear() }}",
    "{{ params.popitem() }}",
    "{{ params.tags.append('c') }}",
    "{{ params.tags.extend(['c']) }}",
    "{{ params.tags.pop() }}",
    "{{ params.tags.sort() }}",
    "{{ params.tags.clear() }}",
    "{{ steps.snap.values.reverse() }}",
    "{{ params.update(queue='x') or true }}",
    "{% if params.update({'queue': 'x'}) %}{% endif %}",
    "{{ params.tags.insert(0, 'c') }}",
]


@pytest.mark.parametrize("text", MUTATIONS)
def test_expressions_cannot_change_data(text: str) -> None:
    ctx = context()
    before = snapshot(ctx)
    with pytest.raises(ExpressionError, match="expressions are read-only"):
        render_value(text, ctx)
    if text.startswith("{{"):  # a condition is one expression
        with pytest.raises(ExpressionError, match="expressions are read-only"):
            evaluate_condition(text, ctx)
    assert snapshot(ctx) == before


def test_keys_still_win_over_dict_methods() -> None:
    ctx = context()
    assert render_value("{{ steps.snap.values }}", ctx) == [1, 2]
    assert render_value("{{ steps.snap.pop }}", ctx) == 5  # a key named like a mutating method is data
    assert render_value("{{ steps.snap.update }}", ctx) == "u"
    assert render_value("{{ params.get('queue') }}", ctx) == "plans"
    assert render_value("{{ params.tags | sort | join(',') }}", ctx) == "a,b"
    assert render_value("{{ params.limit * 2 }}", ctx) == 6
    assert render_value("{{ params.queue ~ '-' ~ run.id }}", ctx) == "plans-run-1"
    assert render_value("{{ '%s-%d' % (params.queue, params.limit) }}", ctx) == "plans-3"
    assert render_value("{{ '{:>6}'.format(params.queue) }}", ctx) == " plans"
    assert render_value("{% for t in params.tags %}{{ t }}{% endfor %}", ctx) == "ab"
    assert render_value("{% for a, b in [(1, 2)] %}{{ a + b }}{% endfor %}", ctx) == "3"
    assert render_value("{{ [params.queue] + params.tags }}", ctx) == ["plans", "a", "b"]
    assert evaluate_condition("steps.snap.messages > 5", ctx) is True


def test_dunder_escapes_stay_refused() -> None:
    for text in (
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ params.__class__ }}",
        "{{ lipsum.__globals__ }}",
    ):
        with pytest.raises(ExpressionError, match="unsafe|undefined"):
            render_value(text, context())


def test_lint_view_of_expressions_is_unchanged() -> None:
    tree = parse_template("{% for m in steps.snap.values %}{{ m ~ params.queue }}{% endfor %}")
    refs, unknown = references(tree)
    assert {(r.root, r.name) for r in refs} == {("steps", "snap"), ("params", "queue")}
    assert unknown == []


# -- bounded output ------------------------------------------------------------------------------------

HUGE = [
    "{{ 'a' * 300000000 }}",
    "{{ 300000000 * 'a' }}",
    "{{ [1] * 10**9 }}",
    "{{ (1,) * 10**9 }}",
    "{{ range(10**9) | list | length }}",
    "{{ range(20000) | list | length }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%.999999999f' % 1.0 }}",
    "{{ '%*s' % (999999999, 'x') }}",
    "{{ '%s' | format('a' * 999999) ~ 'xx' }}",
    "{{ '%999999999s' | format('x') }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ '{:.999999999f}'.format(1.0) }}",
    "{{ '{0:{1}}'.format('x', 999999999) }}",
    "{{ '{x:>999999999}'.format_map({'x': 1}) }}",
    "{{ ('{:>999999999}' | safe).format('x') }}",
    "{{ lipsum(100000) }}",
    "{{ lipsum(1, max=10**9) }}",
    "{{ 2 ** (10**9) }}",
    "{{ 10 ** 100000 }}",
    "{{ (10**2000) * (10**2000) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(n=3) %}{% for i in range(60) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
    "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}",
    "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = (ns.a, ns.a) %}{% endfor %}",
    "{% set ns = namespace(a=[1]) %}{% for i in range(60) %}{% set ns.a = {'k': ns.a, 'j': ns.a} %}"
    "{% endfor %}",
    "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{{ 'x' | center(10**9) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ ('\t' * 1000).expandtabs(10**6) }}",
    "{{ ('x' * 1000).replace('', 'y' * 1000) }}",
    "{{ ('x' * 1000) | replace('x', 'y' * 10000) }}",
    "{{ ('a\n' * 1000) | indent('y' * 10000) }}",
    "{{ ('a ' * 1000) | wordwrap(1, wrapstring='y' * 10000) }}",
    "{{ ('y' * 10000).join(['x'] * 1000) }}",
    "{{ (['x'] * 1000) | join('y' * 10000) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
    "{{ ('x' | safe).center(10**8) }}",
    "{{ (('x' * 1000) | safe).replace('', 'y' * 1000) }}",
    "{{ (('y' * 10000) | safe).join(['a'] * 1000) }}",
    "{{ range(5) | batch(10**9, 0) | list }}",
    "{{ ('x' * 600000) ~ ('y' * 600000) }}",
    "{{ ['x' * 999999] * 2 }}",
    "{{ [['x' * 1000] * 1000] * 1000 }}",
    "{{ ('x' * 999999) | tojson | tojson }}",
]


@pytest.mark.parametrize("text", HUGE)
def test_huge_outputs_fail_quickly_with_a_clear_message(text: str) -> None:
    ctx = context()
    before = snapshot(ctx)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # CPU seconds of this thread, not wall time: the claim is that the sandbox stops the work early,
    # and wall time also counts the other test processes sharing the machine's two cores (a clean-
    # clone run measured 2.04 s wall for a render that takes 0.74 s alone)
    start = time.thread_time()
    with pytest.raises(ExpressionError, match="output too large"):
        render_value(text, ctx)
    assert time.thread_time() - start < 2.0
    # peak memory grew by well under what any of these would have built (>= 300 MB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 64 * 1024  # KiB
    assert snapshot(ctx) == before


def test_huge_condition_fails_too() -> None:
    with pytest.raises(OutputTooLarge, match="output too large"):
        evaluate_condition("('a' * 300000000) == 'a'", context())


def test_values_just_under_the_limit_still_render() -> None:
    text = render_value("{{ 'x' * 999000 }}", context())
    assert len(text) == 999000 < MAX_VALUE_CHARS
    assert render_value("{{ range(10000) | list | length }}", context()) == 10000
    assert render_value("{{ 2 ** 64 }}", context()) == 2**64


def test_postmortems_use_the_same_sandbox_class() -> None:
    env = postmortem_environment(None)
    assert type(env) is BoundedSandbox
    for text in ("{{ range(1000) | list | tojson(indent=10**6) }}", "{{ lipsum(10**6) }}"):
        with pytest.raises(OutputTooLarge):
            env.render_bounded(env.from_string(text), {})
    assert env.render_bounded(env.from_string("{{ [1] | tojson(indent=2) }}"), {}) == "[\n  1\n]"
    tmpl = env.from_string("{{ data.update({'x': 1}) }}")
    data: dict = {}
    with pytest.raises(Exception, match="read-only"):
        env.render_bounded(tmpl, {"data": data})
    assert data == {}
    with pytest.raises(OutputTooLarge):
        env.render_bounded(env.from_string("{{ 'a' * 300000000 }}"), {})


# -- through the engine ----------------------------------------------------------------------------------

HEAD = "name: t\ntitle: T\nowner: me\n"


def test_a_when_that_mutates_params_fails_the_step_and_changes_nothing(settings, store) -> None:
    reg = ActionRegistry.from_modules(MODULES)
    direct = HEAD + """
params:
  queue: {type: string, default: plans}
steps:
  - id: sneaky
    when: "{{ params.update({'queue': 'x'}) }}"
    action: core.set
    with: {values: {q: 1}}
"""
    # lint already refuses the plain form (no such param) ...
    _, problems = lint_text(direct, "t.yaml", reg)
    assert any("update" in str(p) for p in problems), [str(p) for p in problems]
    # ... and the engine refuses every form lint cannot see
    text = (
        HEAD
        + """
params:
  queue: {type: string, default: plans}
steps:
  - id: first
    action: core.set
    with: {values: {q: "{{ params.queue }}", tags: [a, b]}}
  - id: sneaky_when
    when: "{{ (params | attr('update'))({'queue': 'x'}) or true }}"
    action: core.set
    with: {values: {q: "{{ params.queue }}"}}
    on_failure: continue
  - id: sneaky_with
    action: core.set
    with: {values: {q: "{% set p = params %}{{ p.pop('queue') }}"}}
    on_failure: continue
  - id: sneaky_outputs
    when: "{{ steps.first.values.update({'q': 'x'}) or steps.first.values.tags.append('c') or true }}"
    action: core.set
    with: {values: {q: 1}}
    on_failure: continue
  - id: after
    action: core.set
    with:
      values:
        q: "{{ params.queue }}"
        first: "{{ steps.first.values.q }}"
        tags: "{{ steps.first.values.tags }}"
"""
    )
    pb, problems = lint_text(text, "t.yaml", reg)
    assert not problems, [str(p) for p in problems]
    options = RunOptions(run_id="run-mutate", params=coerce_params(pb, {}))
    outcome = Engine(settings, reg, store).run(pb, options)
    events = store.events(outcome.run_id)
    failed = {e.step_id: e.summary for e in events if e.kind.value == "step.failed"}
    assert set(failed) == {"sneaky_when", "sneaky_with", "sneaky_outputs"}, failed
    assert all("read-only" in s and "Traceback" not in s for s in failed.values()), failed
    # nothing changed: params and earlier outputs as they were
    assert outcome.outputs["after"]["values"] == {"q": "plans", "first": "plans", "tags": ["a", "b"]}
    assert outcome.status == "completed"
