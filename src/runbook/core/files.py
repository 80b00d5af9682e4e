"""Every file the product writes lives under the data directory, and nowhere else.

Dumps, definitions backups and postmortem drafts hold production data. A step parameter may name
the file, and parameters come from whoever can start a run (the Prefect UI, the API, ``runbook run
-p``), so a name is only ever a *relative* path inside one folder of the data directory:

- absolute paths, ``..`` and empty components are refused (:class:`UnsafePath`);
- every folder on the way is opened with ``O_NOFOLLOW`` relative to its parent's descriptor, so a
  symlink planted anywhere in the path cannot redirect the write (no check-then-open race);
- folders are created 0700 and files 0600, written to a temporary name and renamed into place, so
  a file at the final name is always whole;
- an existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

DIR_MODE = 0o700
FILE_MODE = 0o600


class UnsafePath(ValueError):
    """A path that would leave its folder, follow a symlink, or replace a file without leave."""


def data_dir(env: dict[str, str] | None = None) -> Path:
    """The user's runbook data directory (``RUNBOOK_HOME``, default ``~/.runbook``)."""
    e = os.environ if env is None else env
    return Path(e.get("RUNBOOK_HOME") or Path.home() / ".runbook")


def relative_parts(name: str | os.PathLike[str]) -> tuple[str, ...]:
    """The components of a relative path that stays inside its folder; else :class:`UnsafePath`."""
    text = os.fspath(name)
    if not text or "\x00" in text:
        raise UnsafePath("a file name must be a non-empty relative path")
    path = PurePosixPath(text)
    if path.is_absolute() or text.startswith("~"):
        raise UnsafePath(f"{text!r} is not a relative path inside the runbook data directory")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if not parts or any(p == ".." for p in parts):
        raise UnsafePath(f"{text!r} leaves its folder ('..' is not allowed)")
    return parts


def ensure_private_root(root: Path) -> Path:
    """Create ``root`` (and parents) 0700; tighten it to 0700 when it exists and is ours."""
    root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{root} is a symlink; refusing to write through it")
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(root, DIR_MODE)
    return root


@contextlib.contextmanager
def _open_dir(root: Path, parts: tuple[str, ...]) -> Iterator[int]:
    """A descriptor for ``root/parts...``, made 0700 where missing, never through a symlink."""
    fd = os.open(ensure_private_root(root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            try:
                os.mkdir(part, DIR_MODE, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(f"{part!r} in the path is a symlink or not a folder") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def write_private(
    root: Path, name: str | os.PathLike[str], data: bytes | Iterator[bytes], *, overwrite: bool = False
) -> Path:
    """Write ``data`` to ``root/name`` atomically, 0600, refusing symlinks and paths outside ``root``.

    ``data`` may be an iterator of chunks (a table dump streams). Returns the final path."""
    parts = relative_parts(name)
    *folders, filename = parts
    with _open_dir(root, tuple(folders)) as dfd:
        try:
            existing = os.stat(filename, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if stat.S_ISLNK(existing.st_mode) or not stat.S_ISREG(existing.st_mode):
                raise UnsafePath(f"{os.fspath(name)!r} exists and is not a regular file")
            if not overwrite:
                raise FileExistsError(errno.EEXIST, "file exists (set overwrite: true to replace it)", name)
        tmp = f".{filename}.{uuid.uuid4().hex[:8]}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray):
                    out.write(data)
                else:
                    for chunk in data:
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, filename, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    return root.joinpath(*parts)


def read_private(root: Path, name: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The bytes of the regular file ``root/name`` (a relative name, no ``..``, no symlink anywhere on
    the way); :class:`UnsafePath` for anything else, FileNotFoundError when it is not there, ValueError
    when it is larger than ``max_bytes``."""
    parts = relative_parts(name)
    *folders, filename = parts
    with _open_dir(root, tuple(folders)) as dfd:
        try:
            fd = os.open(filename, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{os.fspath(name)!r} is a symlink; refusing to read through it") from None
            raise
        with os.fdopen(fd, "rb") as src:
            info = os.fstat(src.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnsafePath(f"{os.fspath(name)!r} is not a regular file")
            data = src.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{os.fspath(name)!r} is larger than {max_bytes} bytes")
    return data


def private_dir(root: Path, name: str | os.PathLike[str]) -> Path:
    """Make ``root/name`` (0700, no symlinks on the way) and return it."""
    parts = relative_parts(name)
    with _open_dir(root, parts):
        pass
    return root.joinpath(*parts)
