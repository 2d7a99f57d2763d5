"""Loading any model file, turning models into tables, writing them with provenance, and
the text summary ``charact show`` prints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charact.lookup import fileformat as ff
from charact.lookup.error_model import QUANTILES, ErrorModel
from charact.lookup.grid_table import GridTableModel
from charact.lookup.pvt_table import PVTTableModel
from charact.provenance import atomic_path

Model = ErrorModel | PVTTableModel | GridTableModel
QUANTILE_COLUMNS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)  # q01 ... q99
PARQUET_PROVENANCE_KEY = b"charact.provenance"


def load_model(path: str | os.PathLike) -> Model:
    """Load a model file of any kind (validated; UserError on any problem)."""
    doc = ff.read_model_document(path)
    if doc.kind == ErrorModel.kind:
        return ErrorModel.from_data(doc.data, doc.provenance, str(path), doc.schema)
    model: PVTTableModel | GridTableModel
    if doc.kind == GridTableModel.kind:
        model = GridTableModel.from_data(doc.data, doc.provenance, str(path))
    else:
        model = PVTTableModel.from_data(doc.data, doc.provenance, str(path))
    model.schema = doc.schema
    return model


def error_table_frame(model: ErrorModel, observed_only: bool = False) -> pd.DataFrame:
    """One row per ideal code per PVT point: count, mean code, mean error, sigma and the
    error quantiles q01..q99 (of converted - ideal), the MAC range mapped to the code when
    known, the Gaussian fit (mu, sigma, KS, log-likelihood) and the ``interpolated`` flag.
    All of these describe the table pooled over columns. A structured point adds its
    parts: ``static_mean_error``/``static_sigma`` (mean and column-to-column sigma of
    b + g (code - center)), ``residual_mean_error``/``residual_sigma`` (the per-conversion
    table) and ``n_columns`` behind the fit (NaN and 0 for a point without them)."""
    frames = []
    for pvt, t in model.items():
        codes = np.arange(t.n_codes)
        nan = np.full(t.n_codes, np.nan)
        df = pd.DataFrame({
            "corner": pvt.corner, "vdd": pvt.vdd, "temp": pvt.temp, "code_ideal": codes,
            "mac_lo": t.mac_lo if t.mac_lo is not None else nan,
            "mac_hi": t.mac_hi if t.mac_hi is not None else nan,
            "count": t.count if t.count is not None else np.zeros(t.n_codes, dtype=np.int64),
            "interpolated": t.interpolated,
            "mean_code": codes + t.mean_error(),
            "mean_error": t.mean_error(),
            "sigma": t.sigma(),
        })
        q = t.quantiles(QUANTILES)
        for i, name in enumerate(QUANTILE_COLUMNS):
            df[name] = q[:, i]
        for key in ("mu", "sigma", "ks", "loglik"):
            df[f"fit_{key}"] = t.fit.get(key, nan)
        part = model.structure(pvt)
        df["structured"] = part is not None
        if part is not None:
            static, residual = part
            df["static_mean_error"] = static.mean_error(codes)
            df["static_sigma"] = static.sigma(codes)
            df["residual_mean_error"] = residual.mean_error()
            df["residual_sigma"] = residual.sigma()
            df["n_columns"] = int(static.stats.get("n_columns", 0))
        else:
            for name in ("static_mean_error", "static_sigma", "residual_mean_error",
                         "residual_sigma"):
                df[name] = nan
            df["n_columns"] = 0
        if observed_only:
            df = df[df["count"] > 0]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def pvt_table_frame(model: PVTTableModel) -> pd.DataFrame:
    """One row per grid point per value: corner, vdd, temp, name, unit, count, mean, sigma."""
    return pd.DataFrame(model.grid_rows())


def _atomic(path: Path, write: Any) -> None:
    with atomic_path(path) as tmp:
        write(str(tmp))


def write_table(df: pd.DataFrame, path: Path, provenance: dict) -> list[Path]:
    """Write ``df`` as CSV or Parquet (by suffix) atomically, with its provenance: a
    ``<name>.provenance.json`` beside a CSV, file-level metadata inside a Parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prov_text = json.dumps(ff.jsonable(provenance), indent=1, sort_keys=True)
    if path.suffix == ".csv":
        side = path.with_suffix(".provenance.json")
        _atomic(path, lambda tmp: df.to_csv(tmp, index=False))
        _atomic(side, lambda tmp: Path(tmp).write_text(prov_text + "\n"))
        return [path, side]
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[PARQUET_PROVENANCE_KEY] = prov_text.encode()
    arrow = arrow.replace_schema_metadata(meta)
    _atomic(path, lambda tmp: pq.write_table(arrow, tmp))
    return [path]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items() if not isinstance(x, dict))
    return str(v)


def summary(model: Model, path: str | os.PathLike) -> str:
    """The text ``charact show`` prints."""
    prov = model.provenance
    schema = getattr(model, "schema", ff.SCHEMA)
    lines = [f"{'model':<17}{path}", f"{'kind':<17}{model.kind}", f"{'schema':<17}{schema}"]
    for key in ("created", "charact_version", "command", "code_revision", "ngspice_version",
                "seed", "source"):
        if key in prov and prov[key] not in (None, ""):
            lines.append(f"{key:<16} {_fmt(prov[key])}")
    tech = prov.get("technology")
    if isinstance(tech, dict):
        lines.append(f"technology       {tech.get('name', _fmt(tech))}")
    elif tech:
        lines.append(f"technology       {tech}")
    if "sweep" in prov and isinstance(prov["sweep"], dict):
        lines.append(f"sweep            {prov['sweep'].get('dir', '')}")
    if "rows_total" in prov:
        lines.append(f"rows             {prov['rows_total']} ({prov.get('rows_failed', 0)} failed "
                     "and excluded)")
    if isinstance(model, ErrorModel):
        lines.append(f"n_codes          {model.n_codes}")
        lines.append(f"points           {len(model.points)}")
        lines.append("")
        lines.append(f"  {'PVT point':<22}{'samples':>9}{'mean|err|':>11}{'mean sigma':>12}"
                     f"{'max KS':>8}{'interp.':>9}")
        for pvt, t in model.items():
            seen = t.count > 0 if t.count is not None else np.ones(t.n_codes, bool)
            ks = t.fit.get("ks")
            ks_max = float(np.nanmax(ks)) if ks is not None and np.isfinite(ks).any() else None
            mark = " *" if pvt == model.nominal else ""
            lines.append(
                f"  {pvt.label() + mark:<22}{int(t.count.sum()) if t.count is not None else 0:>9}"
                f"{np.abs(t.mean_error()[seen]).mean():>11.3f}{t.sigma()[seen].mean():>12.3f}"
                f"{'-' if ks_max is None else f'{ks_max:.3f}':>8}{int(t.interpolated.sum()):>9}")
        if model.nominal is not None:
            lines.append("  * nominal (the table a caller gets by default)")
        lines.append("  errors in LSB (codes); mean|err| and mean sigma over observed ideal "
                     "codes; interp. = ideal codes without samples")
        lines += _static_summary(model)
    else:
        shown = ", ".join(model.names[:8])
        more = f", ... ({len(model.names) - 8} more)" if len(model.names) > 8 else ""
        lines.append(f"{'values':<17}{shown}{more}")
        lines.append("")
        for corner, g in model.grids.items():
            lines.append(f"  corner {corner}: vdd {', '.join(f'{v:g}' for v in g.vdd)} V; "
                         f"temp {', '.join(f'{t:g}' for t in g.temp)} C")
            for name in model.names:
                st = g.stats[name]
                m = st["mean"]
                if np.isfinite(m).any():
                    rng = f"mean {np.nanmin(m):.4g} .. {np.nanmax(m):.4g}"
                else:
                    rng = "no data"
                unit = model.units.get(name, "")
                lines.append(f"    {name:<24} {rng} {unit}  (n = {int(np.nansum(st['count']))}, "
                             f"{int((st['count'] == 0).sum())} empty grid points)")
    return "\n".join(lines)


def _pm(stats: dict, key: str, digits: int) -> str:
    v, se = stats.get(key), stats.get(f"{key}_se")
    if v is None:
        return "-"
    return f"{v:.{digits}f}" + ("" if se is None else f"±{se:.{digits}f}")


def _static_summary(model: ErrorModel) -> list[str]:
    """The per-column static part of each structured point, with standard errors."""
    parts = [(p, model.structure(p)) for p in model.points]
    parts = [(p, s) for p, s in parts if s is not None]
    if not parts:
        return ["  static part: none (a pooled table per point; conversions independent)"]
    lines = ["", "  static part per column, e = b + g (code - center): mean and sigma over "
             "columns, ± standard error",
             f"  {'PVT point':<22}{'columns':>8}{'conv.':>8}{'mean b':>15}{'sigma b':>15}"
             f"{'mean g':>17}{'sigma g':>17}{'resid. sigma':>15}"]
    for p, (static, _) in parts:
        st = static.stats
        lines.append(
            f"  {p.label():<22}{st.get('n_columns', '-'):>8}{st.get('conversions', '-'):>8}"
            f"{_pm(st, 'mean_b', 3):>15}{_pm(st, 'sigma_b', 3):>15}{_pm(st, 'mean_g', 4):>17}"
            f"{_pm(st, 'sigma_g', 4):>17}{_pm(st, 'residual_sigma', 3):>15}")
    lines.append("  b in LSB, g in LSB per code; resid. sigma: per-conversion scatter about "
                 "the column's own line (LSB); nominal-only points have no spread")
    return lines
