"""The array design of the replica-ramp in-memory-ADC column (Topkima-Former, S. Dong et
al., arXiv 2411.13050, Sec. III-A): the ``[measure]`` options every column block shares,
the mapped MAC range, and the input/weight patterns a job converts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np

from charact.blocks.options import SPICE_OPTIONS_RULE, check_spice_options, opt, option_defaults
from charact.column.netlist import N_CAL, N_CODES, N_RAMP, W_MAX, X_MAX, ColumnConfig
from charact.errors import UserError

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
    c_rbl_per_dim: float = opt(70e-15, "bitline capacitance per dimension (when c_rbl = 0 "
                               "and c_rbl_per_row = 0)", positive=True)
    c_rbl_per_row: float = opt(0.0, "bitline capacitance per array row (wire and the "
                               "junctions the lean netlist leaves out); > 0: c_rbl = this "
                               "x (3 n_dims + 64) rows", min=0)
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
                              min=1, max=20)
    cal_rows: int = opt(32, "calibration rows storing -1 at the nominal setting (of 32); "
                        "fewer leave a per-column trim room (the calibration measures a "
                        "row's worth, lsb_per_row)",
                        min=1, max=32)
    trim: str = opt("none", "per-column offset trim of each die before its conversions: "
                    "none or offset (one conversion of a half-LSB MAC sets each column's "
                    "calibration rows)", choices=("none", "offset"),
                    rule="offset needs cal_rows < 32")
    trim_pattern: str = opt("typical", "pattern of the trim conversion, a half-LSB MAC "
                            "either way: typical (random inputs, weights solved for the "
                            "target: the bitlines discharge as far as in a conversion) or few "
                            "(on a few cells; the bitlines stay near the precharge, where "
                            "subthreshold reads and the SA's offset differ from a "
                            "conversion's)", choices=("few", "typical"))
    trim_steps: int = opt(2, "conversions of the trim pattern per die: the first measures "
                          "each column's offset, each further one corrects what the new "
                          "rows still miss", min=1, max=6)
    trim_temp: str = opt("point", "temperature of the trim conversion: point (the job's) or "
                         "degrees C, e.g. 27 to trim cold and run hot", min_len=1,
                         rule="point or a number")
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
    if opts["trim"] != "none" and opts["cal_rows"] >= N_CAL:
        raise UserError(f"[measure] trim = {opts['trim']!r} needs cal_rows < {N_CAL} (rows "
                        "a trim can add)")
    if opts["trim_temp"] != "point":
        try:
            t = float(opts["trim_temp"])
        except ValueError:
            t = math.nan
        if not -273.15 < t < 500:
            raise UserError("[measure] trim_temp must be 'point' or a temperature in degC, "
                            f"got {opts['trim_temp']!r}")
    if opts["sa_params"]:
        from charact.templates import check_params, load_template

        sa = load_template("sense_amp.sp").subckt("strongarm_sa")
        try:
            check_params(sa, opts["sa_params"])
        except UserError as exc:
            raise UserError(f"[measure] sa_params: {exc}") from None


def array_rows(n_dims: int) -> int:
    """Rows on a column's bitlines: three cells per weight and the 64 replica rows."""
    return 3 * n_dims + N_CAL + N_RAMP


def bitline_capacitance(opts: dict[str, Any]) -> float:
    """The lumped capacitance per bitline when ``c_rbl`` is 0: per row (derived from the
    array) when ``c_rbl_per_row`` is set, else per dimension."""
    if float(opts["c_rbl_per_row"]) > 0:
        return float(opts["c_rbl_per_row"]) * array_rows(int(opts["n_dims"]))
    return float(opts["c_rbl_per_dim"]) * int(opts["n_dims"])


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
        c_rbl=float(opts["c_rbl"]) or bitline_capacitance(opts),
        t_unit=float(opts["t_unit"]), scales=tuple(int(s) for s in opts["scales"]),
        t_clk=float(opts["t_clk"]), t_edge=float(opts["t_edge"]), rep_ratio=rep_ratio,
        storage=str(opts["storage"]), wiring=str(opts["wiring"]), tmax=float(opts["tmax"]),
        cal_rows=int(opts["cal_rows"]))
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


