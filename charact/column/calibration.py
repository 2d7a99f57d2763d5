"""Calibration of the replica ramp: which pulse widths map the MAC range onto the 32 codes.

Two knobs, as in the paper (Sec. III-A: "32 pulses are simultaneously sent in one clock
cycle ... for setting initial ramp voltage and calibration"):

* ``t_cal``: the width of the pulse that fires the calibration rows together on RBL_R
  (the ``cal_rows`` of the 32 that store -1; the rest store 0 and stay dark).
  It sets the ramp start: after it, a column whose MAC equals ``mac_hi`` is balanced
  (``V(RBL_L) = V(RBL_R)``), so it crosses at the first ramp cycle (code 31).
* ``t_step``: the width of each ramp row's pulse on RBL_L. After 32 steps a column whose
  MAC equals ``mac_lo`` is balanced (it would cross one cycle after the last: code 0).

Procedure, at each operating point (corner, VDD, temperature), on the nominal circuit
(no mismatch; the per-die trim below corrects each column of a die afterwards):

1. Waveform bench: a 2-column array with patterns of MAC = ``mac_hi`` (column 0) and
   ``mac_lo`` (column 1) on the same inputs. After the MAC phase the calibration rows fire
   for one long window and then ramp row 0 for another. From the bitline waveforms: the
   volts per MAC unit ``a`` (from the two MAC-phase differentials), ``t_cal`` (when
   column 0 reaches its target difference ``a * (mac_hi - MAC_0)``) and ``t_step`` (1/32
   of the time ramp row 0 takes to bring column 1 to ``a * (mac_lo - MAC_1)``).
2. Verification benches: the real pulsed conversion of the same two columns (SA clocked,
   so its kickback is included). The differentials after calibration (column 0) and
   after 32 steps (column 1) give residuals; ``t_cal`` is moved by the residual over the
   discharge rate and ``t_step`` scaled by the needed over the measured ramp span. This
   repeats until both residuals are below 0.05 LSB or ``cal_iterations`` runs are done.
   The returned settings are those of the last verification, with its residuals
   (``resid_hi``, ``resid_lo``, in LSB).

Per-column offset trim (``trim = "offset"``, :func:`offset_trim`): with ``cal_rows`` < 32
the rows a column fires are a per-column setting (the rows storing 0 stay on RBL_R, so
the bitline is the same whatever a trim selects). The calibration then also measures
what one row is worth (``lsb_per_row``: the mac_hi pattern at ``cal_rows`` -+ 8 rows,
the differentials at the ramp start). Before its conversions each die converts a
pattern of half an LSB in every column at the nominal rows; the cycle at which a column
crosses brackets its offset (comparator offset, replica mismatch, leakage and the
kickback onto the bitlines together, at a conversion's common mode) within one LSB, and
the column fires that many LSB worth of rows fewer. A second conversion at the new
rows (``trim_steps`` = 2) fits the die's own row worth and corrects what is left. The
range is about -+ cal_rows x lsb_per_row LSB; the cost is ``trim_steps`` conversions per
die (32 ADC cycles each, the array's usual energy) and no extra rows.

How it runs: ``charact sweep examples/column_calibration.toml`` (block
``ima_calibration``, nominal, the corners/VDDs/temperatures to be characterized) writes
a table with one row per point; the characterization spec then names that folder in
``[measure] calibration``, and every job picks the row of its operating point (same
array design, checked by a digest). With ``calibration = "inline"`` a job calibrates its
own point and caches the result in ``<results>/calibration/``. Every row of a column
sweep records ``t_cal``, ``t_step``, ``volts_per_mac`` and ``rep_ratio``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charact.blocks.base import JobContext, JobFailed
from charact.column.bench import run_array
from charact.column.design import Design, draw_inputs, solve_weights
from charact.column.netlist import N_CAL, N_CODES, N_RAMP, W_MAX, X_MAX, array_body
from charact.provenance import write_json
from charact.runner import read_raw
from charact.tables import read_sweep

CAL_SEED = 20241120  # fixed: the calibration patterns are part of the design
TOLERANCE_LSB = 0.05


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Replica pulse settings of one operating point."""

    t_cal: float
    t_step: float
    volts_per_mac: float
    lsb_v: float
    resid_hi: float = math.nan  # LSB, after the returned settings
    resid_lo: float = math.nan
    iterations: int = 0
    # LSB one calibration row moves the ramp start by (measured on the nominal
    # circuit with cal_rows -+ a few rows; NaN when cal_rows = 32 leaves no trim room)
    lsb_per_row: float = math.nan

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def calibration_patterns(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Shared inputs and the weights of a mac_hi column and a mac_lo column."""
    rng = np.random.default_rng(CAL_SEED)
    n = design.cfg.n_dims
    x = draw_inputs(rng, n)
    x[x == 0] = 1
    x[-1] = 1 if n > 1 else x[-1]  # a unit input makes every integer target reachable
    w = np.stack([solve_weights(x, design.mac_hi, rng), solve_weights(x, design.mac_lo, rng)])
    return x, w


def _first_crossing(t: np.ndarray, y: np.ndarray, target: float, t0: float) -> float:
    """First time >= t0 at which the falling ``y`` reaches ``target`` (interpolated)."""
    m = t >= t0
    tt, yy = t[m], y[m]
    below = np.flatnonzero(yy <= target)
    if below.size == 0:
        return math.nan
    i = below[0]
    if i == 0:
        return float(tt[0])
    return float(np.interp(target, [yy[i], yy[i - 1]], [tt[i], tt[i - 1]]))


def _nominal(ctx: JobContext, sub: str) -> JobContext:
    point = dataclasses.replace(ctx.point, seed=None)
    return dataclasses.replace(ctx, point=point, workdir=ctx.workdir / sub)


def calibrate(ctx: JobContext, design: Design) -> Calibration:
    """Run the calibration benches at ``ctx``'s operating point (nominal devices)."""
    nctx = _nominal(ctx, "calibration")
    try:
        return _calibrate(nctx, design)
    finally:
        ctx.elapsed += nctx.elapsed


def _calibrate(ctx: JobContext, design: Design) -> Calibration:
    cfg = design.cfg
    x, w = calibration_patterns(design)
    m_hi, m_lo = (int(v) for v in w @ x)
    cell_t = next(t for t in ctx.templates if "dual10t" in t.subckts)
    sa_t = next(t for t in ctx.templates if "strongarm_sa" in t.subckts)
    # 1. waveform bench: long calibration window, then ramp row 0 held on
    cal_window = 4 * cfg.t_clk
    ramp_window = 3 * N_RAMP * 0.5 * cfg.t_clk
    body, _ = array_body(cfg, ctx.params, sa_t, design.sa_params, x, w, 0.0, 0.0,
                         sa_clocked=False, cal_window=cal_window, ramp_window=ramp_window)
    del cell_t
    res = ctx.run("cal_waveform", body, raw=True)
    v = read_raw(res.raw)
    t = v["time"]
    vl0, vr0, vl1, vr1 = (v[f"v({n})"] for n in ("rbl_l0", "rbl_r0", "rbl_l1", "rbl_r1"))
    t_mac = cfg.t_cal0()
    d0 = float(np.interp(t_mac, t, vl0 - vr0))
    d1 = float(np.interp(t_mac, t, vl1 - vr1))
    if m_hi == m_lo:
        raise JobFailed("calibration patterns have equal MACs")
    a = (d1 - d0) / (m_hi - m_lo)  # D = -a * MAC + b
    if not a > 0:
        raise JobFailed(f"calibration: MAC phase gives no discharge difference (a = {a:.3g})")
    t_c0 = t_mac + 2 * cfg.t_edge
    # the calibration rows pull RBL_R down: column 0's difference rises to its target
    target_hi = a * (design.mac_hi - m_hi)
    tc = _first_crossing(t, vr0 - vl0, -target_hi, t_c0)
    if not math.isfinite(tc):
        raise JobFailed("calibration: the calibration rows cannot reach the ramp start "
                        f"within {cal_window:.3g} s; raise rep_ratio")
    t_cal = tc - t_c0
    vr1_c = float(np.interp(tc, t, vr1))
    t_r0 = t_c0 + cal_window + 4 * cfg.t_edge
    tr = _first_crossing(t, vl1 - vr1_c, a * (design.mac_lo - m_lo), t_r0)
    if not math.isfinite(tr):
        raise JobFailed("calibration: ramp row 0 cannot span the range; raise rep_ratio")
    t_step = (tr - t_r0) / N_RAMP
    rate_cal = (target_hi - d0) / t_cal if t_cal > 0 else math.nan
    lsb_v = a * design.lsb
    # 2. verification with the pulsed conversion, corrected until within tolerance
    def verify(it: int, tc: float, ts: float) -> tuple[float, float, float]:
        conv = run_array(ctx, f"cal_verify{it}", design, x, w, tc, ts)
        return (conv.levels_l[0, 0] - conv.levels_r[0, 0],
                conv.levels_l[1, 0] - conv.levels_r[1, 0],
                conv.levels_l[1, -1] - conv.levels_r[1, -1])

    t_cal, t_step, resid_hi, resid_lo, it = refine_pulses(
        verify, t_cal, t_step, target_hi, a * (design.mac_lo - m_lo), lsb_v, rate_cal,
        int(ctx.options.get("cal_iterations", 3)), cfg.t_edge,
        cfg.t_clk / 2 - 5 * cfg.t_edge)
    worth = _row_worth(ctx, design, x, w[0], t_cal, t_step) / lsb_v
    return Calibration(t_cal, t_step, a, lsb_v, float(resid_hi), float(resid_lo), it,
                       float(worth))


#: ``verify(iteration, t_cal, t_step)``: the differentials of one pulsed conversion of
#: the calibration patterns: (mac_hi column at the ramp start, mac_lo column at the ramp
#: start, mac_lo column after the 32 steps), in volts.
Verify = Callable[[int, float, float], tuple[float, float, float]]


def refine_pulses(verify: Verify, t_cal: float, t_step: float, target_hi: float,
                  target_lo: float, lsb_v: float, rate_cal: float, iterations: int,
                  t_min: float, t_step_max: float
                  ) -> tuple[float, float, float, float, int]:
    """Correct the replica pulses until the pulsed conversion meets both targets within
    :data:`TOLERANCE_LSB`: ``(t_cal, t_step, resid_hi, resid_lo, iterations used)``.

    Pulses of a few edge times are not linear in their width: each pulse also charges
    the replica stacks' inner nodes (a charge that does not grow with the width), so a
    step's swing is about ``q0 + rate x t_step`` with ``q0`` a large share of it.
    Scaling a width by the ratio of the swings then converges only by the factor
    ``q0 / swing`` per iteration (0.7 leaves a fifth of a 20-LSB miss after 8); after
    the first verification each width moves along the secant through its last two
    verifications (when the secant has the expected sign), which is exact for an affine
    swing.
    """
    prev_cal: tuple[float, float] | None = None  # (t_cal, err_hi) of the last verification
    prev_step: tuple[float, float] | None = None  # (t_step, span) of the last verification
    for it in range(1, iterations + 1):
        dc0, dc1, d1_end = verify(it, t_cal, t_step)
        err_hi = dc0 - target_hi
        err_lo = d1_end - target_lo
        resid_hi, resid_lo = err_hi / lsb_v, err_lo / lsb_v
        if max(abs(resid_hi), abs(resid_lo)) < TOLERANCE_LSB or it == iterations:
            return t_cal, t_step, float(resid_hi), float(resid_lo), it
        # the calibration correction moves column 1's start by about err_hi as well
        rate = rate_cal
        if prev_cal is not None and t_cal != prev_cal[0]:
            secant = (err_hi - prev_cal[1]) / (t_cal - prev_cal[0])
            if math.isfinite(secant) and secant * rate_cal > 0:
                rate = secant
        prev_cal = (t_cal, err_hi)
        t_cal = max(t_min, t_cal - err_hi / rate)
        span_meas = dc1 - d1_end
        span_need = (dc1 - err_hi) - target_lo
        if span_meas > 0 and span_need > 0:
            new = t_step * span_need / span_meas
            if prev_step is not None and t_step != prev_step[0]:
                slope = (span_meas - prev_step[1]) / (t_step - prev_step[0])
                if math.isfinite(slope) and slope > 0:
                    new = t_step + (span_need - span_meas) / slope
            prev_step = (t_step, span_meas)
            t_step = min(max(t_min, new), t_step_max)
    raise ValueError("iterations must be >= 1")


ROW_WORTH_SPAN = 8  # rows either side of cal_rows the row worth is measured over


def _row_worth(ctx: JobContext, design: Design, x: np.ndarray, w_hi: np.ndarray,
               t_cal: float, t_step: float) -> float:
    """Volts of ramp start one calibration row is worth: the mac_hi pattern in two
    columns at ``cal_rows`` -+ a few rows, their differentials at the ramp start."""
    r0 = design.cfg.cal_rows
    span = min(ROW_WORTH_SPAN, r0, N_CAL - r0)
    if span < 1:
        return math.nan
    conv = run_array(ctx, "cal_rows", design, x, np.stack([w_hi, w_hi]), t_cal, t_step,
                     cal_rows=[r0 - span, r0 + span])
    d = conv.levels_l[:, 0] - conv.levels_r[:, 0]
    return float((d[1] - d[0]) / (2 * span))


# -- calibration tables and the per-job lookup ---------------------------------------------

def load_calibration_table(path: str | Path) -> pd.DataFrame:
    """A calibration sweep's table (its folder or its table.parquet / .csv); the sweep
    of another block (a column sweep given by mistake) is refused."""
    df = read_sweep(
        path, ("corner", "vdd", "temp", "status", "t_cal", "t_step", "volts_per_mac",
               "design"),
        block="ima_calibration", what="calibration table",
        hint=" (run the calibration sweep first, e.g. charact sweep "
        "examples/column_calibration.toml)").table
    return df[df["status"] == "ok"].reset_index(drop=True)


def calibration_from_record(rec: dict[str, Any]) -> Calibration:
    """A :class:`Calibration` from a table row or a cached record. A value a point does
    not have (``lsb_per_row`` without trim room, or a table made before it existed) is
    stored as NaN, null or not at all: each reads back as NaN."""
    def num(key: str) -> float:
        v = rec.get(key)
        return math.nan if v is None or pd.isna(v) else float(v)

    return Calibration(float(rec["t_cal"]), float(rec["t_step"]), num("volts_per_mac"),
                       num("lsb_v"), num("resid_hi"), num("resid_lo"),
                       int(rec.get("iterations") or 0), num("lsb_per_row"))


def calibration_for(ctx: JobContext, design: Design) -> Calibration:
    """The calibration of ``ctx``'s operating point: from the table named by the
    ``calibration`` option, or computed inline and cached beside the sweep's jobs."""
    source = str(ctx.options.get("calibration", "inline"))
    digest = design.digest(ctx.params)
    if ctx.sim.name == "render":
        # ``charact render`` writes decks only: use the design-time estimate
        cfg = design.cfg
        est = design.lsb * cfg.t_unit / cfg.rep_ratio
        # a design's nominal step may fill half a clock; the calibrated one is shorter
        est = min(est, cfg.t_clk / 2 - 6 * cfg.t_edge)
        return Calibration(t_cal=16 * est, t_step=est, volts_per_mac=math.nan,
                           lsb_v=math.nan)
    p = ctx.point
    if source != "inline":
        df = load_calibration_table(source)
        hit = df[(df["corner"] == p.corner) & np.isclose(df["vdd"], p.vdd)
                 & np.isclose(df["temp"], p.temp)]
        if hit.empty:
            raise JobFailed(f"no calibration for {p.corner} {p.vdd:g} V {p.temp:g} C in "
                            f"{source}")
        hit = hit[hit["design"] == digest]
        if hit.empty:
            raise JobFailed(f"calibration in {source} was made for another array design "
                            "(n_dims, sizes, range or timing differ)")
        return calibration_from_record(hit.iloc[0].to_dict())
    cache = None
    # a job's folder is <results>/work/<key>.<pid>/ (or a sub-folder of it)
    work = next((d for d in ctx.workdir.parents if d.name == "work"), None)
    if work is not None:
        key = f"{p.corner}_{p.vdd:g}_{p.temp:g}_{digest}_{ctx.tech.name}"
        cache = work.parent / "calibration" / f"{key}.json"
        if cache.is_file():
            try:
                return calibration_from_record(json.loads(cache.read_text())["calibration"])
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: calibrate again
    cal = calibrate(ctx, design)
    if cache is not None:
        write_json(cache, {"corner": p.corner, "vdd": p.vdd, "temp": p.temp,
                           "design": digest, "technology": ctx.tech.name,
                           "calibration": cal.row()})
    return cal


# -- per-column offset trim of one die ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trim:
    """The calibration rows each column of a die fires after its offset trim."""

    rows: list[int]  # per column, 0..32
    cycles: list[int]  # crossing cycle of the trim conversion (-1: never crossed)
    offsets: list[float]  # the measured offset, LSB (midpoint of the cycle's interval)
    temp: float  # degC of the trim conversion


TRIM_SEED = 20241121  # fixed: the typical trim pattern is part of the design


def trim_pattern(design: Design, kind: str = "typical") -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n_dims,) and one weight row whose MAC is half an LSB: the ideal column
    then sits in the middle of code 16, so the crossing cycle brackets the column's
    offset in a one-LSB interval centred on whole rows.

    ``few``: few cells carry it (one pulse of up to 31 x 7 units per dimension), so their
    own mismatch is a small part of it, but the bitlines barely discharge, and where the
    read current or the SA's offset moves with the bitline voltage (subthreshold reads,
    DIBL) the offset measured there is not the one a conversion sees. ``typical``: random
    inputs and weights solved for the same MAC, so both bitlines fall as far as in a
    conversion of a random pattern (the cells' mismatch is then part of what is trimmed).
    """
    target = max(1, round(design.lsb / 2))
    if kind == "typical":
        rng = np.random.default_rng(TRIM_SEED)
        x = draw_inputs(rng, design.cfg.n_dims)
        x[x == 0] = 1
        x[-1] = 1  # a unit input makes every integer target reachable
        return x, solve_weights(x, target, rng)
    n_used = min(design.cfg.n_dims, math.ceil(target / (X_MAX * W_MAX)))
    x = np.zeros(design.cfg.n_dims, dtype=int)
    w = np.zeros(design.cfg.n_dims, dtype=int)
    left = target
    for i in range(n_used):
        share = math.ceil(left / (n_used - i))
        # the (x, w) pair closest to this dimension's share, smallest weight first
        best = min((abs(xi * wi - share), wi, xi) for wi in range(1, W_MAX + 1)
                    for xi in range(1, X_MAX + 1))
        x[i], w[i] = best[2], best[1]
        left -= int(x[i] * w[i])
    return x, w


def rows_per_lsb(design: Design, cal: Calibration) -> float:
    """Calibration rows per LSB of ramp start, from the row worth the calibration
    measured (:attr:`Calibration.lsb_per_row`). A short calibration pulse is not
    linear in its width (word-line coupling, charge shared with the stacks' inner
    nodes, rows storing 0 take charge too), so neither t_step / t_cal nor the total
    swing over cal_rows measures a row; the width ratio is the fallback for
    calibrations made before the worth was recorded."""
    if math.isfinite(cal.lsb_per_row) and cal.lsb_per_row > 0:
        return 1.0 / cal.lsb_per_row
    if cal.t_cal > 0 and cal.t_step > 0:
        return cal.t_step / cal.t_cal
    return design.cfg.cal_rows / (N_CODES / 2)


#: ``decide(step, x, w, rows)``: the decisions (n_cols, 32) of one trim conversion of
#: inputs ``x`` (n_dims,) and weights ``w`` (n_cols, n_dims), with ``rows`` calibration
#: rows per column (None: the design's nominal rows, as an untrimmed conversion).
TrimConversion = Callable[[int, np.ndarray, np.ndarray, "list[int] | None"], np.ndarray]


def trim_rows(design: Design, cal: Calibration, n_cols: int, decide: TrimConversion,
              steps: int = 2, pattern: str = "typical", temp: float = math.nan) -> Trim:
    """The per-column offset trim, whatever converts (full SPICE or the composed column).

    One conversion of the half-LSB pattern (:func:`trim_pattern`) with every column at
    the nominal ``cal_rows``: a column of offset ``u`` LSB (positive: it crosses late)
    crosses at cycle ``j = ceil(14.5 + u)``, so ``u`` lies in ``(j - 15.5, j - 14.5]``.
    Removing ``(j - 15) * rows_per_lsb`` rows (rounded) moves its ramp start by that
    many LSB. A row's worth in codes varies with the point (the ramp's steps shrink as
    RBL_L falls), so with ``steps`` > 1 the die converts the pattern again at its
    new rows: the moves of all its columns give the die's own row worth (least squares;
    one column's move is quantized to a cycle), and each column is corrected by what it
    still misses, until every column crosses at cycle 15 or the steps are spent.
    ``offsets`` are the first conversion's (the die's own offsets).
    """
    x, w1 = trim_pattern(design, pattern)
    w = np.repeat(w1[None, :], n_cols, 0)
    prior = rows_per_lsb(design, cal)
    per_lsb = prior
    rows = np.full(n_cols, design.cfg.cal_rows)
    first: np.ndarray | None = None
    offsets: list[float] = []
    moves: list[tuple[np.ndarray, np.ndarray]] = []  # (rows moved, LSB moved), unclipped
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for step in range(steps):
        dec = np.asarray(decide(step, x, w, None if step == 0 else [int(r) for r in rows]))
        cycles = np.where(dec.any(axis=1), dec.argmax(axis=1), -1)
        # never crossed: at least 16.5 LSB late
        u = np.where(cycles >= 0, cycles, N_RAMP).astype(float) - 15.0
        if first is None:
            first, offsets = cycles, [float(v) for v in u]
        if prev is not None:
            # the die's own row worth, fitted over every column's move (a single
            # column's is quantized to a cycle): a row is worth more where the ramp's
            # steps are small
            ok = (prev[2] > 0) & (prev[2] < N_RAMP - 1) & (cycles > 0) & (cycles < N_RAMP - 1)
            moves.append(((rows - prev[0])[ok], (u - prev[1])[ok]))
            dr = np.concatenate([m[0] for m in moves])
            du = np.concatenate([m[1] for m in moves])
            if (dr != 0).sum() >= 2:
                worth = float(dr @ du) / float(dr @ dr)
                if 0.25 / prior < worth < 4 / prior:
                    per_lsb = 1.0 / worth
        if not u.any():
            break
        prev = (rows.copy(), u, cycles)
        rows = np.clip(rows - np.rint(u * per_lsb).astype(int), 0, N_CAL)
    assert first is not None
    return Trim([int(r) for r in rows], [int(j) for j in first], offsets, float(temp))


def offset_trim(ctx: JobContext, design: Design, cal: Calibration, n_cols: int) -> Trim:
    """Measure each column's offset on this die in full SPICE and choose its calibration
    rows (:func:`trim_rows`). The trim runs at ``ctx``'s point; for a trim at another
    temperature pass :func:`at_temperature`'s context (the same die: device mismatch is
    keyed per device)."""
    def decide(step: int, x: np.ndarray, w: np.ndarray, rows: list[int] | None) -> np.ndarray:
        return run_array(ctx, "trim" if step == 0 else f"trim{step + 1}", design, x, w,
                         cal.t_cal, cal.t_step, cal_rows=rows).decisions

    return trim_rows(design, cal, n_cols, decide, int(ctx.options.get("trim_steps", 1)),
                     str(ctx.options.get("trim_pattern", "typical")), float(ctx.point.temp))


@contextlib.contextmanager
def at_temperature(ctx: JobContext, temp: float) -> Iterator[JobContext]:
    """``ctx`` moved to another temperature (its own work folder), its simulator time
    and decks added back to ``ctx`` afterwards: the same die and supply, for a
    calibration done cold and used hot."""
    if math.isclose(temp, ctx.point.temp):
        yield ctx
        return
    tctx = dataclasses.replace(ctx, point=dataclasses.replace(ctx.point, temp=temp),
                               workdir=ctx.workdir / f"at_{temp:g}C", decks=[], elapsed=0.0)
    try:
        yield tctx
    finally:
        ctx.elapsed += tctx.elapsed
        ctx.decks += tctx.decks


__all__ = ["Calibration", "N_CODES", "Trim", "at_temperature", "calibrate",
           "calibration_for", "calibration_from_record",
           "calibration_patterns", "load_calibration_table", "offset_trim", "refine_pulses",
           "rows_per_lsb", "trim_pattern", "trim_rows"]
