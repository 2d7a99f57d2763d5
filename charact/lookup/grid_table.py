"""Grid tables: per corner, the mean, sigma and count of measured values over (vdd, temp)
and a block's own axes (a stored voltage and a pulse width, a hold time, an input
charge), interpolated multilinearly between grid points.

A PVT table (:mod:`charact.lookup.pvt_table`) keeps one entry per value and condition;
a grid table keeps the block's axes as interpolation axes, so that a 2-D multiply
surface, a retention curve or a transfer curve can be looked up between the points that
were simulated, with its Monte-Carlo spread::

    model = GridTableModel.load("models/gaincell_multiply_freepdk45.json")
    q = model.value("q", "NOM", vdd=1.0, temp=27.0, v_store=0.7, pulse=5e-9)
    s = model.values("q", "NOM", 1.0, 27.0, stat="sigma", v_store=v, pulse=t)

Each value has its own axes: the block's axes it varies along. A value measured once per
job (a readout's gain, a retention time) has only the axes that are constant within a
job (the sweep's conditions), and is counted once per job. Outside the grid is a
:class:`UserError` unless ``extrapolate=True`` (linear along axes with two or more points,
constant along a single one).

File (``kind = "grid_table"``, ``models/README.md`` envelope)::

    data = {"axes": [...], "names": [...], "units": {...}, "value_axes": {name: [...]},
            "corners": {corner: {"vdd": [...], "temp": [...], "axes": {axis: [...]},
                                 "values": {name: {"mean": nd, "sigma": nd, "count": nd}}}}}

with each array of shape ``(len(vdd), len(temp), *len(axes[a]) for a in value_axes)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from charact.errors import UserError
from charact.lookup import fileformat as ff

KIND = "grid_table"
STATS = ("mean", "sigma", "count")
PVT_AXES = ("vdd", "temp")
_PVT_TOL = 1e-9  # V / degC, as in a PVT table
_REL_TOL = 1e-6  # of an axis' span (or value): query values this close count as on it
_SIG = 9  # significant digits that make two axis values the same grid point


@dataclass
class GridCorner:
    """One corner's grid: ``axes`` every model axis' points at this corner; ``stats[name]
    [stat]`` of shape (len(vdd), len(temp), *points of the value's axes)."""

    vdd: np.ndarray
    temp: np.ndarray
    axes: dict[str, np.ndarray]
    stats: dict[str, dict[str, np.ndarray]]


def _check_axis(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or np.any(np.diff(arr) <= 0) \
            or not np.all(np.isfinite(arr)):
        raise UserError(f"{what} must be a non-empty, strictly increasing list of numbers")
    return arr


class GridTableModel:
    """A versioned table of measured values per corner over (vdd, temp, block axes)."""

    kind = KIND

    def __init__(self, axes: list[str], value_axes: dict[str, list[str]],
                 grids: dict[str, GridCorner], provenance: dict | None = None,
                 units: dict[str, str] | None = None) -> None:
        if not grids:
            raise UserError("a grid table needs at least one corner")
        self.axes: list[str] = [str(a) for a in axes]
        if len(set(self.axes)) != len(self.axes) or set(self.axes) & set(PVT_AXES):
            raise UserError(f"grid axes must be distinct and not vdd/temp, got {self.axes}")
        self.value_axes = {str(n): [str(a) for a in ax] for n, ax in value_axes.items()}
        for name, ax in self.value_axes.items():
            if any(a not in self.axes for a in ax) or len(set(ax)) != len(ax):
                raise UserError(f"value {name!r}: axes {ax} must be distinct axes of the "
                                f"table ({self.axes})")
        self.names: list[str] = list(self.value_axes)
        for corner, g in grids.items():
            g.vdd = _check_axis(g.vdd, f"corner {corner}: the vdd grid")
            g.temp = _check_axis(g.temp, f"corner {corner}: the temp grid")
            if sorted(g.axes) != sorted(self.axes):
                raise UserError(f"corner {corner}: axes {sorted(g.axes)} differ from the "
                                f"table's {sorted(self.axes)}")
            g.axes = {a: _check_axis(g.axes[a], f"corner {corner}: the {a} grid")
                      for a in self.axes}
            if sorted(g.stats) != sorted(self.names):
                raise UserError(f"corner {corner}: values {sorted(g.stats)} differ from the "
                                f"table's {sorted(self.names)}")
            for name, st in g.stats.items():
                shape = (g.vdd.size, g.temp.size,
                         *(g.axes[a].size for a in self.value_axes[name]))
                for stat in STATS:
                    if stat not in st:
                        raise UserError(f"corner {corner}, value {name}: missing {stat!r}")
                    st[stat] = ff.as_array(st[stat], f"corner {corner}, {name}.{stat}", shape)
        self.grids = grids
        self.corners: list[str] = list(grids)
        self.provenance: dict = dict(provenance or {})
        self.units: dict[str, str] = dict(units or {})
        self.schema: str = ff.SCHEMA  # the version of the file it was read from

    def __repr__(self) -> str:
        return f"GridTableModel(corners={self.corners}, axes={self.axes}, names={self.names})"

    # -- queries ----------------------------------------------------------------------------

    def _grid(self, corner: str) -> GridCorner:
        return ff.by_corner(self.grids, corner)

    def axes_of(self, name: str) -> list[str]:
        """The block axes ``name`` varies along (its query needs a value for each)."""
        if name not in self.value_axes:
            raise UserError(f"unknown value {name!r}; this table has: {', '.join(self.names)}")
        return list(self.value_axes[name])

    def axis_points(self, corner: str, axis: str) -> np.ndarray:
        """The grid points of ``axis`` (a block axis, vdd or temp) at ``corner``."""
        g = self._grid(corner)
        if axis in PVT_AXES:
            return getattr(g, axis).copy()
        if axis not in g.axes:
            raise UserError(f"unknown axis {axis!r}; this table has: "
                            f"{', '.join([*PVT_AXES, *self.axes])}")
        return g.axes[axis].copy()

    def values(self, name: str, corner: str, vdd: Any, temp: Any, stat: str = "mean",
               extrapolate: bool = False, **coords: Any) -> np.ndarray:
        """The interpolated ``stat`` ('mean' or 'sigma') of ``name``; ``vdd``, ``temp`` and
        one keyword per axis of ``name`` (:meth:`axes_of`) broadcast against each other.
        Keywords for the table's other axes are accepted and ignored (the value does not
        depend on them)."""
        from scipy.interpolate import RegularGridInterpolator

        axes = self.axes_of(name)
        if stat not in ("mean", "sigma"):
            raise UserError(f"stat must be 'mean' or 'sigma', got {stat!r}")
        unknown = sorted(set(coords) - set(self.axes))
        if unknown:
            raise UserError(f"unknown axis {', '.join(unknown)}; this table's axes: "
                            f"{', '.join(self.axes) or 'none'}")
        missing = [a for a in axes if a not in coords]
        if missing:
            raise UserError(f"{name!r} needs a value for its axis {', '.join(missing)}")
        g = self._grid(corner)
        queries = np.broadcast_arrays(np.asarray(vdd, dtype=np.float64),
                                      np.asarray(temp, dtype=np.float64),
                                      *(np.asarray(coords[a], dtype=np.float64) for a in axes))
        grid = g.stats[name][stat]
        used = []  # the axes with >= 2 points: interpolated; single ones must match
        for axis, pts, q in zip([*PVT_AXES, *axes], [g.vdd, g.temp, *(g.axes[a] for a in axes)],
                                queries, strict=True):
            lo, hi = pts[0], pts[-1]
            if axis in PVT_AXES:
                tol = _PVT_TOL
            else:
                tol = _REL_TOL * ((hi - lo) if hi > lo else max(abs(lo), 1e-300))
            ff.check_axis_range(axis, pts, q, tol, name, corner, extrapolate)
            if pts.size >= 2:
                used.append((pts, q))
        shape = queries[0].shape
        if not used:
            out = np.full(shape, grid.reshape(-1)[0])
        else:
            interp = RegularGridInterpolator(tuple(p for p, _ in used),
                                             grid.reshape([p.size for p, _ in used]),
                                             method="linear", bounds_error=False,
                                             fill_value=None)
            out = interp(np.stack([q.ravel() for _, q in used], axis=-1)).reshape(shape)
        if np.any(~np.isfinite(out)):
            why = "fewer than two samples" if stat == "sigma" else "no sample"
            raise UserError(f"no {stat} of {name!r} at corner {corner} for some queries: a "
                            f"neighbouring grid point has {why} (failed or not simulated)")
        return out

    def value(self, name: str, corner: str, vdd: float, temp: float, stat: str = "mean",
              extrapolate: bool = False, **coords: float) -> float:
        """The interpolated ``stat`` of ``name`` at one point (see :meth:`values`)."""
        return float(self.values(name, corner, vdd, temp, stat, extrapolate, **coords))

    def grid_rows(self) -> list[dict[str, Any]]:
        """One row per corner, grid point and value: the table ``export`` writes (axes a
        value does not vary along are NaN)."""
        rows = []
        for corner, g in self.grids.items():
            for name in self.names:
                st, axes = g.stats[name], self.value_axes[name]
                for idx in np.ndindex(st["mean"].shape):
                    row: dict[str, Any] = {"corner": corner, "vdd": float(g.vdd[idx[0]]),
                                           "temp": float(g.temp[idx[1]])}
                    for a in self.axes:
                        row[a] = float(g.axes[a][idx[2 + axes.index(a)]]) if a in axes \
                            else np.nan
                    row.update({"name": name, "unit": self.units.get(name, ""),
                                "count": int(np.nan_to_num(st["count"][idx])),
                                "mean": float(st["mean"][idx]),
                                "sigma": float(st["sigma"][idx])})
                    rows.append(row)
        return rows

    def frame(self) -> pd.DataFrame:
        """:meth:`grid_rows` as a table."""
        return pd.DataFrame(self.grid_rows())

    # -- file format ------------------------------------------------------------------------

    def to_data(self) -> dict:
        return {"axes": list(self.axes), "names": list(self.names), "units": dict(self.units),
                "value_axes": {n: list(a) for n, a in self.value_axes.items()},
                "corners": {c: {"vdd": g.vdd, "temp": g.temp,
                                "axes": {a: g.axes[a] for a in self.axes},
                                "values": {n: dict(st) for n, st in g.stats.items()}}
                            for c, g in self.grids.items()}}

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file atomically (see ``models/README.md``)."""
        ff.write_model_file(path, KIND, self.to_data(), self.provenance)

    @classmethod
    def from_data(cls, data: dict, provenance: dict, name: str) -> GridTableModel:
        where = f"{name}: data"
        axes = ff.require(data, "axes", where)
        names = ff.require(data, "names", where)
        units = ff.require(data, "units", where)
        value_axes = ff.require(data, "value_axes", where)
        corners = ff.require(data, "corners", where)
        if not (isinstance(axes, list) and isinstance(names, list)
                and isinstance(value_axes, dict) and isinstance(corners, dict) and corners):
            raise UserError(f"{where}: axes and names must be lists, value_axes an object and "
                            "corners a non-empty object")
        if sorted(value_axes) != sorted(names):
            raise UserError(f"{where}: value_axes must name exactly the values {names}")
        grids = {}
        for corner, obj in corners.items():
            at = f"{where}.corners.{corner}"
            vdd = ff.as_array(ff.require(obj, "vdd", at), f"{at}.vdd", (None,))
            temp = ff.as_array(ff.require(obj, "temp", at), f"{at}.temp", (None,))
            ax = ff.require(obj, "axes", at)
            vals = ff.require(obj, "values", at)
            if not isinstance(ax, dict) or not isinstance(vals, dict) \
                    or sorted(vals) != sorted(names):
                raise UserError(f"{at}: axes must be an object and values exactly {names}")
            grids[str(corner)] = GridCorner(
                vdd, temp, {a: ff.as_array(v, f"{at}.axes.{a}", (None,)) for a, v in ax.items()},
                {n: dict(vals[n]) if isinstance(vals[n], dict) else {} for n in names})
        try:
            return cls(axes, {n: list(value_axes[n]) for n in names}, grids, provenance,
                       units if isinstance(units, dict) else {})
        except (UserError, TypeError) as exc:
            raise UserError(f"{name}: {exc}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike) -> GridTableModel:
        """Read and validate a ``grid_table`` model file; any problem is one UserError."""
        doc = ff.read_model_document(path, KIND)
        model = cls.from_data(doc.data, doc.provenance, str(path))
        model.schema = doc.schema
        return model


# -- fitting ---------------------------------------------------------------------------------

def grid_points(values: Any) -> np.ndarray:
    """Sorted distinct values to ``_SIG`` significant digits (a pulse of 2e-9 and one of
    2.0000000001e-9 are one grid point; 1e-15 and 2e-15 are two)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return np.unique(np.array([float(f"{x:.{_SIG}g}") for x in arr], dtype=np.float64))


def _rounded(values: np.ndarray) -> np.ndarray:
    return np.array([float(f"{x:.{_SIG}g}") if np.isfinite(x) else np.nan for x in values])


def _varies_within_jobs(table: pd.DataFrame, col: str) -> bool:
    """Whether ``col`` takes more than one value inside some job (rows sharing ``key``)."""
    if "key" not in table.columns:
        return True
    vals = pd.Series(_rounded(pd.to_numeric(table[col], errors="coerce").to_numpy(float)),
                     index=table.index)
    return bool((vals.groupby(table["key"]).nunique(dropna=True) > 1).any())


def fit_grid_table(table: pd.DataFrame, axes: list[str], value_columns: list[str] | None,
                   provenance: dict, units: dict[str, str] | None = None,
                   conditions: list[str] | None = None) -> GridTableModel:
    """Mean, sigma (ddof=1) and count per corner over (vdd, temp, ``axes``).

    ``value_columns`` None means every numeric measurement column other than the axes.
    A value that is the same on every row of a job (``key``) is tabulated once per job
    over the axes that are constant within jobs. ``conditions`` (the spec's condition
    axes) that vary but are not among ``axes`` are refused: pooling them would mix
    different circuits' values. Failed rows (``status`` not "ok") are excluded and counted;
    NaN values are skipped per value.
    """
    from charact.lookup import fit as fitting

    if not axes:
        raise UserError("a grid table needs at least one axis (--by)")
    if len(set(axes)) != len(axes):
        raise UserError(f"--by names an axis twice: {', '.join(axes)}")
    fitting._require_columns(table, [*fitting.PVT_COLUMNS, *axes], "table")
    if set(axes) & set(fitting.PVT_COLUMNS):
        raise UserError(f"--by cannot name "
                        f"{', '.join(sorted(set(axes) & set(fitting.PVT_COLUMNS)))}: corner, "
                        "vdd and temp are the table's grid already")
    for a in axes:
        if not pd.api.types.is_numeric_dtype(table[a]):
            raise UserError(f"axis {a!r} is not a numeric column")
    pooled = [c for c in (conditions or []) if c in table.columns and c not in axes
              and c not in fitting.PVT_COLUMNS and table[c].nunique() > 1]
    if pooled:
        raise UserError(f"condition(s) {', '.join(pooled)} vary in this sweep but are not axes "
                        "of the table; add them to --by")
    value_columns = fitting.check_value_columns(
        value_columns, fitting.measurement_columns(table, [*axes, "item"]))
    ok = fitting.ok_rows(table)
    data = table[ok.to_numpy()].copy()
    if data.empty:
        raise UserError(f"no successful row in the table ({len(table)} rows, all failed)")
    keys = fitting.pvt_keys(data)
    data["corner"], data["vdd"], data["temp"] = keys["corner"], keys["vdd"], keys["temp"]
    job_axes = [a for a in axes if not _varies_within_jobs(data, a)]
    value_axes = {c: (list(axes) if _varies_within_jobs(data, c) else job_axes)
                  for c in value_columns}
    grids: dict[str, GridCorner] = {}
    counts_info: dict[str, Any] = {}
    for corner, sub in data.groupby("corner", sort=True):
        points = {"vdd": grid_points(sub["vdd"]), "temp": grid_points(sub["temp"]),
                  **{a: grid_points(sub[a]) for a in axes}}
        index = {a: np.searchsorted(points[a], _rounded(sub[a].to_numpy(float)))
                 for a in points}
        stats: dict[str, dict[str, np.ndarray]] = {}
        for col in value_columns:
            ax = ["vdd", "temp", *value_axes[col]]
            rows = np.ones(len(sub), dtype=bool)
            if value_axes[col] != list(axes) and "key" in sub.columns:
                rows = ~sub["key"].duplicated().to_numpy()  # once per job
            vals = pd.to_numeric(sub[col], errors="coerce").to_numpy(dtype=np.float64)
            rows &= np.isfinite(vals)
            frame = pd.DataFrame({a: index[a][rows] for a in ax})
            frame["x"] = vals[rows]
            agg = frame.groupby(ax)["x"].agg(["mean", "std", "count"])
            shape = tuple(points[a].size for a in ax)
            st = {s: np.full(shape, np.nan) for s in ("mean", "sigma")}
            st["count"] = np.zeros(shape)
            idx = tuple(agg.index.get_level_values(i).to_numpy() for i in range(len(ax)))
            st["mean"][idx] = agg["mean"].to_numpy()
            st["sigma"][idx] = agg["std"].to_numpy()
            st["count"][idx] = agg["count"].to_numpy()
            stats[col] = st
        grids[str(corner)] = GridCorner(points["vdd"], points["temp"],
                                        {a: points[a] for a in axes}, stats)
        counts_info[str(corner)] = {"ok": int(len(sub)),
                                    "failed": int((~ok & (table["corner"].astype(str)
                                                          == corner)).sum())}
    prov = ff.default_provenance(**provenance)
    prov.update({
        "fit": {"kind": KIND, "axes": list(axes), "values": list(value_columns),
                "value_axes": value_axes,
                "stats": "mean, sample sigma (ddof=1), count per grid point; a value that "
                         "is the same on every row of a job counts once per job",
                "interpolation": "multilinear over (vdd, temp, the value's axes) per corner "
                                 "(scipy RegularGridInterpolator)"},
        "sample_counts": counts_info,
        "rows_total": int(len(table)),
        "rows_failed": int((~ok).sum()),
    })
    model_units = {c: (units or {}).get(c, "") for c in value_columns}
    model_units.update({a: (units or {}).get(a, "") for a in axes})
    return GridTableModel(list(axes), value_axes, grids, prov,
                          {k: v for k, v in model_units.items() if v})


def block_lookup_axes(manifest: dict) -> list[str]:
    """The lookup axes the sweep's block declares (``lookup_axes``), or [] for a block
    without them or one this charact does not know."""
    from charact.blocks import BLOCKS, get_block

    block = manifest.get("block")
    name = block.get("name") if isinstance(block, dict) else block
    if not isinstance(name, str) or name not in BLOCKS:
        return []
    return list(getattr(get_block(name), "lookup_axes", ()))


# -- show / plot -----------------------------------------------------------------------------

def summary_lines(model: GridTableModel) -> list[str]:
    """The part of ``charact show`` that describes a grid table's contents."""
    lines = [f"{'axes':<17}{', '.join(model.axes)}",
             f"{'values':<17}{', '.join(model.names[:8])}"
             + (f", ... ({len(model.names) - 8} more)" if len(model.names) > 8 else ""), ""]
    for corner, g in model.grids.items():
        lines.append(f"  corner {corner}: vdd {', '.join(f'{v:g}' for v in g.vdd)} V; "
                     f"temp {', '.join(f'{t:g}' for t in g.temp)} C")
        for a in model.axes:
            unit = model.units.get(a, "")
            lines.append(f"    axis {a:<14} {', '.join(f'{x:.4g}' for x in g.axes[a])} {unit}")
        for name in model.names:
            st = g.stats[name]
            m, s = st["mean"], st["sigma"]
            rng = (f"mean {np.nanmin(m):.4g} .. {np.nanmax(m):.4g}" if np.isfinite(m).any()
                   else "no data")
            sig = f", sigma <= {np.nanmax(s):.3g}" if np.isfinite(s).any() else ""
            over = ", ".join(model.value_axes[name]) or "PVT only"
            lines.append(f"    {name:<18} over {over}: {rng}{sig} {model.units.get(name, '')}"
                         f"  (n = {int(np.nansum(st['count']))}, "
                         f"{int((st['count'] == 0).sum())} empty grid points)")
    return lines


def summary(model: GridTableModel, path: str | os.PathLike) -> str:
    """The text ``charact show`` prints for a grid table (the header as for the other
    kinds, then the axes and values per corner)."""
    prov = model.provenance
    lines = [f"{'model':<17}{path}", f"{'kind':<17}{model.kind}",
             f"{'schema':<17}{model.schema}"]
    for key in ("created", "charact_version", "command", "code_revision", "ngspice_version",
                "seed"):
        if prov.get(key) not in (None, ""):
            lines.append(f"{key:<17}{prov[key]}")
    tech = prov.get("technology")
    if tech:
        name = tech.get("name", tech) if isinstance(tech, dict) else tech
        lines.append(f"{'technology':<17}{name}")
    if isinstance(prov.get("sweep"), dict):
        lines.append(f"{'sweep':<17}{prov['sweep'].get('dir', '')}")
    if "rows_total" in prov:
        lines.append(f"{'rows':<17}{prov['rows_total']} ({prov.get('rows_failed', 0)} failed "
                     "and excluded)")
    return "\n".join([*lines, *summary_lines(model)])


def _lines(arr: np.ndarray) -> np.ndarray:
    """(x points, line points): a value's array with its x axis first and its line axis
    second; further axes at their first point."""
    if arr.ndim == 1:
        return arr[:, None]
    return arr[(slice(None), slice(None), *([0] * (arr.ndim - 2)))]


def plot(model: GridTableModel, path: str | os.PathLike, title: str = "") -> None:
    """Per value (up to six): the mean against its axis with the most points at the first
    corner's middle vdd and temperature, one line per point of its next axis, with a
    +-sigma band."""
    from charact.lookup.plot import _pyplot, _save

    plt = _pyplot()
    names = [n for n in model.names if model.value_axes[n]][:6] or model.names[:1]
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    corner = model.corners[0]
    g = model.grids[corner]
    iv, it = (g.vdd.size - 1) // 2, (g.temp.size - 1) // 2
    for ax, name in zip(axs.flat, names, strict=False):
        axes = model.value_axes[name]
        st = {s: g.stats[name][s][iv, it] for s in ("mean", "sigma")}
        if not axes:
            ax.bar([0], [float(st["mean"])], yerr=[np.nan_to_num(float(st["sigma"]))])
        else:
            # x: the axis with the most points; lines: the next axis; further axes at
            # their first point
            k = max(range(len(axes)), key=lambda i: g.axes[axes[i]].size)
            order = [k, *(i for i in range(len(axes)) if i != k)]
            mean, sd = (_lines(np.moveaxis(st[s], order, range(len(order))))
                        for s in ("mean", "sigma"))
            sd = np.nan_to_num(sd)
            x = g.axes[axes[k]]
            other = axes[order[1]] if len(axes) > 1 else None
            levels = g.axes[other] if other else [None]
            for j, lev in enumerate(levels):
                label = f"{other}={lev:.3g}" if other else None
                line = ax.plot(x, mean[:, j], "-o", ms=3, label=label)[0]
                ax.fill_between(x, mean[:, j] - sd[:, j], mean[:, j] + sd[:, j],
                                color=line.get_color(), alpha=0.2, lw=0)
            if x.size > 2 and x[0] > 0 and x[-1] / x[0] > 100:
                ax.set_xscale("log")  # hold times and the like span decades
            ax.set_xlabel(f"{axes[k]} ({model.units.get(axes[k], '')})")
            if len(levels) > 1:
                ax.legend(fontsize=6)
        ax.set_title(f"{name} ({model.units.get(name, '')})", fontsize=9)
    for ax in list(axs.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title or f"{corner}, vdd {g.vdd[iv]:g} V, {g.temp[it]:g} C: mean +- sigma",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


__all__ = ["KIND", "GridCorner", "GridTableModel", "block_lookup_axes", "fit_grid_table",
           "grid_points", "plot", "summary"]
