"""Generic ``queue.*`` actions over every queue system (rabbitmq, bullmq, pg_table, kafka, sqs)."""
