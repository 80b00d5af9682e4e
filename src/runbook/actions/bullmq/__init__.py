"""BullMQ on Redis: the ``bullmq`` queue system behind ``queue.*`` (redis-py only in ``client``)."""
