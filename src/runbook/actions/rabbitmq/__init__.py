"""RabbitMQ: queue stats, body-free peeks, node health, confirm-before-ack moves, guarded purges.
``client`` alone imports the vendor libraries (pika, and the management API over httpx)."""
