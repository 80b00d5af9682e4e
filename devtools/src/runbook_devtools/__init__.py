"""The test bench and game-day harness of runbook, installed with the test extra, never shipped in the
runbook wheel: fakes of the external systems (a Kubernetes API server, a Kafka mock cluster), drills
that inject faults into local services, and the end-to-end demo."""
