"""The runbook store: one database (SQLite by default, PostgreSQL in production) and one module per
set of tables. Each table module exports its own ``SCHEMA``; :mod:`runbook.store.schema` lists them."""
