"""Kafka: consumer lag, cluster health, canary produce, guarded offset reset.

confluent-kafka is imported in ``client`` only."""
