"""SQS as a queue system (``system=sqs``): see ``system``."""
