"""Reading a sweep's result table for a later stage (calibration, cell models, fits)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from charact.errors import UserError

if TYPE_CHECKING:
    import pandas as pd


def table_path(path: str | Path) -> Path:
    """A table file as given, or a sweep folder's ``table.parquet``."""
    p = Path(path)
    return p / "table.parquet" if p.is_dir() else p


def read_table(path: str | Path, what: str, required: Iterable[str] = (),
               hint: str = "") -> tuple[Path, pd.DataFrame]:
    """``(file, table)`` of a Parquet or CSV table, or of a sweep folder's table.parquet.

    ``what`` names the table in the one-line UserError raised when it is missing
    (followed by ``hint``, e.g. the command that makes it), unreadable, or lacks one of the
    ``required`` columns.
    """
    import pandas as pd

    p = table_path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}{hint}")
    try:
        df = pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise UserError(f"{p}: not a readable {what} ({type(exc).__name__})") from None
    missing = sorted(set(required) - set(df.columns))
    if missing:
        raise UserError(f"{p}: not usable as {what}: no column {', '.join(missing)}")
    return p, df
