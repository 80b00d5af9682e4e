"""The incident timeline: events of every run, stored, printed live and posted to Slack."""
