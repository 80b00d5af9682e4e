"""Prometheus: read-only metric steps (instant and range PromQL, one ``/metrics`` endpoint)."""
