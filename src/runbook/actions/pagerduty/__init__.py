"""PagerDuty REST: incidents, notes, acknowledge/resolve, on-call (pdpyras in ``client``)."""
