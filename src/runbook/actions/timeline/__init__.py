"""Timeline actions (``timeline.*``): notes, findings and the postmortem draft."""
