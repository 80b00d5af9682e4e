"""runbook: executable runbooks for queue incidents.

YAML playbooks are validated (``runbook.spec``), compiled to Prefect flows (``runbook.compiler``)
whose steps call typed backend actions (``runbook.actions``); destructive steps wait for a human
decision (``runbook.approvals``) and every run writes an incident timeline (``runbook.timeline``).
"""

__version__ = "0.1.0"
