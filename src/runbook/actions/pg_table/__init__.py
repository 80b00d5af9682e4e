"""A database table used as a queue (StarForge ``queue_jobs``, Attune ``attune.execution``)."""
