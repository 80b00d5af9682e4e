"""The local PostgreSQL as the tests reach it directly (outside the code under test): trust auth
as root on the ``test`` database, as the machine and ``scripts/services.sh`` set it up."""

from __future__ import annotations

ADMIN_URL = "postgresql://root@127.0.0.1:5432/test"
