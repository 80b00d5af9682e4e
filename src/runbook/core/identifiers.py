"""SQL identifiers as typed values: the only way a parameter may name a table.

A playbook never pastes a parameter into SQL text; it names the table with a ``type: identifier``
param whose value must be a plain, optionally schema-qualified name (``attune.queue_stats``). The
pattern is deliberately narrower than what PostgreSQL accepts: no quotes, no spaces, no dots beyond
one, no ``%``, no unicode look-alikes. The database action then resolves the name with
``to_regclass`` and quotes what the catalog returns (``psycopg.sql.Identifier``), so even a name that
passed this check never reaches the server as text.
"""

from __future__ import annotations

import re

_PART = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
IDENTIFIER_PATTERN = rf"^{_PART}(?:\.{_PART})?$"
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)


def check_identifier(value: object) -> str:
    """``value`` if it is a plain ``name`` or ``schema.name``; ValueError (saying why) otherwise."""
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a plain table name: use name or schema.name (letters, digits and _,"
            " starting with a letter or _; no quotes, spaces or other characters)"
        )
    return value
