"""Kubernetes: workloads, pods, logs, events, scale with a DB budget, PDB-respecting drain, allow-listed exec.
``client`` alone imports the official kubernetes client."""
