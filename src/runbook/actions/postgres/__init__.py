"""PostgreSQL: read-only queries on least-privilege roles, activity, bounded execute, table dumps.
``client`` alone imports psycopg."""
