"""Fitting sweep tables into lookup models.

* :func:`fit_error_model`: a column-conversion table (``code_ideal``, ``code`` per row) into
  a ``code_error`` model, one smoothed P(code | code_ideal) table per PVT point, plus, when
  the rows say which physical column converted them (``seed, die, col``), the per-column
  static part and the per-conversion table (:mod:`charact.lookup.static_fit`).
* :func:`fit_pvt_table`: any per-sample table with ``corner, vdd, temp`` into a
  ``pvt_table`` model of mean / sigma / count per grid point.
* :func:`read_sweep_folder`: a sweep folder's table and manifest, with the technology's
  nominal conditions and the unit of each column (``charact.tables.read_sweep``).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charact.errors import UserError
from charact.lookup import fileformat as ff
from charact.lookup.error_model import PVT, ErrorModel, table_from_counts
from charact.lookup.estimate import count_matrix
from charact.lookup.pvt_table import CornerGrid, PVTTableModel, grid_axis
from charact.tables import SweepTable, manifest_vdd_nominal, read_sweep

PVT_COLUMNS = ("corner", "vdd", "temp")
CODE_COLUMNS = ("code_ideal", "code")
#: a physical column: the die's stream seed, the die (-1: nominal devices), the column
COLUMN_ID = ("seed", "die", "col")
# Numeric columns that describe how a row was made, never a measurement.
BOOKKEEPING = frozenset({
    "vdd", "temp", "sample", "seed", "die", "mc_seed", "job", "job_id", "key", "index", "row",
    "attempt", "elapsed", "runtime", "wall_time", "mac_ideal", "code_ideal", "code",
})
NOMINAL_CORNERS = ("nom", "tt", "typ", "typical")
NOMINAL_TEMP = 27.0


def _require_columns(table: pd.DataFrame, cols: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise UserError(f"{what}: missing column(s) {', '.join(missing)}; it has: "
                        f"{', '.join(map(str, table.columns))}")


def check_value_columns(value_columns: list[str] | None,
                        numeric: list[str]) -> list[str]:
    """The value columns to fit: those asked for (all ``numeric`` ones by default), each
    a numeric measurement column, at least one."""
    if value_columns is None:
        value_columns = numeric
    bad = [c for c in value_columns if c not in numeric]
    if bad:
        raise UserError(f"not a numeric measurement column: {', '.join(bad)}; available: "
                        f"{', '.join(numeric) or 'none'}")
    if not value_columns:
        raise UserError("no numeric measurement column to fit in this table")
    return list(value_columns)


def ok_rows(table: pd.DataFrame) -> pd.Series:
    if "status" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["status"].astype(str).str.lower().eq("ok")


def pvt_keys(table: pd.DataFrame) -> pd.DataFrame:
    """corner/vdd/temp with float noise removed, so 0.8 and 0.8000000001 group together."""
    out = pd.DataFrame({"corner": table["corner"].astype(str),
                        "vdd": np.round(pd.to_numeric(table["vdd"], errors="coerce"), 9),
                        "temp": np.round(pd.to_numeric(table["temp"], errors="coerce"), 9)},
                       index=table.index)
    if out[["vdd", "temp"]].isna().any().any():
        raise UserError("table: vdd and temp must be numbers in every row")
    return out


def choose_nominal(points: list[PVT], nominal_vdd: float | None = None,
                   nominal_temp: float | None = None) -> tuple[PVT, str]:
    """The point a caller gets by default, and the rule that picked it: the nominal
    corner, the temperature nearest ``nominal_temp`` (27 C when unknown), the VDD nearest
    ``nominal_vdd`` (the median when unknown)."""
    if len(points) == 1:
        return points[0], "the only point"
    named = [p for p in points if p.corner.lower() in NOMINAL_CORNERS] or points
    t_nom = NOMINAL_TEMP if nominal_temp is None else nominal_temp
    temp = min({p.temp for p in named}, key=lambda t: (abs(t - t_nom), t))
    named = [p for p in named if p.temp == temp]
    vdds = sorted({p.vdd for p in named})
    target = nominal_vdd if nominal_vdd is not None else vdds[(len(vdds) - 1) // 2]
    vdd = min(vdds, key=lambda v: (abs(v - target), v))
    pick = next(p for p in named if p.vdd == vdd)
    why = "vdd nearest the technology's nominal" if nominal_vdd is not None else "median vdd"
    return pick, f"nominal corner, temperature nearest {t_nom:g} C, {why}"


def _column_keys(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``(column id, nominal)`` per row: an integer per distinct (seed, die, col), and
    whether the row's die is nominal devices (die < 0)."""
    parts = [table[c].astype(str).to_numpy() for c in COLUMN_ID]
    key = np.char.add(np.char.add(np.char.add(parts[0], "|"), np.char.add(parts[1], "|")),
                      parts[2])
    _, ids = np.unique(key, return_inverse=True)
    die = pd.to_numeric(table["die"], errors="coerce").to_numpy()
    return (pd.Series(ids, index=table.index), pd.Series(~(die >= 0), index=table.index))


def fit_error_model(table: pd.DataFrame, n_codes: int, provenance: dict,
                    smoothing: float = 2.0, nominal_vdd: float | None = None,
                    nominal_temp: float | None = None, structured: bool | None = None,
                    fallback: bool = False) -> ErrorModel:
    """One smoothed code-error table (plus Gaussian fit) per PVT point of a column sweep,
    and per point the per-column static part and per-conversion table when structured.

    Rows whose ``status`` is not "ok" or whose ``code`` is missing are excluded and counted;
    converted codes beyond 0..n_codes-1 (a conversion that never crossed) are clipped to
    the end codes and counted. Ideal codes never observed at a point get an interpolated
    distribution and are listed in ``provenance["interpolated_codes"]``.

    ``structured``: None fits the static part when the table has ``seed, die, col``; True
    requires them. A point whose columns are too thin for it (fewer than 3 conversions, or
    fewer than 2 columns with mismatch) is a UserError, unless ``fallback`` (then that
    point keeps only the pooled table and the reason goes to the provenance); False fits
    only the pooled tables, as schema 1 models were.
    """
    _require_columns(table, PVT_COLUMNS + CODE_COLUMNS, "column sweep table")
    has_ids = all(c in table.columns for c in COLUMN_ID)
    if structured is None:
        structured = has_ids
    if structured and not has_ids:
        raise UserError(f"column sweep table: a per-column fit needs the columns "
                        f"{', '.join(COLUMN_ID)} (which physical column converted each row); "
                        f"missing {', '.join(c for c in COLUMN_ID if c not in table.columns)}; "
                        "fit the pooled table without it (charact fit --unstructured)")
    if not isinstance(n_codes, (int, np.integer)) or n_codes < 2:
        raise UserError(f"n_codes must be an integer >= 2, got {n_codes!r}")
    keys = pvt_keys(table)
    code = pd.to_numeric(table["code"], errors="coerce")
    ideal = pd.to_numeric(table["code_ideal"], errors="coerce")
    if ideal.isna().any() or (ideal != np.round(ideal)).any():
        raise UserError("column sweep table: code_ideal must be an integer in every row")
    if len(ideal) and (ideal.min() < 0 or ideal.max() >= n_codes):
        raise UserError(f"column sweep table: code_ideal spans {int(ideal.min())}.."
                        f"{int(ideal.max())}, outside 0..{n_codes - 1} (wrong --n-codes?)")
    usable = ok_rows(table) & code.notna()
    has_mac = "mac_ideal" in table.columns
    mac = pd.to_numeric(table["mac_ideal"], errors="coerce") if has_mac else None

    column_id, nominal_row = _column_keys(table) if structured else (None, None)
    structure: dict[PVT, Any] = {}
    static_info: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    tables = {}
    counts_info: dict[str, Any] = {}
    interp_info: dict[str, list[int]] = {}
    quality: dict[str, Any] = {}
    clipped_total = 0
    for (corner, vdd, temp), idx in keys.groupby(list(PVT_COLUMNS), sort=True).groups.items():
        pvt = PVT(str(corner), float(vdd), float(temp))
        ok = usable.loc[idx]
        rows = idx[ok.to_numpy()]
        raw = code.loc[rows].to_numpy()
        clipped = int(((raw < 0) | (raw > n_codes - 1)).sum())
        clipped_total += clipped
        out = np.clip(np.round(raw), 0, n_codes - 1).astype(np.int64)
        if out.size == 0:
            raise UserError(f"no successful conversion at {pvt.label()}: all {len(idx)} rows "
                            "failed; refit without this point or rerun the sweep")
        counts = count_matrix(ideal.loc[rows].to_numpy().astype(np.int64), out, int(n_codes))
        mac_lo = mac_hi = None
        if mac is not None:
            by_code = pd.DataFrame({"i": ideal.loc[idx].astype(int), "m": mac.loc[idx]})
            agg = by_code.groupby("i")["m"].agg(["min", "max"]).reindex(range(n_codes))
            mac_lo, mac_hi = agg["min"].to_numpy(), agg["max"].to_numpy()
        t = table_from_counts(counts, smoothing, mac_lo, mac_hi)
        tables[pvt] = t
        label = pvt.label()
        if structured:
            fitted = _fit_point_structure(ideal.loc[rows].to_numpy().astype(np.int64), out,
                                          column_id.loc[rows].to_numpy(),
                                          nominal_row.loc[rows].to_numpy(), int(n_codes),
                                          smoothing, label, fallback)
            if isinstance(fitted, str):
                skipped[label] = fitted
            else:
                structure[pvt] = fitted[:2]
                static_info[label] = fitted[2]
        counts_info[label] = {"ok": int(out.size), "failed": int(len(idx) - out.size),
                              "clipped": clipped}
        interp_info[label] = [int(i) for i in np.flatnonzero(t.interpolated)]
        seen = t.count > 0
        quality[label] = {
            "mean_abs_error": float(np.abs(t.mean_error()[seen]).mean()),
            "mean_sigma": float(t.sigma()[seen].mean()),
            "ks_max": _nanmax(t.fit["ks"]), "ks_mean": _nanmean(t.fit["ks"]),
            "loglik_mean": _nanmean(t.fit["loglik"]),
        }
    nominal, rule = choose_nominal(list(tables), nominal_vdd, nominal_temp)
    prov = ff.default_provenance(**provenance)
    prov.update({
        "fit": {"kind": "code_error", "n_codes": int(n_codes), "smoothing": smoothing,
                "smoothing_rule": "discretized Gaussian prior from ideal codes within +-2, "
                                  "mixed as pseudo-samples (models/README.md)",
                "parametric_family": "discretized Gaussian per ideal code",
                "nominal_rule": rule},
        "sample_counts": counts_info,
        "rows_total": int(len(table)),
        "rows_failed": int((~usable).sum()),
        "codes_clipped": clipped_total,
        "interpolated_codes": interp_info,
        "fit_quality": quality,
    })
    prov["fit"]["structured"] = bool(structure)
    if structured:
        prov["fit"]["static_model"] = (
            "per column: code - code_ideal = b + g (code_ideal - center) by least squares; "
            "(b, g) across columns: mean and covariance by the method of moments (sample "
            "covariance minus the mean sampling covariance), clipped to PSD; per-conversion "
            "table: the integer error after floor(code_ideal + e + u), EM-deconvolved "
            "(models/README.md)")
        prov["static_fit"] = static_info
        if skipped:
            prov["static_skipped"] = skipped
    return ErrorModel(tables, prov, nominal=nominal, structure=structure)


def _fit_point_structure(ideal: np.ndarray, out: np.ndarray, column: np.ndarray,
                         nominal: np.ndarray, n_codes: int, smoothing: float, label: str,
                         fallback: bool) -> tuple | str:
    """``(static, residual, stats)`` of one point, or with ``fallback`` the reason it has
    none. Nominal-device rows are left out where rows with mismatch exist."""
    from charact.lookup.static_fit import fit_structure

    nominal_only = bool(nominal.all())
    keep = np.ones(ideal.size, dtype=bool) if nominal_only else ~nominal
    try:
        static, residual = fit_structure(ideal[keep], out[keep], column[keep], nominal_only,
                                         n_codes, smoothing, label)
    except UserError as exc:
        if not fallback:
            raise
        return str(exc)
    static = replace(static, stats=dict(static.stats, nominal_rows_excluded=int((~keep).sum())))
    return static, residual, static.stats


def _nanmax(x: np.ndarray) -> float | None:
    return float(np.nanmax(x)) if np.any(np.isfinite(x)) else None


def _nanmean(x: np.ndarray) -> float | None:
    return float(np.nanmean(x)) if np.any(np.isfinite(x)) else None


def measurement_columns(table: pd.DataFrame,
                        exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Numeric columns that are measurements (not PVT, seeds or bookkeeping)."""
    skip = BOOKKEEPING | set(exclude)
    return [c for c in table.columns if c not in skip and c not in ("corner", "status")
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(
                table[c])]


def fit_pvt_table(table: pd.DataFrame, value_columns: list[str] | None, provenance: dict,
                  by: list[str] | None = None, units: dict[str, str] | None = None
                  ) -> PVTTableModel:
    """Mean, sigma (ddof=1) and count per corner and (vdd, temp) grid point.

    ``value_columns`` None means every numeric measurement column. ``by`` names extra
    condition columns (a comparator's common mode ``vcm``, say): each of their distinct
    values gets its own entry, named ``"<value>@<col>=<v>"``. Failed rows (``status`` not
    "ok") are excluded and counted; NaN values are skipped per column.
    """
    _require_columns(table, PVT_COLUMNS, "table")
    by = list(by or [])
    _require_columns(table, by, "table")
    if set(by) & set(PVT_COLUMNS):
        raise UserError(f"--by cannot name {', '.join(sorted(set(by) & set(PVT_COLUMNS)))}: "
                        "corner, vdd and temp are the table's grid already")
    value_columns = check_value_columns(value_columns, measurement_columns(table, by))
    ok = ok_rows(table)
    keys = pvt_keys(table)
    data = pd.concat([keys, table[by + list(value_columns)]], axis=1)[ok.to_numpy()]
    if data.empty:
        raise UserError(f"no successful row in the table ({len(table)} rows, all failed)")
    # one entry per (value, condition) combination
    conds: list[tuple[tuple, str]] = [((), "")]
    if by:
        combos = data[by].drop_duplicates().sort_values(by).itertuples(index=False)
        conds = [(tuple(c), "@" + ",".join(f"{b}={v:g}" if isinstance(v, (int, float))
                                           else f"{b}={v}" for b, v in zip(by, c, strict=True)))
                 for c in combos]
    names = [f"{v}{suffix}" for v in value_columns for _, suffix in conds]
    grids = {}
    counts_info: dict[str, Any] = {}
    for corner, sub in data.groupby("corner", sort=True):
        vdd_axis = grid_axis(sub["vdd"].to_numpy())
        temp_axis = grid_axis(sub["temp"].to_numpy())
        shape = (vdd_axis.size, temp_axis.size)
        vi = np.searchsorted(vdd_axis, sub["vdd"].to_numpy())
        ti = np.searchsorted(temp_axis, sub["temp"].to_numpy())
        stats: dict[str, dict[str, np.ndarray]] = {}
        for col in value_columns:
            for cond, suffix in conds:
                sel = np.ones(len(sub), dtype=bool)
                for b, v in zip(by, cond, strict=True):
                    sel &= (sub[b] == v).to_numpy()
                vals = pd.to_numeric(sub[col], errors="coerce").to_numpy(dtype=np.float64)
                sel &= np.isfinite(vals)
                frame = pd.DataFrame({"i": vi[sel], "j": ti[sel], "x": vals[sel]})
                agg = frame.groupby(["i", "j"])["x"].agg(["mean", "std", "count"])
                st = {s: np.full(shape, np.nan) for s in ("mean", "sigma")}
                st["count"] = np.zeros(shape)
                ii = agg.index.get_level_values(0).to_numpy()
                jj = agg.index.get_level_values(1).to_numpy()
                st["mean"][ii, jj] = agg["mean"].to_numpy()
                st["sigma"][ii, jj] = agg["std"].to_numpy()
                st["count"][ii, jj] = agg["count"].to_numpy()
                stats[f"{col}{suffix}"] = st
        grids[str(corner)] = CornerGrid(vdd_axis, temp_axis, stats)
        counts_info[str(corner)] = {"ok": int(len(sub)),
                                    "failed": int((~ok & (keys["corner"] == corner)).sum())}
    prov = ff.default_provenance(**provenance)
    prov.update({
        "fit": {"kind": "pvt_table", "values": list(value_columns), "by": by,
                "stats": "mean, sample sigma (ddof=1), count per grid point",
                "interpolation": "linear over (vdd, temp) per corner "
                                 "(scipy RegularGridInterpolator)"},
        "sample_counts": counts_info,
        "rows_total": int(len(table)),
        "rows_failed": int((~ok).sum()),
    })
    model_units = {n: (units or {}).get(n.split("@")[0], "") for n in names}
    return PVTTableModel(grids, prov, {k: v for k, v in model_units.items() if v})


def read_sweep_folder(sweep_dir: str | Path) -> SweepTable:
    """The sweep a fit reads: a sweep folder (or its table file) with its manifest; a
    UserError says what is missing or unreadable."""
    return read_sweep(sweep_dir, what="sweep folder", need_manifest=True)


def load_sweep(sweep_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """``(table, manifest)`` of a sweep folder (see :func:`read_sweep_folder`)."""
    sweep = read_sweep_folder(sweep_dir)
    return sweep.table, sweep.manifest


def provenance_from_sweep(sweep: SweepTable | str | Path, manifest: dict | None = None
                          ) -> dict:
    """The model provenance a sweep contributes: its manifest's spec, block and template
    hashes, technology, simulator version and seed, plus a hash of the table file the
    model was fitted from (per-job timings are summed, not copied). ``sweep`` is what
    :func:`read_sweep_folder` returned, or a folder with its ``manifest``."""
    if isinstance(sweep, SweepTable):
        d, table_file, manifest = sweep.folder, sweep.path, sweep.manifest
    else:
        d = Path(sweep)
        table_file = d / "table.parquet" if (d / "table.parquet").is_file() \
            else d / "table.csv"
    manifest = manifest or {}
    sweep: dict[str, Any] = {
        "dir": str(d), "table_sha256": hashlib.sha256(table_file.read_bytes()).hexdigest(),
    }
    # the sweep's own stamp, kept apart from the model's created/command
    for key in ("sweep", "created", "command", "spec_path", "samples", "jobs"):
        if key in manifest:
            sweep["name" if key == "sweep" else key] = manifest[key]
    prov: dict[str, Any] = {"sweep": sweep}
    for key in ("spec", "technology", "block", "simulator", "ngspice_version",
                "code_revision", "seed", "template_hashes", "templates"):
        if key in manifest:
            prov[key] = manifest[key]
    sim = manifest.get("simulator")
    if "ngspice_version" not in prov and isinstance(sim, dict) and sim.get("version"):
        prov["ngspice_version"] = sim["version"]
    timing = manifest.get("timing") or manifest.get("timings")
    if isinstance(timing, dict):
        for key in ("wall_last_run", "simulator_total", "workers"):
            if isinstance(timing.get(key), (int, float)):
                sweep[f"timing_{key}"] = timing[key]
        per_job = timing.get("per_job", timing)
        secs = [v.get("wall") if isinstance(v, dict) else v for v in per_job.values()]
        secs = [v for v in secs if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if secs:
            sweep["job_seconds_total"] = float(sum(secs))
            sweep["jobs_timed"] = len(secs)
    return ff.jsonable(prov)


def tech_nominal_vdd(manifest: dict) -> float | None:
    """The technology's nominal VDD if the manifest records it."""
    return manifest_vdd_nominal(manifest)
