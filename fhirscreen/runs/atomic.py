"""Durable writes: a file or a symlink appears whole under its final name, or not at all.

Each write goes to a temporary name in the same directory, is flushed to disk (fsync), and is then
renamed over the final name; the directory is fsynced so that the rename itself survives a power cut.
A process killed at any point leaves either the old file or the new one, and at worst a hidden
temporary file that the next run removes (``TEMP_PREFIX``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# Every temporary name starts with this prefix, so that leftovers of a killed run are easy to find.
TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """Make renames and new entries in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(directory: Path, name: str) -> Path:
    return directory / f"{TEMP_PREFIX}{os.getpid()}-{name}"


# A file's content: text, bytes, or text in pieces (a page rendered as it is written, never whole).
Content = bytes | str | Iterable[str]


def write_file(path: Path, data: Content, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically and durably (outputs are shared with the study team: 0644)."""
    tmp = _temp_name(path.parent, path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            if isinstance(data, (bytes, str)):
                _write_all(fd, data.encode("utf-8") if isinstance(data, str) else data)
            else:
                with os.fdopen(fd, "wb", buffering=1 << 20, closefd=False) as out:
                    for piece in data:
                        out.write(piece.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _write_all(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def point_symlink(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` (relative text), replacing what was there in one rename."""
    tmp = _temp_name(link.parent, link.name)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)
