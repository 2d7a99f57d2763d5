"""Reading a sweep's result table for a later stage (calibration, cell models, fits).

A sweep folder (``charact.sweep``) holds ``table.parquet`` (or ``table.csv``) and
``manifest.json``. :func:`read_sweep` is the one reader of that contract: it returns a
:class:`SweepTable` with the table, the manifest and what the manifest says about it
(the block that made it, the technology, its nominal VDD and temperature, the unit of
each column), and refuses in one line (a UserError) a missing folder, an unreadable
table or manifest, missing columns, or a sweep of another block. Folders written before
the manifest carried nominal conditions and units still read: those fields are then
None and ``{}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charact.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

TABLE_NAMES = ("table.parquet", "table.csv")
#: Units of the operating-point columns every sweep table has.
PVT_UNITS = {"vdd": "V", "temp": "degC"}


@dataclass(frozen=True, eq=False)
class SweepTable:
    """One sweep's table and what its manifest says about it."""

    path: Path  # the table file read
    table: pd.DataFrame
    manifest: dict[str, Any]  # manifest.json, else the table's embedded provenance, else {}
    block: str | None  # the block that made the table; None when unrecorded
    technology: str | None
    vdd_nominal: float | None  # the technology's nominal supply (V); None in old folders
    temp_nominal: float | None  # degC; None in old folders
    units: dict[str, str]  # column -> unit; {} in old folders

    @property
    def folder(self) -> Path:
        return self.path.parent

    def unit(self, column: str) -> str:
        """The unit of ``column``, '' when the manifest does not give one."""
        return self.units.get(column, "")


def table_path(path: str | Path) -> Path:
    """A table file as given, or a sweep folder's ``table.parquet``."""
    p = Path(path)
    return p / "table.parquet" if p.is_dir() else p


def _locate(path: str | Path, what: str, hint: str) -> Path:
    """The table file of a folder (table.parquet, else table.csv) or the file given."""
    p = Path(path)
    if p.is_dir():
        for name in TABLE_NAMES:
            if (p / name).is_file():
                return p / name
        raise UserError(f"{p}: no table.parquet (or table.csv), not a {what}{hint}")
    if not p.is_file():
        raise UserError(f"{what} not found: {p}{hint}")
    return p


def _read_frame(p: Path, what: str) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for damaged files
        fmt = "CSV" if p.suffix == ".csv" else "Parquet"
        raise UserError(f"{p}: unreadable {fmt} table ({type(exc).__name__}), not a "
                        f"readable {what}") from None


def _check_columns(p: Path, df: pd.DataFrame, required: Iterable[str], what: str) -> None:
    missing = sorted(set(required) - set(df.columns))
    if missing:
        raise UserError(f"{p}: not usable as {what}: no column {', '.join(missing)}")


def read_table(path: str | Path, what: str, required: Iterable[str] = (),
               hint: str = "") -> tuple[Path, pd.DataFrame]:
    """``(file, table)`` of a Parquet or CSV table, or of a sweep folder's table.

    ``what`` names the table in the one-line UserError raised when it is missing
    (followed by ``hint``, e.g. the command that makes it), unreadable, or lacks one of the
    ``required`` columns. The manifest is not read: :func:`read_sweep` reads both.
    """
    p = _locate(path, what, hint)
    df = _read_frame(p, what)
    _check_columns(p, df, required, what)
    return p, df


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """A sweep folder's ``manifest.json``, None when it has none; a UserError when it is
    unreadable or not a JSON object."""
    mpath = Path(folder) / "manifest.json"
    if not mpath.is_file():
        return None
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{mpath}: the manifest must be a JSON object")
    return manifest


def _embedded_provenance(p: Path) -> dict[str, Any] | None:
    """The provenance ``charact.provenance.write_table`` stored with a table file."""
    try:
        if p.suffix == ".csv":
            side = p.with_suffix(".provenance.json")
            data = json.loads(side.read_text()) if side.is_file() else None
        else:
            from charact.provenance import read_parquet_provenance

            data = read_parquet_provenance(p) or None
    except Exception as exc:  # a damaged footer or sidecar
        raise UserError(f"{p}: unreadable provenance ({type(exc).__name__})") from None
    return data if isinstance(data, dict) else None


def _number(d: Any, *keys: str) -> float | None:
    if isinstance(d, dict):
        for key in keys:
            v = d.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
    return None


def manifest_block(manifest: dict[str, Any]) -> str | None:
    """The block name a manifest records (``block.name``, else the spec's ``block``)."""
    block = manifest.get("block")
    if isinstance(block, dict) and isinstance(block.get("name"), str):
        return block["name"]
    if isinstance(block, str):
        return block
    spec = manifest.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("block"), str):
        return spec["block"]
    return None


def manifest_technology(manifest: dict[str, Any]) -> str | None:
    tech = manifest.get("technology")
    if isinstance(tech, dict) and isinstance(tech.get("name"), str):
        return tech["name"]
    spec = manifest.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("technology"), str):
        return spec["technology"]
    return None


def manifest_vdd_nominal(manifest: dict[str, Any]) -> float | None:
    """The technology's nominal VDD (``technology.vdd_nominal``; older manifests and
    hand-written ones may say ``nominal_vdd`` or ``vdd``)."""
    return _number(manifest.get("technology"), "vdd_nominal", "nominal_vdd", "vdd")


def manifest_units(manifest: dict[str, Any]) -> dict[str, str]:
    units = manifest.get("units")
    if not isinstance(units, dict):
        return {}
    return {str(k): v for k, v in units.items() if isinstance(v, str) and v}


def _expected(block: str | Iterable[str] | None) -> tuple[str, ...]:
    if block is None:
        return ()
    return (block,) if isinstance(block, str) else tuple(block)


def check_block(found: str | None, block: str | Iterable[str] | None, where: Path,
                what: str) -> None:
    """Refuse a sweep made by another block than ``block`` (one name or several). A sweep
    that does not record its block (a hand-made table) is accepted."""
    expected = _expected(block)
    if expected and found is not None and found not in expected:
        raise UserError(f"{where}: made by block {found}, not usable as {what} (needs "
                        f"block {' or '.join(expected)})")


def read_sweep(path: str | Path, need_columns: Iterable[str] = (),
               block: str | Iterable[str] | None = None, what: str = "sweep table",
               hint: str = "", need_manifest: bool = False) -> SweepTable:
    """Read a sweep folder (or its ``table.parquet`` / ``table.csv``) with its manifest.

    The manifest is the folder's ``manifest.json``, else the provenance stored in the
    table file, else ``{}`` (refused when ``need_manifest``). ``block`` names the block(s)
    whose sweeps the caller accepts; a sweep recording another block is refused. ``what``
    names the table in the one-line UserError (``hint`` follows a not-found message,
    e.g. the command that makes the table).
    """
    p = _locate(path, what, hint)
    df = _read_frame(p, what)
    manifest = read_manifest(p.parent) if p.name in TABLE_NAMES else None
    if manifest is None:
        manifest = _embedded_provenance(p)
    if manifest is None:
        if need_manifest:
            raise UserError(f"{p.parent}: no manifest.json; the table's provenance is "
                            "unknown")
        manifest = {}
    found = manifest_block(manifest)
    check_block(found, block, p.parent if p.name in TABLE_NAMES else p, what)
    _check_columns(p, df, need_columns, what)
    return SweepTable(
        path=p, table=df, manifest=manifest, block=found,
        technology=manifest_technology(manifest),
        vdd_nominal=manifest_vdd_nominal(manifest),
        temp_nominal=_number(manifest.get("technology"), "temp_nominal"),
        units=manifest_units(manifest))


__all__ = ["PVT_UNITS", "SweepTable", "check_block", "manifest_block", "read_manifest",
           "read_sweep", "read_table", "table_path"]
