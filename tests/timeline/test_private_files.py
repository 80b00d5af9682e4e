"""Issue 12, class 7: the product's own files (the SQLite store, the gateway spool) are private.

The store holds incidents, parameters and decisions; the spool holds parsed webhook deliveries.
Folders are created 0700, files 0600, and a symlink planted where one of them goes is refused,
its target untouched.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runbook.gateway.starter import Spool
from runbook.store.database import Database, StoreError
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_sqlite_store_file_and_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "home" / "store" / "runbook.db"
    store = TimelineStore(open_database(f"sqlite:///{path}"))
    store.start_run("r1", "p", params={"incident": {"title": "secret-ish"}})
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    for extra in path.parent.glob("runbook.db-*"):  # WAL and shared memory follow the file's mode
        assert mode(extra) == 0o600, extra


def test_existing_world_readable_store_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "runbook.db"
    path.touch()
    path.chmod(0o644)
    open_database(f"sqlite:///{path}")
    assert mode(path) == 0o600


def test_symlinked_store_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "runbook.db"
    link.symlink_to(victim)
    with pytest.raises(StoreError, match="cannot be opened safely"):
        Database(f"sqlite:///{link}")
    assert victim.read_text() == "precious\n" and mode(victim) == 0o644


def test_spool_files_are_private_and_never_follow_symlinks(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "gateway-spool" / "abc"
    spool = Spool(folder)
    spool.put({"delivery_id": "d1"})
    (written,) = folder.glob("*.json")
    assert mode(written) == 0o600 and mode(folder) == 0o700
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    planted = Spool(tmp_path / "home" / "gateway-spool" / "planted")
    planted.folder.symlink_to(victim_dir)
    with pytest.raises(ValueError, match="symlink"):
        planted.put({"delivery_id": "d2"})
    assert list(victim_dir.iterdir()) == []
