"""Where the shipped data folders are, in a source checkout and in an installed wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    # A source checkout (or editable install) keeps netlists/ and models/ beside charact/;
    # a wheel ships them as the subpackages charact.netlists and charact.models.
    local = _REPO_ROOT / name
    if (_REPO_ROOT / "pyproject.toml").is_file() and local.is_dir():
        return local
    # The data folders hold no __init__.py (namespace packages): take their one location.
    spec = importlib.util.find_spec(f"charact.{name}")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"charact.{name} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def netlists_dir() -> Path:
    """The folder of SPICE templates and technology files."""
    return _data_dir("netlists")


def models_dir() -> Path:
    """The folder of shipped (reference) lookup models."""
    return _data_dir("models")
