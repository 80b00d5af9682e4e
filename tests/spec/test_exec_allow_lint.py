"""``kubernetes.exec``'s ``allow`` is part of the reviewed playbook: lint refuses an expression in it,
and a literal command outside it is refused at lint time (FILE:LINE:COL)."""

from __future__ import annotations

from runbook.actions import ActionRegistry
from runbook.spec.lint import lint_text

HEAD = """name: exec-allow
title: t
owner: me
params:
  cmd: {type: string, default: list_queues}
steps:
  - id: run
    title: Run it
    action: kubernetes.exec
    approval: {approvers: [incident-commander]}
    with:
      namespace: rabbitmq
      pod: rabbitmq-0
"""


def problems(with_lines: str, registry: ActionRegistry) -> list[str]:
    _, found = lint_text(HEAD + with_lines, "p.yaml", registry)
    return [str(p) for p in found]


def test_allow_must_be_literal(registry: ActionRegistry) -> None:
    literal_msg = (
        "parameter 'allow' of 'kubernetes.exec' must be written out in the playbook, not an expression"
    )
    assert problems(
        '      command: [rabbitmqctl, list_queues]\n      allow: ["rabbitmqctl {{ params.cmd }}"]\n', registry
    ) == [f"p.yaml:15:15: {literal_msg}"]
    assert problems(
        "      command: [rabbitmqctl, list_queues]\n"
        '      allow: [[rabbitmqctl, "{% if 1 %}eval{% endif %}"]]\n',
        registry,
    ) == [f"p.yaml:15:29: {literal_msg}"]


def test_allow_is_required_and_a_literal_command_outside_it_is_a_lint_problem(
    registry: ActionRegistry,
) -> None:
    assert problems("      command: [rabbitmqctl, eval, 'init:stop().']\n", registry) == [
        "p.yaml:12:7: action 'kubernetes.exec' needs parameter 'allow'"
    ]
    [found] = problems(
        "      command: [rabbitmqctl, eval, 'init:stop().']\n      allow: ['rabbitmqctl list_queues ...']\n",
        registry,
    )
    assert "is not in this step's allow list (rabbitmqctl list_queues ...)" in found


def test_templated_arguments_fill_star_slots(registry: ActionRegistry) -> None:
    assert (
        problems(
            "      command: [rabbitmqctl, forget_cluster_node, '{{ params.cmd }}']\n"
            "      allow: ['rabbitmqctl forget_cluster_node *']\n",
            registry,
        )
        == []
    )
