"""Blocks of the hierarchical flow.

* ``ima_cell_mc``: the cell-level characterization of one operating point
  (:func:`charact.column.cells.characterize_point`), one row per point: the summary numbers
  and the whole model as JSON (``model_json``), which ``ima_column_composed`` can load.
* ``ima_column_composed``: the ``ima_column`` conversions computed by the composed
  column (:mod:`charact.column.composed`) instead of full-column SPICE. Same options (plus
  the cell-level ones), same patterns for the same seeds, the same dies (job (seed, die)
  is computed from the devices of SPICE die (seed, die) through the cell benches' fits,
  :func:`charact.column.composed.keyed_die`, so the two blocks' conversions pair one to
  one), and a table of exactly the ``ima_column`` format, so error tables and
  ``charact fit`` work unchanged. With trim room (``cal_rows`` < 32) the calibration rows
  are modelled one by one, and ``trim = "offset"`` runs the trim of full SPICE
  (:func:`charact.column.calibration.trim_rows`) on the composed die. A spec
  chooses the mode by its ``block`` field: ``ima_column`` (full SPICE) or
  ``ima_column_composed``.

Cell models per operating point come from ``[measure] cell_models``: ``"inline"``
(characterized by the first job of the point and cached in ``<results>/hier_cells/``,
other jobs of the point wait for it), an ``ima_cell_mc`` sweep folder, or a JSON file
of such records. The calibration (``[measure] calibration``): ``"model"`` (the
calibration procedure run on the nominal composed column, no full-column SPICE at all),
``"inline"`` (the SPICE calibration benches of :mod:`charact.column.calibration`) or a
calibration sweep folder. Keep ``"model"``: the calibration absorbs what the cell models
get wrong in absolute terms (the merged calibration stack, 52 um wide at the default
design, adds its channel capacitance to RBL_R while it conducts, which the cell models
leave out: the composed t_cal comes out ~4 % shorter than SPICE's), whereas SPICE's pulse
widths applied to the composed column would shift every code by about half an LSB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from charact.blocks.base import JobContext, JobFailed
from charact.blocks.options import opt
from charact.column.bench import Conversion, conversion_rows, job_patterns
from charact.column.blocks import ArrayBlock, ImaColumn, ImaColumnOptions
from charact.column.calibration import Calibration, calibration_for, trim_pattern, trim_rows
from charact.column.cells import CELL_OPTIONS, CellOptions, PointModel, check_cell_options
from charact.column.characterize import characterize_point
from charact.column.composed import (
    calibrate_model,
    convert,
    keyed_die,
    nominal_die,
    split_cal_rows,
    stacks_used,
)
from charact.column.design import Design, DesignOptions, check_design, make_design
from charact.column.netlist import N_CAL
from charact.errors import UserError
from charact.tables import read_table, table_path

CACHE_DIR = "hier_cells"


def _model_key(ctx: JobContext, design: Design, opts: dict[str, Any]) -> str:
    p = ctx.point
    blob = json.dumps({"point": [p.corner, p.vdd, p.temp], "tech": ctx.tech.name,
                       "model_lib": str(ctx.tech.model_lib),
                       "design": design.digest(ctx.params),
                       "spice_options": list(opts.get("spice_options", [])),
                       "cell": {k: opts[k] for k in CELL_OPTIONS}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # the first job characterizes, the others wait
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def inline_model(ctx: JobContext, design: Design, opts: dict[str, Any]) -> PointModel:
    """The point's cell models, characterized once and cached in the results folder."""
    from charact.provenance import stamp, write_json

    if ctx.workdir.parent.name != "work":  # not inside a sweep folder: no cache
        return characterize_point(ctx, design, opts)
    cache = ctx.workdir.parent.parent / CACHE_DIR / f"{_model_key(ctx, design, opts)}.json"
    with _locked(cache):
        if cache.is_file():
            try:
                return PointModel.from_json(json.loads(cache.read_text())["model"])
            except (ValueError, KeyError, UserError):
                pass  # unreadable: characterize again
        model = characterize_point(ctx, design, opts)
        write_json(cache, stamp(kind="hier_cell_models", model=model.to_json()))
        return model


def models_from(source: str) -> list[PointModel]:
    """Cell-model records of an ``ima_cell_mc`` sweep folder/table or a JSON file."""
    p = table_path(source)
    if not p.is_file():
        raise UserError(f"cell models not found: {p} (run an ima_cell_mc sweep, e.g. "
                        "charact sweep examples/cell_mc.toml)")
    if p.suffix == ".parquet":
        _, df = read_table(p, "ima_cell_mc table", ("model_json", "status"))
        recs = [json.loads(s) for s in df.loc[df["status"] == "ok", "model_json"]]
    else:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{p}: unreadable cell-model file ({exc})") from None
        data = data.get("model", data) if isinstance(data, dict) else data
        recs = data if isinstance(data, list) else [data]
    return [PointModel.from_json(r) for r in recs]


def point_model(ctx: JobContext, design: Design, opts: dict[str, Any]) -> PointModel:
    source = str(opts["cell_models"])
    if source == "inline":
        return inline_model(ctx, design, opts)
    p = ctx.point
    hits = [m for m in models_from(source) if m.corner == p.corner
            and math.isclose(m.vdd, p.vdd) and math.isclose(m.temp, p.temp)]
    if not hits:
        raise JobFailed(f"no cell model for {p.corner} {p.vdd:g} V {p.temp:g} C in {source}")
    hits = [m for m in hits if m.design == design.digest(ctx.params)]
    if not hits:
        raise JobFailed(f"cell models in {source} were made for another array design")
    return hits[0]


def model_calibration(model: PointModel, design: Design):
    """The composed column's own calibration: stored with the models when they were
    made for this design, else computed (a few hundred small conversions)."""
    stored = model.info.get("calibration")
    if isinstance(stored, dict):  # the model was checked (or made) for this design
        try:
            cal = Calibration(**stored)
        except TypeError:
            cal = None
        # a design with trim room needs the row worth, which older models lack
        if cal is not None and (design.cfg.cal_rows == N_CAL
                                or math.isfinite(cal.lsb_per_row)):
            return cal
    return calibrate_model(model, design)


# Base order: the design's options first in the reference table, then the cell ones.
@dataclasses.dataclass(frozen=True)
class CellMCOptions(CellOptions, DesignOptions):
    """``[measure]`` options of ``ima_cell_mc``: the array design and the cell benches."""


@dataclasses.dataclass(frozen=True)
class ComposedOptions(CellOptions, ImaColumnOptions):
    """``[measure]`` options of ``ima_column_composed``: those of ``ima_column``, the cell
    benches', and how the composed column gets its models."""

    calibration: str = opt("model", "model (the calibration run on the nominal composed "
                           "column), inline (the SPICE calibration benches) or a "
                           "calibration sweep's folder or table", min_len=1,
                           rule="a path must hold a calibration table")
    cell_models: str = opt("inline", "inline (characterized by the first job of a point and "
                           "cached) or an ima_cell_mc sweep folder or JSON file", min_len=1,
                           rule="a path must hold cell models")
    mismatch_scale: float = opt(1.0, "multiplies every device spread (0 = nominal circuit)",
                                min=0, max=10)


class ImaCellMC(ArrayBlock):
    """Cell-level Monte-Carlo characterization of the column at each operating point."""

    name = "ima_cell_mc"
    # 6: the edge charge against the bitline voltage (v_edge, dq_edge, t_edge_lo_*);
    # 5: the stored calibration has the trim row's worth; 4: the design's trim_steps
    # option, trim_pattern typical by default; 3: the design's trim_pattern option;
    # 2: sensitivity fits (reg_*, sa_reg_*)
    version = "6"
    Options = CellMCOptions
    columns = (
        "i_mac", "i_rep", "i_cal", "ileak_mac", "ileak_rep", "ileak_cal", "sigma_ln_mac",
        "sigma_ln_rep", "sigma_ln_cal", "sigma_vt_mac", "sigma_vt_rep", "sigma_vt_cal",
        "t_off_mac", "t_off_rep", "t_off_cal", "t_edge_lo_mac", "t_edge_lo_rep",
        "t_edge_lo_cal", "gain_mac", "gain_rep", "gain_cal",
        "corr_v_mac", "corr_v_rep", "corr_v_cal", "c_drain_mac", "c_par_l", "c_par_r",
        "sa_vcm", "sa_offset_nom", "sa_sigma", "sa_mean_mc", "sa_t0", "sa_tau",
        "reg_r2_mac", "reg_r2_rep", "reg_r2_cal", "reg_sigma_mac", "reg_sigma_rep",
        "reg_sigma_cal", "sa_reg_r2", "sa_reg_r2_cv", "sa_reg_sigma", "sa_reg_terms",
        "rep_ratio", "design", "model_json",
    )
    units = {
        **{f"{q}_{k}": u for k in ("mac", "rep", "cal") for q, u in (
            ("i", "A"), ("ileak", "A"), ("sigma_ln", "1"), ("sigma_vt", "V"),
            ("t_off", "s"), ("t_edge_lo", "s"), ("gain", "1"), ("corr_v", "1"))},
        "c_drain_mac": "F", "c_par_l": "F", "c_par_r": "F", "sa_vcm": "V",
        "sa_offset_nom": "V", "sa_sigma": "V", "sa_mean_mc": "V", "sa_t0": "s",
        "sa_tau": "s", "rep_ratio": "1", "design": "-", "model_json": "-",
        # the fits of ln(I/I_nom) (residual in ln units) and of the SA offset (V)
        **{f"reg_r2_{k}": "1" for k in ("mac", "rep", "cal")},
        **{f"reg_sigma_{k}": "1" for k in ("mac", "rep", "cal")},
        "sa_reg_r2": "1", "sa_reg_r2_cv": "1", "sa_reg_sigma": "V", "sa_reg_terms": "1",
    }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        check_design(opts)
        check_cell_options(opts)
        return opts

    def simulate(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.point.seed is not None:
            raise JobFailed("the cell Monte-Carlo runs inside the job (cell_samples, "
                            "sa_samples): use [montecarlo] samples = 0")
        design = make_design(ctx.options)
        model = characterize_point(ctx, design, ctx.options)
        return {**model.summary(), "rep_ratio": design.cfg.rep_ratio,
                "design": model.design, "model_json": json.dumps(model.to_json())}


class ImaColumnComposed(ArrayBlock):
    """``ima_column`` conversions from the composed column (cell models + numerics)."""

    name = "ima_column_composed"
    # 7: the edges' voltage dependence (models that have it); 6: trim rows and the
    # offset trim modelled (each calibration row its own replica stack); 5: the
    # design's trim_steps option, trim_pattern typical by default; 4: the design's
    # trim_pattern option; 3: keyed dies (the SPICE deck's values)
    version = "7"
    Options = ComposedOptions
    columns = ImaColumn.columns
    units = ImaColumn.units

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        col = {k: v for k, v in opts.items() if k in ImaColumn.options}
        if col["calibration"] == "model":
            col["calibration"] = "inline"  # checked as a name, not run
        checked = ImaColumn().check_options(col)
        opts.update({k: v for k, v in checked.items() if k != "calibration"})
        check_cell_options(opts)
        if opts["wiring"] != "q":
            raise UserError("[measure] wiring must be q for the composed column (it "
                            "models wiring = q only)")
        if opts["trim"] != "none" and opts["trim_temp"] != "point":
            # the composed column has its cell models at the job's point only
            raise UserError("[measure] trim_temp must be 'point' for the composed column "
                            "(a trim at another temperature runs in full SPICE, block "
                            "ima_column)")
        cm = opts["cell_models"]
        if cm != "inline":
            try:
                models_from(cm)  # readable now, not in every job
            except UserError as exc:  # name the option the path came from
                raise UserError(f"[measure] cell_models: {exc}") from None
            src = Path(cm) / "table.parquet" if Path(cm).is_dir() else Path(cm)
            # the models' content is part of every job key: new models, new jobs
            opts["cell_models_sha256"] = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
        return opts

    def simulate(self, ctx: JobContext) -> list[dict[str, Any]]:
        o = ctx.options
        design, decks, seed = job_patterns(ctx)  # the same patterns as ima_column
        model = point_model(ctx, design, o)
        if o["calibration"] == "model":
            cal = model_calibration(model, design)
        else:
            cal = calibration_for(ctx, design)
        n, n_cols = design.cfg.n_dims, int(o["n_cols"])
        x = np.concatenate([np.repeat(xd[None, :], wd.shape[0], 0) for xd, wd in decks])
        w = np.concatenate([wd for _, wd in decks])
        col = np.concatenate([np.arange(wd.shape[0]) for _, wd in decks])
        trimmed = o["trim"] == "offset"
        split = trimmed or split_cal_rows(design)
        cols = np.arange(n_cols)
        if trimmed:  # the trim conversions' stacks are read too
            x_t, w_t = trim_pattern(design, str(o["trim_pattern"]))
            need_x = np.concatenate([x, np.repeat(x_t[None, :], n_cols, 0)])
            need_w = np.concatenate([w, np.repeat(w_t[None, :], n_cols, 0)])
            need_c = np.concatenate([col, cols])
        else:
            need_x, need_w, need_c = x, w, col
        if ctx.point.seed is None:
            die = nominal_die(n_cols, n)
        else:  # the SPICE die (seed, die): its devices' keyed scores through the fits
            die = keyed_die(ctx.point.seed, ctx.point.die, n_cols, n, model,
                            float(o["mismatch_scale"]),
                            stacks_used(need_x, need_w, need_c, n_cols), design.cfg.storage,
                            split_cal=split)
        trim = None
        if trimmed:
            def decide(step: int, xt: np.ndarray, wt: np.ndarray,
                       rows: list[int] | None) -> np.ndarray:
                return convert(model, design, np.repeat(xt[None, :], n_cols, 0), wt, cols,
                               die, cal.t_cal, cal.t_step, cal_rows=rows).decisions

            trim = trim_rows(design, cal, n_cols, decide, int(o["trim_steps"]),
                             str(o["trim_pattern"]), float(ctx.point.temp))
        res = convert(model, design, x, w, col, die, cal.t_cal, cal.t_step,
                      cal_rows=trim.rows if trim is not None else None)
        rows: list[dict[str, Any]] = []
        start = 0
        for d, (xd, wd) in enumerate(decks):
            sl = slice(start, start + wd.shape[0])
            start += wd.shape[0]
            conv_d = Conversion(res.decisions[sl], res.levels_l[sl], res.levels_r[sl],
                                res.v_l_mac[sl], res.v_r_mac[sl])
            rows += conversion_rows(d, design, xd, wd, conv_d, cal, int(o["k"]), seed, trim)
        return rows[:int(o["conversions"]) or int(o["n_cols"])]


__all__ = ["ImaCellMC", "ImaColumnComposed", "inline_model", "models_from", "point_model"]
