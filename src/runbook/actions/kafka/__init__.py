"""Kafka: consumer lag, cluster health, canary produce, guarded offset reset (confluent-kafka in ``client``)."""
