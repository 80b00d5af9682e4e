"""A second RabbitMQ node clustered with the main one, for real failure tests.

The implementation moved to :mod:`runbook_devtools.drills.rabbit_node` (``runbook drill`` needs it at run
time); this module keeps the test-facing name::

    with SecondNode() as node:          # started, joined, running (~15 s)
        node.stop_app()                 # the node is down; the cluster sees it
    # left: rabbit2 stopped, reset and forgotten; the main node single and healthy
"""

from __future__ import annotations

from runbook_devtools.drills.rabbit_node import (  # noqa: F401 - re-exports
    AUTH,
    MAIN_MGMT,
    RabbitNode,
    api_nodes,
    main_node_name,
    rabbitmqctl,
)


class SecondNode(RabbitNode):
    """``rabbit2@<host>`` on ports 5673 / 25673 / 15673, joined to the main node's cluster."""

    def __init__(
        self, name: str = "rabbit2", amqp_port: int = 5673, dist_port: int = 25673, mgmt_port: int = 15673
    ) -> None:
        super().__init__(name, amqp_port, dist_port, mgmt_port, clustered=True)
