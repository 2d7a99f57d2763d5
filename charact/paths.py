"""Where the shipped data folders are, in a source checkout and in an installed wheel."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    # A source checkout (or editable install) keeps netlists/ and models/ beside charact/;
    # a wheel ships them as the subpackages charact.netlists and charact.models.
    local = _REPO_ROOT / name
    if (_REPO_ROOT / "pyproject.toml").is_file() and local.is_dir():
        return local
    return Path(str(importlib.resources.files(f"charact.{name}")))


def netlists_dir() -> Path:
    """The folder of SPICE templates and technology files."""
    return _data_dir("netlists")


def models_dir() -> Path:
    """The folder of shipped (reference) lookup models."""
    return _data_dir("models")
