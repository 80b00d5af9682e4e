"""What users test their own playbooks with: the rehearsal runner (``runbook rehearse``)."""
