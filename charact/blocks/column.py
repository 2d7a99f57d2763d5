"""The replica-ramp in-memory-ADC column and array (Topkima-Former, S. Dong et al., arXiv
2411.13050, Sec. III-A), and the single-cell discharge bench.

Blocks:

* ``ima_column``: converts input/weight patterns on an array of ``n_cols`` columns of
  ``n_dims`` dimensions (3 dual 10T cells per signed 4-bit weight) plus 64 replica rows,
  one StrongARM SA per column. One row per column conversion: ideal MAC and code, the
  converted code and crossing cycle, bitline voltages, ramp step/DNL/INL, and, with
  early stop (``k`` > 0), the stop cycle, alpha and whether the column is in the top-k.
* ``ima_calibration``: the nominal calibration of the replica pulses per operating point
  (``charact.calibration``); its table feeds ``ima_column``'s ``calibration`` option.
* ``ima_cell``: discharge of one dual 10T cell against pulse width and bitline voltage.

Signal convention, code and timing: ``charact.blocks.column_netlist``. Early stop: the
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
import json
import math
from typing import Any

import numpy as np

from charact.bench import FindAt, dc, num, pwl, read_all, tran
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.column_netlist import (
    N_CODES,
    N_RAMP,
    W_MAX,
    X_MAX,
    ColumnConfig,
    array_body,
)
from charact.blocks.options import SPICE_OPTIONS_RULE, check_spice_options, opt, option_defaults
from charact.errors import UserError
from charact.runner import read_raw

PATTERNS = ("stratified", "uniform", "explicit")
STORAGE = ("lean", "ideal", "6t")
WIRING = ("q", "qb")


@dataclasses.dataclass(frozen=True)
class DesignOptions:
    """The array design: ``[measure]`` options shared by the column, calibration and
    hierarchical blocks (times in s, voltages in V, capacitances in F)."""

    n_dims: int = opt(64, "dimensions per column (the paper's: 64 x 3 cells + 64 replica "
                      "rows)", min=1, max=512)
    storage: str = opt("lean", "storage of each cell: lean (only the read stacks that can "
                       "conduct), ideal (read ports on ideal sources) or 6t", choices=STORAGE)
    wiring: str = opt("q", "storage node the read stack sees: q (a zero weight draws no "
                      "current) or qb", choices=WIRING)
    vdd_sram: float = opt(0.5, "SRAM supply", positive=True)
    v_rwl: float = opt(0.5, "read word-line high level", positive=True)
    v_pre: float = opt(0.5, "bitline precharge voltage", positive=True)
    c_rbl: float = opt(0.0, "lumped capacitance per bitline; 0 = c_rbl_per_dim x n_dims",
                       min=0)
    # A long-channel read driver at 0.5 V still sinks ~0.3 uA in FreePDK45: 70 fF of
    # bitline per dimension gives ~37 uV per MAC unit, ~4 mV per LSB at mac_range 1/8.
    c_rbl_per_dim: float = opt(70e-15, "bitline capacitance per dimension (when c_rbl = 0)",
                               positive=True)
    t_unit: float = opt(0.5e-9, "one LSB of input pulse width (2 GHz PWM clock)",
                        positive=True)
    scales: list[int] = opt([1, 2, 4], "pulse-width scale of the three cells of a weight",
                            positive=True, length=3)
    t_clk: float = opt(4e-9, "ADC clock period (one ramp step per cycle)", positive=True)
    t_edge: float = opt(30e-12, "word-line and clock edges", positive=True,
                        rule="less than t_clk / 10 and than t_unit")
    tmax: float = opt(200e-12, "largest transient time step", positive=True)
    mac_range: float = opt(0.125, "+-fraction of the full scale n_dims x 7 x 31 mapped onto "
                           "the 32 codes", positive=True, max=1)
    mac_lo: int = opt(0, "lowest MAC of the code range (mac_lo = mac_hi = 0: from mac_range)",
                      rule="mac_hi - mac_lo >= 32 unless both are 0")
    mac_hi: int = opt(0, "highest MAC of the code range (mac_lo + 32 x LSB)")
    rep_ratio: float = opt(0.0, "replica/MAC read-stack width; 0 = one ramp step in about "
                           "t_step_nom", min=0)
    t_step_nom: float = opt(1e-9, "nominal ramp-step pulse (when rep_ratio = 0)",
                            positive=True)
    sa_params: dict[str, float] = opt({}, "strongarm_sa template parameters of the column's "
                                      "comparators", rule="names of strongarm_sa parameters")
    cal_iterations: int = opt(3, "iterations of the calibration of the replica pulses",
                              min=1, max=10)
    # The StrongARM decides on a few mV after regeneration from a tiny imbalance: with
    # ngspice's default reltol (1e-3) truncation error flips decisions at ~10 mV.
    spice_options: list[str] = opt(["reltol=1e-4"], "extra .option words of every deck",
                                   rule=SPICE_OPTIONS_RULE, check=check_spice_options)


#: The defaults of :class:`DesignOptions`.
DESIGN_OPTIONS: dict[str, Any] = option_defaults(DesignOptions)


@dataclasses.dataclass(frozen=True)
class Design:
    """The array design a job converts with: electrical config and the mapped range."""

    cfg: ColumnConfig
    mac_lo: int
    mac_hi: int
    sa_params: dict[str, float]

    @property
    def lsb(self) -> float:
        return (self.mac_hi - self.mac_lo) / N_CODES

    def code_ideal(self, mac: np.ndarray | int) -> np.ndarray:
        """The ideal code under the calibrated (linear) transfer."""
        u = np.floor((np.asarray(mac, dtype=float) - self.mac_lo) / self.lsb)
        return np.clip(u, 0, N_CODES - 1).astype(int)

    def digest(self, cell_params: dict[str, float], extra: str = "") -> str:
        blob = json.dumps({"cfg": dataclasses.asdict(self.cfg), "mac": [self.mac_lo,
                           self.mac_hi], "sa": self.sa_params, "cell": cell_params,
                           "extra": extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_design(opts: dict[str, Any]) -> None:
    """The design's cross-field rules (each value is checked by :class:`DesignOptions`)."""
    lo, hi = opts["mac_lo"], opts["mac_hi"]
    if (lo, hi) != (0, 0) and hi - lo < N_CODES:
        raise UserError(f"[measure] mac_hi - mac_lo must be >= {N_CODES}")
    # an edge must fit inside the shortest input pulse and leave room in a clock cycle
    if not opts["t_edge"] < opts["t_clk"] / 10:
        raise UserError(f"[measure] t_edge must be less than t_clk / 10 "
                        f"({opts['t_clk'] / 10:g} s), got {opts['t_edge']:g}")
    if not opts["t_edge"] < opts["t_unit"]:
        raise UserError(f"[measure] t_edge must be less than t_unit ({opts['t_unit']:g} s), "
                        f"got {opts['t_edge']:g}")
    if opts["sa_params"]:
        from charact.templates import check_params, load_template

        sa = load_template("sense_amp.sp").subckt("strongarm_sa")
        try:
            check_params(sa, opts["sa_params"])
        except UserError as exc:
            raise UserError(f"[measure] sa_params: {exc}") from None


def make_design(opts: dict[str, Any]) -> Design:
    n = int(opts["n_dims"])
    full_scale = n * W_MAX * X_MAX
    if (opts["mac_lo"], opts["mac_hi"]) == (0, 0):
        lsb = max(1, round(2 * float(opts["mac_range"]) * full_scale / N_CODES))
        mac_lo, mac_hi = -16 * lsb, 16 * lsb
    else:
        mac_lo, mac_hi = int(opts["mac_lo"]), int(opts["mac_hi"])
    lsb = (mac_hi - mac_lo) / N_CODES
    rep_ratio = float(opts["rep_ratio"]) or round(lsb * opts["t_unit"] / opts["t_step_nom"], 3)
    cfg = ColumnConfig(
        n_dims=n, vdd_sram=float(opts["vdd_sram"]), v_rwl=float(opts["v_rwl"]),
        v_pre=float(opts["v_pre"]),
        c_rbl=float(opts["c_rbl"]) or float(opts["c_rbl_per_dim"]) * n,
        t_unit=float(opts["t_unit"]), scales=tuple(int(s) for s in opts["scales"]),
        t_clk=float(opts["t_clk"]), t_edge=float(opts["t_edge"]), rep_ratio=rep_ratio,
        storage=str(opts["storage"]), wiring=str(opts["wiring"]), tmax=float(opts["tmax"]))
    return Design(cfg, mac_lo, mac_hi, {k: float(v) for k, v in opts["sa_params"].items()})


# -- patterns ------------------------------------------------------------------------------

def solve_weights(x: np.ndarray, target: int, rng: np.random.Generator,
                  max_iter: int = 400) -> np.ndarray:
    """Weights in -7..7 with ``x . w`` equal (or as close as found) to ``target``: from a
    random start, coordinate moves that shrink the residual, random kicks when stuck."""
    n = x.size
    w = rng.integers(-W_MAX, W_MAX + 1, n)
    best, best_r = w.copy(), abs(int(target - x @ w))
    nz = np.flatnonzero(x)
    if nz.size == 0:
        return w
    for _ in range(max_iter):
        r = int(target - x @ w)
        if abs(r) < best_r:
            best, best_r = w.copy(), abs(r)
        if r == 0:
            break
        xs = x[nz]
        new = np.clip(w[nz] + np.rint(r / xs).astype(int), -W_MAX, W_MAX)
        left = np.abs(r - xs * (new - w[nz]))
        cand = np.flatnonzero(left == left.min())
        if left.min() < abs(r):
            i = nz[rng.choice(cand)]
            w[i] = new[np.flatnonzero(nz == i)[0]]
        else:  # stuck: a random +-1 kick
            i = rng.choice(nz)
            w[i] = np.clip(w[i] + rng.choice([-1, 1]), -W_MAX, W_MAX)
    return best


def draw_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Signed 5-bit inputs: sign picks RWL+/RWL-, magnitude 0..31 the pulse width."""
    return rng.integers(-X_MAX, X_MAX + 1, n)


def stratified_targets(rng: np.random.Generator, design: Design, count: int) -> np.ndarray:
    """Target MACs spread evenly over the 32 codes (each code as often as possible, in
    random order), uniform inside each code's MAC interval."""
    codes = rng.permutation(np.resize(rng.permutation(N_CODES), count))
    mac = design.mac_lo + (codes + rng.random(count)) * design.lsb
    return np.clip(np.floor(mac), design.mac_lo, design.mac_hi - 1).astype(int)


def draw_patterns(rng: np.random.Generator, design: Design, mode: str, n_cols: int,
                  n_decks: int, explicit: tuple[list, list] | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs, weights[n_cols, n_dims]) for each deck of a job."""
    n = design.cfg.n_dims
    if mode == "explicit":
        assert explicit is not None
        return [(np.asarray(explicit[0], dtype=int), np.asarray(explicit[1], dtype=int))]
    out = []
    targets = stratified_targets(rng, design, n_cols * n_decks) if mode == "stratified" \
        else None
    for d in range(n_decks):
        x = draw_inputs(rng, n)
        if targets is None:
            w = rng.integers(-W_MAX, W_MAX + 1, (n_cols, n))
        else:
            w = np.stack([solve_weights(x, int(t), rng)
                          for t in targets[d * n_cols:(d + 1) * n_cols]])
        out.append((x, w))
    return out


def pattern_string(x: np.ndarray, w_col: np.ndarray) -> str:
    return f"x={','.join(str(int(v)) for v in x)};w={','.join(str(int(v)) for v in w_col)}"


# -- running and decoding one array conversion ----------------------------------------------

@dataclasses.dataclass
class Conversion:
    """The waveform-derived result of one array deck."""

    decisions: np.ndarray  # (n_cols, 32) bool: dout after each ramp cycle
    levels_l: np.ndarray  # (n_cols, 33) V(RBL_L) before each evaluation (0 = ramp start)
    levels_r: np.ndarray
    v_l_mac: np.ndarray  # (n_cols,) after the MAC phase
    v_r_mac: np.ndarray


def run_array(ctx: JobContext, name: str, design: Design, x: np.ndarray, w: np.ndarray,
              t_cal: float, t_step: float) -> Conversion:
    cfg = design.cfg
    if t_step > cfg.t_clk / 2 - 5 * cfg.t_edge:
        raise JobFailed(f"ramp step pulse {t_step:.3g} s exceeds half a clock; raise "
                        "rep_ratio")
    if t_cal < cfg.t_edge or t_step < cfg.t_edge:
        raise JobFailed(f"replica pulse shorter than an edge (t_cal {t_cal:.3g} s, t_step "
                        f"{t_step:.3g} s); lower rep_ratio")
    cell_t, sa_t = _templates(ctx)
    body, _ = array_body(cfg, ctx.params, sa_t, design.sa_params, x, w, t_cal, t_step)
    res = ctx.run(name, body, raw=True)
    v = read_raw(res.raw)
    t = v["time"]
    n_cols = w.shape[0]

    def at(node: str, times: np.ndarray) -> np.ndarray:
        if node not in v:
            raise JobFailed(f"{name}: no vector {node}")
        return np.interp(times, t, v[node])

    t_lv = np.array([cfg.t_level(t_cal, j) for j in range(N_RAMP + 1)])
    t_dec = np.array([cfg.t_decision(t_cal, j) for j in range(N_RAMP)])
    t_mac = cfg.t_cal0()
    dec = np.stack([at(f"v(dout{c})", t_dec) > ctx.point.vdd / 2 for c in range(n_cols)])
    ll = np.stack([at(f"v(rbl_l{c})", t_lv) for c in range(n_cols)])
    lr = np.stack([at(f"v(rbl_r{c})", t_lv) for c in range(n_cols)])
    vl = np.array([at(f"v(rbl_l{c})", np.array([t_mac]))[0] for c in range(n_cols)])
    vr = np.array([at(f"v(rbl_r{c})", np.array([t_mac]))[0] for c in range(n_cols)])
    return Conversion(dec, ll, lr, vl, vr)


def _templates(ctx: JobContext):
    cell = next(t for t in ctx.templates if "dual10t" in t.subckts)
    sa = next(t for t in ctx.templates if "strongarm_sa" in t.subckts)
    return cell, sa


def cross_cycles(decisions: np.ndarray) -> np.ndarray:
    """First ramp cycle whose decision says crossed, -1 if none."""
    any_ = decisions.any(axis=1)
    return np.where(any_, decisions.argmax(axis=1), -1)


def early_stop(cross: np.ndarray, k: int) -> tuple[int, np.ndarray]:
    """The counter and arbiter: stop at the end of the first cycle in which at least k
    columns have crossed; columns crossing earlier are selected, ties in the stopping
    cycle go to the smallest addresses. Returns (stop_cycle, selected)."""
    n = cross.size
    selected = np.zeros(n, dtype=bool)
    if k <= 0:
        return N_RAMP - 1, np.ones(n, dtype=bool)
    stop = N_RAMP - 1
    for j in range(N_RAMP):
        if int(((cross >= 0) & (cross <= j)).sum()) >= k:
            stop = j
            break
    earlier = np.flatnonzero((cross >= 0) & (cross < stop))
    selected[earlier] = True
    tied = np.flatnonzero(cross == stop)  # ascending addresses
    selected[tied[:max(0, k - earlier.size)]] = True
    return stop, selected


def ramp_linearity(levels_l: np.ndarray) -> tuple[float, float, float]:
    """Mean step (V), max |DNL| and max |INL| (LSB) of the ramp on RBL_L of one column."""
    steps = -np.diff(levels_l)
    mean = float(steps.mean())
    if not mean > 0:
        return mean, math.nan, math.nan
    dnl = steps / mean - 1
    inl = (levels_l[0] - levels_l[1:]) / mean - np.arange(1, levels_l.size)
    return mean, float(np.abs(dnl).max()), float(np.abs(inl).max())


# -- blocks -----------------------------------------------------------------------------------

def job_patterns(ctx: JobContext) -> tuple[Design, list, int]:
    """The design and the input/weight patterns of one column job, drawn from the job's
    seed (or ``pattern_seed`` for a nominal run): every column mode converts the same
    patterns for the same seed."""
    o = ctx.options
    design = make_design(o)
    n_cols = int(o["n_cols"])
    n_decks = math.ceil((int(o["conversions"]) or n_cols) / n_cols)
    # a die's patterns are fixed by its stream and die number (the same at every point)
    seed = ctx.point.stream_seed if ctx.point.seed is not None else int(o["pattern_seed"])
    rng = np.random.default_rng(seed)
    explicit = (o["inputs"], o["weights"]) if o["patterns"] == "explicit" else None
    return design, draw_patterns(rng, design, str(o["patterns"]), n_cols, n_decks,
                                 explicit), seed


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
    version = "1"
    Options = ImaColumnOptions
    summary_columns = ("code", "cross_cycle", "v_mac", "alpha")
    columns = (
        "deck", "col", "mac_ideal", "code_ideal", "code", "cross_cycle", "v_mac", "v_l_mac",
        "v_r_mac", "v_cal", "ramp_step", "ramp_dnl", "ramp_inl", "flips", "k", "stop_cycle",
        "alpha", "selected", "n_dims", "mac_lo", "mac_hi", "lsb_mac", "t_cal", "t_step",
        "rep_ratio", "volts_per_mac", "c_rbl", "pattern_seed", "pattern",
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
            from charact.calibration import load_calibration_table

            try:
                table = load_calibration_table(cal)
            except UserError as exc:  # name the option the path came from
                raise UserError(f"[measure] calibration: {exc}") from None
            # the calibration's content is part of every job key
            opts["calibration_sha256"] = hashlib.sha256(
                table.to_json(orient="records").encode()).hexdigest()[:16]
        return opts

    def simulate(self, ctx: JobContext) -> list[dict[str, Any]]:
        from charact.calibration import calibration_for

        o = ctx.options
        design, decks, seed = job_patterns(ctx)
        cal = calibration_for(ctx, design)
        rows: list[dict[str, Any]] = []
        for d, (x, w) in enumerate(decks):
            res = run_array(ctx, f"array{d}", design, x, w, cal.t_cal, cal.t_step)
            rows += self._rows(d, design, x, w, res, cal, int(o["k"]), seed)
        return rows[:int(o["conversions"]) or int(o["n_cols"])]

    def _rows(self, deck: int, design: Design, x: np.ndarray, w: np.ndarray,
              res: Conversion, cal: Any, k: int, seed: int) -> list[dict[str, Any]]:
        mac = w @ x
        cross = cross_cycles(res.decisions)
        stop, selected = early_stop(cross, k)
        out = []
        for c in range(w.shape[0]):
            step, dnl, inl = ramp_linearity(res.levels_l[c])
            cc = int(cross[c])
            dec = res.decisions[c]
            out.append({
                "deck": deck, "col": c, "mac_ideal": int(mac[c]),
                "code_ideal": int(design.code_ideal(mac[c])),
                "code": (N_CODES - 1 - cc) if cc >= 0 else 0, "cross_cycle": cc,
                "v_mac": float(res.v_r_mac[c] - res.v_l_mac[c]),
                "v_l_mac": float(res.v_l_mac[c]), "v_r_mac": float(res.v_r_mac[c]),
                "v_cal": float(res.levels_l[c, 0] - res.levels_r[c, 0]),
                "ramp_step": step, "ramp_dnl": dnl, "ramp_inl": inl,
                # decisions that fell back to 0 after the crossing (noise near a tie)
                "flips": int((dec[cc:] == 0).sum()) if cc >= 0 else 0,
                "k": k, "stop_cycle": stop, "alpha": (stop + 1) / N_RAMP,
                "selected": bool(selected[c]), "n_dims": design.cfg.n_dims,
                "mac_lo": design.mac_lo, "mac_hi": design.mac_hi, "lsb_mac": design.lsb,
                "t_cal": cal.t_cal, "t_step": cal.t_step, "rep_ratio": design.cfg.rep_ratio,
                "volts_per_mac": cal.volts_per_mac, "c_rbl": design.cfg.c_rbl,
                "pattern_seed": seed, "pattern": pattern_string(x, w[c]),
            })
        return out


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
    version = "1"
    Options = DesignOptions
    summary_columns = ("t_cal", "t_step", "lsb_v", "resid_hi", "resid_lo")
    columns = ("t_cal", "t_step", "volts_per_mac", "lsb_v", "resid_hi", "resid_lo",
               "iterations", "n_dims", "mac_lo", "mac_hi", "lsb_mac", "rep_ratio", "c_rbl",
               "design")
    units = {"t_cal": "s", "t_step": "s", "volts_per_mac": "V", "lsb_v": "V",
             "resid_hi": "LSB", "resid_lo": "LSB", "iterations": "1", "n_dims": "1",
             "mac_lo": "1", "mac_hi": "1", "lsb_mac": "1", "rep_ratio": "1", "c_rbl": "F",
             "design": "-"}

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        check_design(opts)
        return opts

    def simulate(self, ctx: JobContext) -> dict[str, Any]:
        from charact.calibration import calibrate

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
