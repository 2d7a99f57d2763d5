"""Checks of output paths, made before any work starts.

A command that would fail only when it finally writes (a folder where a file goes, a
file where a folder goes, a read-only folder) would lose the work done before and end in
a traceback; these checks refuse such a path up front, in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from charact.errors import UserError


def _writable(folder: Path) -> bool:
    # access() also answers False on a read-only mount, for root too
    return os.access(folder, os.W_OK | os.X_OK)


def _check_creatable(path: Path, what: str, start: Path) -> None:
    """The nearest existing folder at or above ``start`` is a writable folder."""
    here = start
    while not here.exists():
        if here.parent == here:
            break
        here = here.parent
    if here.exists() and not here.is_dir():
        raise UserError(f"{what} {path}: {here} is a file, not a folder")
    if not _writable(here):
        raise UserError(f"{what} {path}: folder {here} is not writable")


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` can be written as a file (an existing file is replaced)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p}: is a folder, expected a file path")
    _check_creatable(p, what, p.parent if str(p.parent) else Path("."))
    return p


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` is, or can be made, a writable folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {p}: is a file, expected a folder")
    _check_creatable(p, what, p)
    return p


def check_name(name: str, what: str) -> str:
    """A name used as one folder or file name: no separators, no ``..``, not hidden."""
    if not name or name in (".", "..") or name.startswith(".") \
            or not all(c.isalnum() or c in "-_." for c in name):
        raise UserError(f"{what} {name!r} may hold only letters, digits, - _ . (one folder "
                        "name, not a path, not starting with '.')")
    return name


__all__ = ["check_name", "check_output_dir", "check_output_file"]
