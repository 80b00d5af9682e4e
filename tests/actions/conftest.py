"""Fixtures shared by the backend action tests.

``ctx`` is an action context over the local services' settings (modules that need a service mark
themselves with its ``*_available`` fixture; modules with special connections define their own
``ctx``). ``admin`` is a direct autocommit PostgreSQL connection for setting up tables and for
checking results through a connection that is not the action's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runbook.actions import ActionContext, Connections
from runbook.core.settings import Settings
from tests.support.postgres import ADMIN_URL


@pytest.fixture
def ctx(settings: Settings) -> Iterator[ActionContext]:
    connections = Connections(settings)
    yield ActionContext(connections)
    connections.close()


@pytest.fixture
def admin(postgres_available: None) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        yield conn
