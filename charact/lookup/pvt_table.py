"""PVT tables: per corner, the mean, sigma and count of measured values (delays, energies,
offsets) on a (vdd, temp) grid, interpolated linearly between grid points.

    model = PVTTableModel.load("models/sense_amp.json")
    t_sa = model.value("delay", "SS", vdd=0.85, temp=60.0)
    sig = model.values("offset", "NOM", vdd=np.linspace(0.8, 1.2, 9), temp=27.0, stat="sigma")

Outside the characterized grid is a :class:`UserError` unless ``extrapolate=True``
(linear extrapolation along axes with two or more points, constant along a single one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from charact.errors import UserError
from charact.lookup import fileformat as ff

KIND = "pvt_table"
STATS = ("mean", "sigma", "count")
_GRID_TOL = 1e-9  # V / degC: query values this close to the grid edge count as inside


@dataclass
class CornerGrid:
    """One corner's grid: ``stats[name][stat]`` has shape (len(vdd), len(temp)); NaN mean
    where no sample exists, NaN sigma where fewer than two."""

    vdd: np.ndarray
    temp: np.ndarray
    stats: dict[str, dict[str, np.ndarray]]


class PVTTableModel:
    """A versioned table of measured values per corner over (vdd, temp)."""

    kind = KIND

    def __init__(self, grids: dict[str, CornerGrid], provenance: dict | None = None,
                 units: dict[str, str] | None = None) -> None:
        if not grids:
            raise UserError("a PVT table needs at least one corner")
        names: list[str] | None = None
        for corner, g in grids.items():
            g.vdd = np.asarray(g.vdd, dtype=np.float64)
            g.temp = np.asarray(g.temp, dtype=np.float64)
            for axis, arr in (("vdd", g.vdd), ("temp", g.temp)):
                if arr.ndim != 1 or arr.size == 0 or np.any(np.diff(arr) <= 0) \
                        or not np.all(np.isfinite(arr)):
                    raise UserError(f"corner {corner}: the {axis} grid must be a non-empty, "
                                    "strictly increasing list of numbers")
            if names is None:
                names = list(g.stats)
            elif list(g.stats) != names:
                raise UserError(f"corner {corner}: values {list(g.stats)} differ from the "
                                f"other corners' {names}")
            shape = (g.vdd.size, g.temp.size)
            for name, st in g.stats.items():
                for stat in STATS:
                    if stat not in st:
                        raise UserError(f"corner {corner}, value {name}: missing {stat!r}")
                    st[stat] = ff.as_array(st[stat], f"corner {corner}, {name}.{stat}", shape)
        self.grids = grids
        self.corners: list[str] = list(grids)
        self.names: list[str] = names or []
        self.provenance: dict = dict(provenance or {})
        self.units: dict[str, str] = dict(units or {})

    def __repr__(self) -> str:
        return f"PVTTableModel(corners={self.corners}, names={self.names})"

    def _grid(self, corner: str) -> CornerGrid:
        return ff.by_corner(self.grids, corner)

    def _check_name(self, name: str, stat: str) -> None:
        if name not in self.names:
            raise UserError(f"unknown value {name!r}; this table has: {', '.join(self.names)}")
        if stat not in ("mean", "sigma"):
            raise UserError(f"stat must be 'mean' or 'sigma', got {stat!r}")

    def values(self, name: str, corner: str, vdd: Any, temp: Any, stat: str = "mean",
               extrapolate: bool = False) -> np.ndarray:
        """Vectorized :meth:`value`: ``vdd`` and ``temp`` broadcast against each other."""
        from scipy.interpolate import RegularGridInterpolator

        self._check_name(name, stat)
        g = self._grid(corner)
        q_vdd, q_temp = np.broadcast_arrays(np.asarray(vdd, dtype=np.float64),
                                            np.asarray(temp, dtype=np.float64))
        grid = g.stats[name][stat]
        axes = []  # the axes with >= 2 points: interpolated; single ones: must match
        for axis, pts, q in (("vdd", g.vdd, q_vdd), ("temp", g.temp, q_temp)):
            ff.check_axis_range(axis, pts, q, _GRID_TOL, name, corner, extrapolate)
            if pts.size >= 2:
                axes.append((pts, q))
        if not axes:
            out = np.full(q_vdd.shape, grid[0, 0])
        else:
            squeezed = grid.reshape([p.size for p, _ in axes])
            interp = RegularGridInterpolator(tuple(p for p, _ in axes), squeezed,
                                             method="linear", bounds_error=False,
                                             fill_value=None)
            pts = np.stack([q.ravel() for _, q in axes], axis=-1)
            out = interp(pts).reshape(q_vdd.shape)
        if np.any(~np.isfinite(out)):
            i = np.flatnonzero(~np.isfinite(out.ravel()))[0]
            why = "fewer than two samples" if stat == "sigma" else "no sample"
            raise UserError(f"no {stat} of {name!r} at corner {corner}, vdd="
                            f"{q_vdd.flat[i]:g}, temp={q_temp.flat[i]:g}: a neighbouring grid "
                            f"point has {why} (failed or not simulated)")
        return out

    def value(self, name: str, corner: str, vdd: float, temp: float, stat: str = "mean",
              extrapolate: bool = False) -> float:
        """The interpolated ``stat`` ('mean' or 'sigma') of ``name`` at one PVT point."""
        return float(self.values(name, corner, vdd, temp, stat, extrapolate))

    def grid_rows(self) -> list[dict[str, Any]]:
        """One row per corner, grid point and value: the table ``export`` writes."""
        rows = []
        for corner, g in self.grids.items():
            for i, v in enumerate(g.vdd):
                for j, t in enumerate(g.temp):
                    for name in self.names:
                        st = g.stats[name]
                        rows.append({"corner": corner, "vdd": float(v), "temp": float(t),
                                     "name": name, "unit": self.units.get(name, ""),
                                     "count": int(np.nan_to_num(st["count"][i, j])),
                                     "mean": float(st["mean"][i, j]),
                                     "sigma": float(st["sigma"][i, j])})
        return rows

    # file format
    def to_data(self) -> dict:
        return {"names": list(self.names), "units": dict(self.units),
                "corners": {c: {"vdd": g.vdd, "temp": g.temp,
                                "values": {n: dict(st) for n, st in g.stats.items()}}
                            for c, g in self.grids.items()}}

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file atomically (see ``models/README.md``)."""
        ff.write_model_file(path, KIND, self.to_data(), self.provenance)

    @classmethod
    def from_data(cls, data: dict, provenance: dict, name: str) -> PVTTableModel:
        names = ff.require(data, "names", f"{name}: data")
        corners = ff.require(data, "corners", f"{name}: data")
        units = ff.require(data, "units", f"{name}: data")
        if not isinstance(names, list) or not isinstance(corners, dict) or not corners:
            raise UserError(f"{name}: data.names must be a list and data.corners a non-empty "
                            "object")
        grids = {}
        for corner, obj in corners.items():
            where = f"{name}: data.corners.{corner}"
            vdd = ff.as_array(ff.require(obj, "vdd", where), f"{where}.vdd", (None,))
            temp = ff.as_array(ff.require(obj, "temp", where), f"{where}.temp", (None,))
            vals = ff.require(obj, "values", where)
            if not isinstance(vals, dict) or sorted(vals) != sorted(names):
                raise UserError(f"{where}: values must be exactly {names}")
            grids[corner] = CornerGrid(vdd, temp, {n: dict(vals[n]) for n in names})
        try:
            return cls(grids, provenance, units if isinstance(units, dict) else {})
        except UserError as exc:
            raise UserError(f"{name}: {exc}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike) -> PVTTableModel:
        """Read and validate a ``pvt_table`` model file; any problem is one UserError."""
        _, data, prov = ff.read_model_file(path, KIND)
        return cls.from_data(data, prov, str(path))


def grid_axis(values: np.ndarray) -> np.ndarray:
    """Sorted distinct grid values, merging float noise below 1e-9."""
    vals = np.unique(np.round(np.asarray(values, dtype=np.float64), 9))
    return vals[np.isfinite(vals)]
