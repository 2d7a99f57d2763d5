"""The replica-ramp in-memory-ADC column and array (Topkima-Former, S. Dong et al., arXiv
2411.13050, Sec. III-A), and the single-cell discharge bench.

Blocks:

* ``ima_column``: converts input/weight patterns on an array of ``n_cols`` columns of
  ``n_dims`` dimensions (3 dual 10T cells per signed 4-bit weight) plus 64 replica rows,
  one StrongARM SA per column. One row per column conversion: ideal MAC and code, the
  converted code and crossing cycle, bitline voltages, ramp step/DNL/INL, and, with
  early stop (``k`` > 0), the stop cycle, alpha and whether the column is in the top-k.
* ``ima_calibration``: the nominal calibration of the replica pulses per operating point
  (:mod:`charact.column.calibration`); its table feeds ``ima_column``'s ``calibration``
  option.
* ``ima_cell``: discharge of one dual 10T cell against pulse width and bitline voltage.

Signal convention, code and timing: :mod:`charact.column.netlist`. Early stop: the
counter stops the conversion at the end of the first ramp cycle in which the number of
columns that have crossed reaches ``k``; ties in that cycle keep the smallest column
addresses. ``stop_cycle`` is that cycle (0-based, 31 when fewer than k ever cross);
``alpha = (stop_cycle + 1) / 32``, the fraction of the 32 ramp cycles spent. The counter
and arbiter act on the SA decisions latched in SPICE (behavioural arbitration; its delays
belong to the arbiter characterization).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from charact.bench import FindAt, dc, num, pwl, read_all, tran
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.options import SPICE_OPTIONS_RULE, check_spice_options, opt
from charact.column.bench import conversion_rows, job_patterns, run_array
from charact.column.calibration import (
    at_temperature,
    calibrate,
    calibration_for,
    load_calibration_table,
    offset_trim,
)
from charact.column.design import PATTERNS, DesignOptions, check_design, make_design
from charact.column.netlist import W_MAX, X_MAX
from charact.errors import UserError


class ArrayBlock(Block):
    """A block whose bench is the dual 10T array with its StrongARM comparators; the
    spec's ``[params]`` set the cell's."""

    template_files = ("sram10t.sp", "sense_amp.sp")
    subckt = "dual10t"


@dataclasses.dataclass(frozen=True)
class ImaColumnOptions(DesignOptions):
    """``[measure]`` options of ``ima_column``: the design and the conversions."""

    n_cols: int = opt(8, "columns per deck (an array sharing inputs and replica rows)",
                      min=1)
    conversions: int = opt(0, "column conversions per job; 0 = n_cols (one deck)", min=0,
                           rule="0 or n_cols with k > 0 or explicit patterns")
    k: int = opt(0, "early stop after k crossings; 0 = no early stop", min=0,
                 rule="at most n_cols")
    patterns: str = opt("stratified", "input/weight patterns: stratified (even over the "
                        "codes), uniform (random) or explicit (inputs, weights)",
                        choices=PATTERNS)
    pattern_seed: int = opt(0, "pattern seed of a nominal run (a Monte-Carlo die draws "
                            "from its own stream)", min=0)
    inputs: list[int] = opt([], "explicit patterns: the n_dims inputs", min=-X_MAX,
                            max=X_MAX, rule="n_dims of them with patterns = explicit")
    weights: list[list[int]] = opt([], "explicit patterns: n_cols lists of n_dims weights",
                                   min=-W_MAX, max=W_MAX,
                                   rule="n_cols x n_dims with patterns = explicit")
    calibration: str = opt("inline", "inline (nominal calibration at each operating point, "
                           "cached in the results folder) or a calibration sweep's folder "
                           "or table", min_len=1, rule="a path must hold a calibration table")


class ImaColumn(ArrayBlock):
    """Pattern conversions on a replica-ramp IMA array (one row per column conversion)."""

    name = "ima_column"
    # 3: the calibration bench loads RBL_L with every ramp row; 4: a trimmed column's
    # rows storing 0 stay on RBL_R, the trim iterates (trim_steps) on the measured
    # lsb_per_row
    version = "4"
    Options = ImaColumnOptions
    summary_columns = ("code", "cross_cycle", "v_mac", "alpha")
    columns = (
        "deck", "col", "mac_ideal", "code_ideal", "code", "cross_cycle", "v_mac", "v_l_mac",
        "v_r_mac", "v_cal", "ramp_step", "ramp_dnl", "ramp_inl", "flips", "k", "stop_cycle",
        "alpha", "selected", "n_dims", "mac_lo", "mac_hi", "lsb_mac", "t_cal", "t_step",
        "rep_ratio", "volts_per_mac", "c_rbl", "pattern_seed", "pattern", "cal_rows",
        "trim_offset", "trim_temp",
    )
    # MAC values are integer Q.K units and codes plain numbers: dimensionless ('1');
    # ramp non-linearity in LSB; volts_per_mac is volts per (dimensionless) MAC unit.
    units = {
        "deck": "1", "col": "1", "mac_ideal": "1", "code_ideal": "1", "code": "1",
        "cross_cycle": "1", "v_mac": "V", "v_l_mac": "V", "v_r_mac": "V", "v_cal": "V",
        "ramp_step": "V", "ramp_dnl": "LSB", "ramp_inl": "LSB", "flips": "1", "k": "1",
        "stop_cycle": "1", "alpha": "1", "selected": "1", "n_dims": "1", "mac_lo": "1",
        "mac_hi": "1", "lsb_mac": "1", "t_cal": "s", "t_step": "s", "rep_ratio": "1",
        "volts_per_mac": "V", "c_rbl": "F", "pattern_seed": "1", "pattern": "-",
        "cal_rows": "1", "trim_offset": "LSB", "trim_temp": "degC",
    }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        check_design(opts)
        if opts["k"] > opts["n_cols"]:
            raise UserError("[measure] k must not exceed n_cols")
        if opts["k"] and opts["conversions"] not in (0, opts["n_cols"]):
            raise UserError("[measure] with early stop (k > 0) a job is one array "
                            "conversion: leave conversions = 0")
        if opts["patterns"] == "explicit":
            _check_explicit(opts)
        cal = opts["calibration"]
        if cal != "inline":
            try:
                table = load_calibration_table(cal)
            except UserError as exc:  # name the option the path came from
                raise UserError(f"[measure] calibration: {exc}") from None
            # the calibration's content is part of every job key
            opts["calibration_sha256"] = hashlib.sha256(
                table.to_json(orient="records").encode()).hexdigest()[:16]
        return opts

    def simulate(self, ctx: JobContext) -> list[dict[str, Any]]:
        o = ctx.options
        design, decks, seed = job_patterns(ctx)
        trim = None
        if o["trim"] == "offset":
            # trimmed at another temperature, the chip also keeps that temperature's
            # replica pulses: everything calibrated cold, then run as it is
            t_trim = ctx.point.temp if o["trim_temp"] == "point" else float(o["trim_temp"])
            with at_temperature(ctx, t_trim) as tctx:
                cal = calibration_for(tctx, design)
                trim = offset_trim(tctx, design, cal, int(o["n_cols"]))
        else:
            cal = calibration_for(ctx, design)
        rows: list[dict[str, Any]] = []
        for d, (x, w) in enumerate(decks):
            res = run_array(ctx, f"array{d}", design, x, w, cal.t_cal, cal.t_step,
                            cal_rows=trim.rows if trim is not None else None)
            rows += conversion_rows(d, design, x, w, res, cal, int(o["k"]), seed, trim)
        return rows[:int(o["conversions"]) or int(o["n_cols"])]



def _check_explicit(opts: dict[str, Any]) -> None:
    """Explicit patterns: the shapes (types and ranges are :class:`ImaColumnOptions`')."""
    n, n_cols = opts["n_dims"], opts["n_cols"]
    x, w = opts["inputs"], opts["weights"]
    if len(x) != n:
        raise UserError(f"[measure] inputs must be {n} integers in -{X_MAX}..{X_MAX}")
    if len(w) != n_cols or any(len(r) != n for r in w):
        raise UserError(f"[measure] weights must be {n_cols} lists of {n} integers in "
                        f"-{W_MAX}..{W_MAX}")
    if opts["conversions"] not in (0, n_cols):
        raise UserError("[measure] explicit patterns make one deck: leave conversions = 0")


class ImaCalibration(ArrayBlock):
    """Nominal calibration of the replica pulses at each operating point (one row each)."""

    name = "ima_calibration"
    # 3: the waveform bench loads RBL_L with every ramp row; 4: lsb_per_row (a trim
    # row's worth), and the rows storing 0 stay on RBL_R; 5: the ramp step refined along
    # the secant (refine_pulses)
    version = "5"
    Options = DesignOptions
    summary_columns = ("t_cal", "t_step", "lsb_v", "resid_hi", "resid_lo", "lsb_per_row")
    columns = ("t_cal", "t_step", "volts_per_mac", "lsb_v", "resid_hi", "resid_lo",
               "iterations", "lsb_per_row", "n_dims", "mac_lo", "mac_hi", "lsb_mac", "rep_ratio",
               "c_rbl", "design")
    units = {"t_cal": "s", "t_step": "s", "volts_per_mac": "V", "lsb_v": "V",
             "resid_hi": "LSB", "resid_lo": "LSB", "iterations": "1", "lsb_per_row": "LSB",
             "n_dims": "1",
             "mac_lo": "1", "mac_hi": "1", "lsb_mac": "1", "rep_ratio": "1", "c_rbl": "F",
             "design": "-"}

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        check_design(opts)
        return opts

    def simulate(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.point.seed is not None:
            raise JobFailed("calibration is nominal: use [montecarlo] samples = 0")
        design = make_design(ctx.options)
        cal = calibrate(ctx, design)
        return {**cal.row(), "n_dims": design.cfg.n_dims, "mac_lo": design.mac_lo,
                "mac_hi": design.mac_hi, "lsb_mac": design.lsb,
                "rep_ratio": design.cfg.rep_ratio, "c_rbl": design.cfg.c_rbl,
                "design": design.digest(ctx.params)}


@dataclasses.dataclass(frozen=True)
class ImaCellOptions:
    """``[measure]`` options of ``ima_cell`` (times in s, voltages in V)."""

    pulse_units: list[int] = opt([1, 2, 4, 8, 16, 31, 62, 124], "pulse widths in units of "
                                 "t_unit, one discharge each", positive=True, min_len=2)
    storage: str = opt("ideal", "storage: ideal (read port on ideal sources) or 6t",
                       choices=("ideal", "6t"))
    vdd_sram: float = opt(0.5, "SRAM supply", positive=True)
    v_rwl: float = opt(0.5, "read word-line high level", positive=True)
    c_rbl: float = opt(280e-15, "bitline capacitance (F)", positive=True)
    t_unit: float = opt(0.5e-9, "one unit of pulse width", positive=True)
    t_edge: float = opt(30e-12, "word-line and precharge edges", positive=True,
                        rule="less than t_unit x min(pulse_units)")
    tmax: float = opt(100e-12, "largest transient time step", positive=True)
    spice_options: list[str] = opt([], "extra .option words of every deck",
                                   rule=SPICE_OPTIONS_RULE, check=check_spice_options)


class ImaCell(Block):
    """Discharge of one dual 10T cell against pulse width and bitline voltage.

    The cell (weight +1, positive input) discharges a bitline of ``c_rbl`` precharged
    to ``v_rbl``, for a list of pulse widths (each after a fresh precharge, same cell).
    The per-unit discharge is the slope of a line fitted through (pulse width, drop);
    ``cell_inl`` its largest residual in units."""

    name = "ima_cell"
    version = "1"
    template_files = ("sram10t.sp",)
    subckt = "dual10t"
    conditions = {"v_rbl": 0.5}
    Options = ImaCellOptions

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        # the shortest pulse needs its two edges
        if not opts["t_edge"] < opts["t_unit"] * min(opts["pulse_units"]):
            raise UserError("[measure] t_edge must be less than the shortest pulse, "
                            "t_unit x min(pulse_units)")
        return opts

    columns = ("dv_unit", "q_unit", "i_read", "cell_inl", "leak_dv")  # + dv_u<n> per width
    # cell_inl is in pulse units (a fraction of one unit's discharge)
    units = {"dv_unit": "V", "q_unit": "C", "i_read": "A", "cell_inl": "1", "leak_dv": "V",
             "v_rbl": "V"}
    unit_patterns = ((r"dv_u\d+", "V"),)  # the drop per pulse width in pulse_units

    def simulate(self, ctx: JobContext) -> dict[str, Any]:
        o = ctx.options
        v_rbl = float(ctx.conditions["v_rbl"])
        tu, te = float(o["t_unit"]), float(o["t_edge"])
        units = [int(u) for u in o["pulse_units"]]
        cell_t = next(t for t in ctx.templates if "dual10t" in t.subckts)
        lines = [dc("vsup", "vdd", "{vdd}"), dc("vsram", "vsram", o["vdd_sram"]),
                 dc("vpre", "vpre", v_rbl), f"Crbl rbl 0 {num(o['c_rbl'])}",
                 f"Crblr rblr 0 {num(o['c_rbl'])}", "Xpre rbl pcb vpre vdd rbl_pre",
                 "Xprer rblr pcb vpre vdd rbl_pre"]
        read = {k: ctx.params[k] for k in ("w_ra", "l_ra", "w_rd", "l_rd")}
        if o["storage"] == "ideal":
            lines.append(cell_t.instance("cell", "dual10t_rd", ["rbl", "rblr", "rwlp", "0",
                                         "vsram", "0", "0", "vsram", "0"], read))
        else:
            lines.append(cell_t.instance("cell", "dual10t", ["rbl", "rblr", "rwlp", "0", "0",
                                         "vsram", "vsram", "vsram", "vsram", "vsram", "0"],
                                         ctx.params))
            vs = num(o["vdd_sram"])
            lines.append(f".ic v(xcell.ql)={vs} v(xcell.qlb)=0 v(xcell.qr)=0 v(xcell.qrb)={vs}")
        # per width: precharge 1 ns, release, pulse, 1 ns settle, read; then precharge
        v_rwl = float(o["v_rwl"])
        pcb: list[tuple[float, float | str]] = [(0.0, 0.0)]
        rwl: list[tuple[float, float | str]] = [(0.0, 0.0)]
        t, reads = 1e-9, []
        for u in units + [0]:  # the last window has no pulse: leakage only
            pcb += [(t, 0.0), (t + te, "{vdd}")]
            t0 = t + 0.5e-9
            if u:
                rwl += [(t0, 0.0), (t0 + te, v_rwl), (t0 + u * tu, v_rwl), (t0 + u * tu + te, 0.0)]
            t_read = t0 + max(u, 8) * tu + 1e-9
            reads.append((t + te + 0.2e-9, t_read))
            pcb += [(t_read + te, "{vdd}"), (t_read + 2 * te, 0.0)]
            t = t_read + 1e-9
        # the bitline after the precharge is released (a) and after the pulse settles (b)
        va_m = [FindAt(f"va{i}", "v(rbl)", at=ta) for i, (ta, _) in enumerate(reads)]
        vb_m = [FindAt(f"vb{i}", "v(rbl)", at=tb) for i, (_, tb) in enumerate(reads)]
        lines += [pwl("vpcb", "pcb", pcb), pwl("vrwl", "rwlp", rwl),
                  tran(o["tmax"] / 4, t, o["tmax"]), ".save v(rbl)"]
        lines += [m.line() for pair in zip(va_m, vb_m, strict=True) for m in pair]
        res = ctx.run("cell", "\n".join(lines))
        va, vb = read_all(res, va_m), read_all(res, vb_m)
        if not np.isfinite(va).all() or not np.isfinite(vb).all():
            raise JobFailed("cell: missing bitline readings")
        drop = va - vb
        leak = drop[-1]  # same window without a pulse
        dv = drop[:-1] - leak
        u = np.array(units, dtype=float)
        slope, icpt = np.polyfit(u, dv, 1)
        c = float(o["c_rbl"])
        row = {"dv_unit": float(slope), "q_unit": float(slope * c),
               "i_read": float(slope * c / tu),
               "cell_inl": float(np.abs(dv - (slope * u + icpt)).max() / slope),
               "leak_dv": float(leak)}
        row.update({f"dv_u{n}": float(v) for n, v in zip(units, dv, strict=True)})
        return row
