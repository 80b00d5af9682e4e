"""Approvers files for tests, in the format runbook reads (people with typed identities, roles).

Every person gets a Unix identity equal to their name (``unix:<name>``), so a test may vote for
them on the CLI channel through the decision service; ``os_user`` maps one person to the user
running the tests, for tests that drive the real ``runbook approve`` command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import yaml


def approvers_yaml(
    roles: Mapping[str, Iterable[str]],
    *,
    extra: Mapping[str, Iterable[str]] | None = None,
    os_user: tuple[str, str] | None = None,
) -> str:
    """``roles`` maps role → people; ``extra`` adds identities (``U0ALICE``, ``a@b``) to people;
    ``os_user=(person, login)`` gives that person the login of the process running the tests."""
    people: dict[str, list[str]] = {}
    for members in roles.values():
        for person in members:
            people.setdefault(person, [f"unix:{person}"])
    for person, ids in (extra or {}).items():
        people.setdefault(person, [f"unix:{person}"]).extend(ids)
    if os_user is not None:
        person, login = os_user
        people[person] = [i for i in people.get(person, []) if not i.startswith("unix:")] + [f"unix:{login}"]
    return yaml.safe_dump({"people": people, "roles": {r: list(m) for r, m in roles.items()}})


def current_login() -> str:
    from runbook.approvals.policy import operating_system_user

    return operating_system_user()
