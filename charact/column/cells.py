"""Cell-level models of the IMA column from small SPICE benches at one operating point.

What is characterized (all with the column's own devices, sizes and tolerances):

* **Read stacks** of three widths: the MAC cell's (``mac``), one replica ramp row's
  (``rep``, ``rep_ratio`` times wider) and the 32 calibration rows merged into one
  (``cal``, 32 x ``rep_ratio``), as in the column's lean storage. One DC sweep of the
  bitline voltage gives the nominal on-current ``I(V)`` (RWL at ``v_rwl``, storage gate
  at ``vdd_sram``) and the leakage with RWL low; a Monte-Carlo deck of ``cell_samples``
  instances per width (each instance draws its own Pelgrom shifts) gives every device's
  current ratio to the nominal one. Its log is the per-device spread: ``sigma_ln`` (and
  ``sigma_vt_eq = sigma_ln / (d ln I / d V_RWL)``, the threshold-voltage-equivalent
  spread). The ratio of one instance hardly changes with the bitline voltage (``corr_v``
  reports it), so a device is one multiplicative factor on the nominal ``I(V)``.
* **Pulse edges**: a nominal transient of pulses of 1..124 units at a fixed drain
  voltage; the charge of a pulse of width ``t`` is ``gain * I(V) * (t + t_off)``.
* **Bitline parasitics**: the capacitance the SA input, the precharge switch and the
  (off) replica stacks add to each bitline, and the drain capacitance of one MAC stack.
* **Sense amplifier**: the offset of ``sa_samples`` Monte-Carlo instances in one deck,
  found by a parallel bisection (one clock cycle per deck, each instance with its own
  inputs; the devices are the same in every deck because their mismatch is keyed by
  instance, ``charact.mismatch``), the nominal offset by the same bisection, and the decision delay
  ``t0 + tau * ln(vdd / dv)`` from a nominal deck; at the column's typical decision
  common mode and ``sa_vcm_span`` either side (the offset spread changes with it; the
  composed column interpolates, one standard score per SA). The offset may instead come from a
  ``sense_amp`` sweep (``sa_offset = "<folder>"``).
* **Sensitivities**: every Monte-Carlo instance's devices have known scores (device-keyed
  mismatch, :mod:`charact.mismatch`, read from the rendered bench), so each instance's
  ln current ratio is regressed on the threshold and current-factor scores of its access
  and driver devices (4 terms + intercept, :func:`fit_linear`), and each SA's offset on
  its devices' scores (:func:`select_linear`: the SA has ~22 devices, so the terms are
  chosen by forward selection on the leave-one-out error). With these, the composed
  column computes a die from the same device scores the SPICE deck of that die holds
  (:func:`charact.column.composed.keyed_die`): conversions pair one to one.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from charact.bench import Delay, FindAt, Integ, When, clock, dc, num, pwl, read_all, tran, trapezoid
from charact.blocks.base import JobContext, JobFailed
from charact.blocks.options import opt, option_defaults
from charact.column.design import Design
from charact.column.netlist import N_CAL, N_RAMP
from charact.errors import UserError
from charact.tables import read_table

STACKS = ("mac", "rep", "cal")
V_STEP = 5e-3  # DC grid of the bitline voltage
V_LOW = 0.02
# Pulse widths (units of t_unit) of the edge-charge bench: the replica pulses are short
# (t_cal ~0.7, t_step ~1.6 units at the default design), the MAC pulses 1..124 units.
PULSE_UNITS = (0.3, 0.5, 0.7, 1, 1.3, 1.6, 2, 3, 4, 8, 16, 32, 64, 124)
DVG = 5e-3  # RWL step for d ln I / d V_RWL
MAC_CAP_STACKS = 16  # MAC stacks on the node that measures their drain capacitance
SA_T_RISE = 0.2e-9  # SA offset bench: clock rise (the latch starts reset)
SA_EVAL = 1.2e-9  # and how long it evaluates before the decision is read


@dataclasses.dataclass(frozen=True)
class CellOptions:
    """``[measure]`` options of the cell-level characterization (shared by
    ``ima_cell_mc`` and ``ima_column_composed``; voltages in V)."""

    cell_samples: int = opt(200, "Monte-Carlo instances per read-stack width", min=2,
                            max=2000)
    cell_seed: int = opt(1, "seed of the cell and SA Monte-Carlo decks")
    sa_samples: int = opt(128, "Monte-Carlo SA instances (one deck per bisection step)",
                          min=2, max=2000)
    sa_range: float = opt(0.1, "the SA offsets are searched in +-sa_range", positive=True)
    sa_resolution: float = opt(0.5e-3, "the offset bisection stops below this (the spread "
                               "is ~15 mV)", positive=True, rule="less than sa_range")
    sa_vcm: float = opt(0.0, "common mode of the SA benches; 0 = the column's median at "
                        "crossing", min=0, max=1.5)
    sa_vcm_span: float = opt(0.05, "the SA benches also run at sa_vcm -+ this (0 = one "
                             "common mode only)", min=0, max=0.3)
    sa_offset: str = opt("mc", "mc (the SA Monte-Carlo bench) or a sense_amp sweep folder",
                         min_len=1, rule="a path must hold a sense_amp sweep table")


#: The defaults of :class:`CellOptions`.
CELL_OPTIONS: dict[str, Any] = option_defaults(CellOptions)


def check_cell_options(opts: dict[str, Any]) -> None:
    """The cell options' cross-field rules (each value is checked by :class:`CellOptions`)."""
    if not opts["sa_resolution"] < opts["sa_range"]:
        raise UserError("[measure] sa_resolution must be less than sa_range")
    src = opts["sa_offset"]
    if src != "mc" and not (Path(src) / "table.parquet").is_file() and not (
            Path(src).suffix == ".parquet" and Path(src).is_file()):
        raise UserError(f"[measure] sa_offset: no sense_amp sweep table at {src}")


# -- linear sensitivities ---------------------------------------------------------------------

#: The score kinds of one device, in the order :func:`bench_scores` lays them out.
SCORE_KINDS = ("vt", "beta")
MIN_DOF = 10  # residual degrees of freedom a fit keeps (its sigma is then +-~22 %)


@dataclasses.dataclass
class Regression:
    """``y = intercept + sum coef_t z_t`` over device scores (terms ``"<device>:vt"`` or
    ``"<device>:beta"``, the device path relative to its instance), least squares."""

    terms: list[str]
    coef: list[float]
    intercept: float
    se: list[float]  # standard errors of coef
    r2: float  # in-sample
    r2_loo: float  # leave-one-out (PRESS): a new instance's, for fixed terms
    sigma: float  # residual standard deviation, ddof = terms + 1
    n: int  # instances fitted
    r2_cv: float = math.nan  # cross-validated with the term selection (select_linear)

    def predict(self, scores: dict[str, float]) -> float:
        """The fit at one instance's scores (``{term: score}``)."""
        return self.intercept + sum(c * scores[t] for t, c in zip(self.terms, self.coef,
                                                                  strict=True))


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(beta with intercept first, its standard errors, residual SS, PRESS)."""
    a = np.column_stack([np.ones(len(y)), x])
    q, r = np.linalg.qr(a)
    beta = np.linalg.solve(r, q.T @ y)
    res = y - a @ beta
    h = np.minimum((q ** 2).sum(axis=1), 1 - 1e-12)  # leverages
    ssr = float(res @ res)
    dof = len(y) - a.shape[1]
    rinv = np.linalg.inv(r)
    se = np.sqrt(np.maximum((rinv ** 2).sum(axis=1), 0) * ssr / dof) if dof > 0 \
        else np.full(a.shape[1], math.nan)
    return beta, se, ssr, float(((res / (1 - h)) ** 2).sum())


def fit_linear(z: np.ndarray, y: np.ndarray, terms: list[str]) -> Regression:
    """Least squares of ``y`` (n,) on the columns of ``z`` (n, p) plus an intercept."""
    z, y = np.asarray(z, float).reshape(len(y), -1), np.asarray(y, float)
    n, p = z.shape
    if len(terms) != p:
        raise ValueError(f"{p} score columns but {len(terms)} terms")
    if n < p + 2:
        raise ValueError(f"{n} instances cannot fit {p} terms with a residual")
    beta, se, ssr, press = _ols(z, y)
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - ssr / sst if sst > 0 else math.nan
    r2_loo = 1 - press / sst if sst > 0 else math.nan
    return Regression(list(terms), [float(b) for b in beta[1:]], float(beta[0]),
                      [float(s) for s in se[1:]], float(r2), float(r2_loo),
                      math.sqrt(ssr / (n - p - 1)), int(n), float(r2_loo))


def _forward(z: np.ndarray, y: np.ndarray, cap: int) -> list[int]:
    """Forward selection by PRESS: the chosen columns, in the given order."""
    chosen: list[int] = []
    best = _ols(z[:, []], y)[3]  # the intercept alone
    while len(chosen) < cap:
        press, j = min((_ols(z[:, sorted(chosen + [j])], y)[3], j)
                       for j in range(z.shape[1]) if j not in chosen)
        if not press < best:
            break
        best = press
        chosen.append(j)
    return sorted(chosen)


def _cap(n: int, p: int, min_dof: int) -> int:
    # at most one term per two instances: with more, the selection fits the chance
    # correlations of the unused scores (measured on the FreePDK45 SA: 32 instances give
    # 4-6 mV prediction errors whatever the rule, 48 give 0.4-0.9 mV with up to 24 terms)
    return min(p, n // 2, n - 2 - min_dof)


def select_linear(z: np.ndarray, y: np.ndarray, terms: list[str],
                  min_dof: int = MIN_DOF, folds: int = 8) -> Regression:
    """:func:`fit_linear` on the terms chosen by forward selection: add the term that
    lowers the leave-one-out error (PRESS) most, stop when none does, at one term per two
    instances, or when the fit would keep fewer than ``min_dof`` residual degrees of
    freedom. Why: an SA has ~44 score terms of which ~20 matter; all 44 on ~100 instances
    would also fit the bisection's noise. The kept terms stay in their given order.

    The selection used the leave-one-out error, so ``r2_loo`` flatters; ``r2_cv`` is
    honest: ``folds``-fold cross-validation with the selection redone inside every fold
    (what a new instance's prediction achieves)."""
    z, y = np.asarray(z, float).reshape(len(y), -1), np.asarray(y, float)
    n, p = z.shape
    cap = _cap(n, p, min_dof)
    if cap < 1:
        raise ValueError(f"{n} instances are too few for a fit with {min_dof} residual "
                         "degrees of freedom")
    keep = _forward(z, y, cap)
    reg = fit_linear(z[:, keep], y, [terms[j] for j in keep])
    fold = np.arange(n) % max(2, min(folds, n))
    sse = 0.0
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        cols = _forward(z[tr], y[tr], max(1, _cap(int(tr.sum()), p, min_dof)))
        beta = _ols(z[tr][:, cols], y[tr])[0]
        sse += float(((y[te] - beta[0] - z[te][:, cols] @ beta[1:]) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    reg.r2_cv = 1 - sse / sst if sst > 0 else math.nan
    return reg


def bench_scores(ctx: JobContext, name: str, body: str, instances: list[str]
                 ) -> tuple[list[str], np.ndarray] | None:
    """The device scores of ``instances`` (top-level instance names, ``xmac_3``) in the
    bench ``body`` rendered at ``ctx``'s die: the same values its ngspice run sees. Terms
    ``"<device>:vt"``/``"<device>:beta"`` (the device path below the instance, in deck
    order) and scores (len(instances), 2 x devices). None without keyed scores (a nominal
    context, or a technology whose mismatch is not charact's Pelgrom draw)."""
    if ctx.point.seed is None:
        return None
    devices = ctx.deck(name, body).devices
    by_inst: dict[str, dict[str, tuple[float, float]]] = {}
    for d in devices:
        inst, _, rel = d.path.partition(".")
        by_inst.setdefault(inst, {})[rel] = (d.z_vt, d.z_beta)
    rels = list(by_inst.get(instances[0].lower(), {}))
    if not rels:
        return None
    rows = []
    for inst in instances:
        got = by_inst.get(inst.lower(), {})
        if list(got) != rels:
            raise JobFailed(f"{name}: instance {inst} has devices {list(got)}, not {rels}")
        rows.append([v for r in rels for v in got[r]])
    z = np.array(rows, float)
    if not np.any(z):
        return None
    return [f"{r}:{k}" for r in rels for k in SCORE_KINDS], z


def _regression(d: Any) -> Regression | None:
    return Regression(**d) if isinstance(d, dict) else d


# -- models -----------------------------------------------------------------------------------

@dataclasses.dataclass
class StackModel:
    """One read-stack width at one operating point."""

    name: str
    width_ratio: float  # read-stack width over the MAC cell's
    v: np.ndarray  # bitline voltage grid (V), ascending
    i_on: np.ndarray  # nominal on-current (A), RWL at v_rwl
    i_off: np.ndarray  # nominal leakage (A), RWL low
    gain: float = 1.0  # pulse charge slope over the DC current at v_pulse
    t_off: float = 0.0  # s: a long pulse of width t carries gain * I(V) * (t + t_off)
    t_pulse: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    t_off_t: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))  # per width
    mu_ln: float = 0.0  # mean of ln(I_instance / I_nominal)
    sigma_ln: float = 0.0  # its standard deviation: the per-device spread
    sigma_ln_v: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    corr_v: float = 1.0  # correlation of an instance's ln ratio, lowest vs highest voltage
    skew: float = 0.0
    dln_dvg: float = math.nan  # d ln I / d V(RWL) (1/V)
    c_drain: float = 0.0  # F, one off stack's drain (measured for mac)
    n_mc: int = 0
    # ln(I / I_nominal) of an instance against its devices' scores (access ``xa`` and
    # driver ``xd``, vt and beta): what makes a keyed die's stack (None: not measured)
    reg: Regression | None = None
    # A pulse's edge charges the stack's inner node from the bitline, and that charge
    # follows the bitline voltage (the node charges up towards it), not the current: the
    # charge of a long pulse's edge at drain voltage v_edge beyond the
    # gain * I(V) * t_off the model gives it (0 at v_pulse; empty: not measured)
    v_edge: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    dq_edge: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.reg = _regression(self.reg)
        self.v_edge = np.asarray(self.v_edge, float)
        self.dq_edge = np.asarray(self.dq_edge, float)
        self.v = np.asarray(self.v, float)
        self.i_on = np.asarray(self.i_on, float)
        self.i_off = np.asarray(self.i_off, float)
        self.sigma_ln_v = np.asarray(self.sigma_ln_v, float)
        self.t_pulse = np.asarray(self.t_pulse, float)
        self.t_off_t = np.asarray(self.t_off_t, float)
        if self.v.size < 3 or np.any(np.diff(self.v) <= 0) or np.any(self.i_on <= 0):
            raise UserError(f"stack model {self.name}: needs an ascending voltage grid "
                            "and a positive on-current")
        inv = 1.0 / self.i_on
        seg = 0.5 * (inv[1:] + inv[:-1]) * np.diff(self.v)
        # psi(V) = integral from V to the top of the grid of dV / I(V), in V/A
        self._psi = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])

    @property
    def sigma_vt_eq(self) -> float:
        """The threshold shift (V) that moves the current by one ``sigma_ln``."""
        return self.sigma_ln / self.dln_dvg if self.dln_dvg > 0 else math.nan

    def psi(self, v: np.ndarray) -> np.ndarray:
        return np.interp(v, self.v, self._psi)

    def psi_inv(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self._psi[::-1], self.v[::-1])

    def discharge(self, v0: np.ndarray, q_time: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Bitline voltage after ``q_time`` (s: sum over conducting stacks of factor x
        effective pulse width) on capacitance ``c``: ``C dV/dt = -sum_k f_k I(V)`` is
        separable, so only the sum matters."""
        return self.psi_inv(self.psi(v0) + self.gain * q_time / c)

    def t_eff(self, t: np.ndarray | float) -> np.ndarray:
        """Effective width of a pulse of width ``t`` (s): the width plus its edge term,
        interpolated between the measured widths (short pulses differ from long ones)."""
        t = np.asarray(t, float)
        if self.t_pulse.size:
            return t + np.interp(t, self.t_pulse, self.t_off_t)
        return t + self.t_off

    def edge(self, v: np.ndarray | float, t: float | np.ndarray) -> np.ndarray:
        """Charge (C) one pulse of width ``t`` starting at bitline voltage ``v`` draws
        beyond ``gain * I(v) * t_eff(t)``: the edge's voltage dependence (0 when not
        measured), measured on long pulses and scaled by the share of the long pulses'
        edge a pulse of width ``t`` carries (a short pulse charges the node part way)."""
        v = np.asarray(v, float)
        if self.v_edge.size < 2:
            return np.zeros(np.broadcast(v, np.asarray(t)).shape)
        share = np.clip((self.t_eff(t) - np.asarray(t, float)) / self.t_off, 0.0, 1.0) \
            if self.t_off > 0 else 1.0
        return np.interp(v, self.v_edge, self.dq_edge) * share

    def leak(self, v: np.ndarray) -> np.ndarray:
        return np.interp(v, self.v, self.i_off)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def _interp_lin(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Piecewise-linear in ``xs``, extended linearly beyond its ends (the offset spread
    keeps growing as the common mode falls); constant for a single point."""
    x = np.asarray(x, float)
    if xs.size < 2:
        return np.full(x.shape, float(ys[0]))
    y = np.interp(x, xs, ys)
    lo, hi = x < xs[0], x > xs[-1]
    y = np.where(lo, ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]), y)
    return np.where(hi, ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), y)


def interp_rows(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Row-wise :func:`_interp_lin`: ``ys`` (B, len(xs)) one curve per row of ``x`` (B,),
    linear between the points and extended linearly beyond the ends."""
    if xs.size < 2:
        return ys[:, 0].copy()
    i = np.clip(np.searchsorted(xs, x), 1, xs.size - 1)  # segment (i-1, i), ends extended
    rows = np.arange(x.size)
    y0, y1 = ys[rows, i - 1], ys[rows, i]
    return y0 + (x - xs[i - 1]) * (y1 - y0) / (xs[i] - xs[i - 1])


@dataclasses.dataclass
class SAModel:
    """Offset (inp - inn at which the decision flips) and decision delay of the SA."""

    vcm: list[float]
    offset_nom: list[float]  # V, per vcm
    sigma: list[float]  # V, per vcm
    mean_mc: list[float]
    n_mc: int
    t0: float = math.nan
    tau: float = math.nan
    resolution: float = 0.0  # V: smaller overdrives do not resolve within the half-cycle
    at_bounds: int = 0  # MC instances whose offset hit +-sa_range
    source: str = "mc"
    offsets: list[list[float]] = dataclasses.field(default_factory=list)
    # offset against the SA's device scores, one fit per common mode (empty: none, as
    # for a sense_amp sweep's offsets, which name no devices)
    reg: list[Regression] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.reg = [_regression(r) for r in self.reg]
        if self.reg and len(self.reg) != len(self.vcm):
            raise UserError(f"SA model: {len(self.reg)} offset fits for {len(self.vcm)} "
                            "common modes")

    def offset_grid(self, scores: dict[str, float]) -> np.ndarray:
        """The offset of one SA at each characterized common mode, from its device
        scores (``{term: score}``) through the fits."""
        return np.array([r.predict(scores) for r in self.reg])

    def offset_from_grid(self, vcm: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Offsets at common modes ``vcm`` (B,) of SAs whose offsets at ``self.vcm`` are
        ``grid`` (B, n_vcm): interpolated as :meth:`offset_at` interpolates."""
        return interp_rows(np.asarray(vcm, float), np.asarray(self.vcm, float),
                           np.asarray(grid, float))

    def offset_at(self, vcm: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Offset of the SA whose standard score is ``z`` at common mode ``vcm``."""
        xs = np.asarray(self.vcm, float)
        nom = _interp_lin(vcm, xs, np.asarray(self.offset_nom, float))
        sig = np.maximum(_interp_lin(vcm, xs, np.asarray(self.sigma, float)), 0.0)
        return nom + sig * z

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PointModel:
    """Everything the composed column needs at one operating point."""

    corner: str
    vdd: float
    temp: float
    design: str  # digest of the array design the models were made for
    v_pre: float
    stacks: dict[str, StackModel]
    c_par_l: float  # F on RBL_L besides c_rbl: SA input, precharge switch, 32 replica rows
    c_par_r: float  # F on RBL_R: SA input, precharge switch, the calibration stack
    sa: SAModel
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"corner": self.corner, "vdd": self.vdd, "temp": self.temp,
                "design": self.design, "v_pre": self.v_pre,
                "stacks": {k: s.to_json() for k, s in self.stacks.items()},
                "c_par_l": self.c_par_l, "c_par_r": self.c_par_r, "sa": self.sa.to_json(),
                "info": self.info}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PointModel:
        try:
            stacks = {k: StackModel(**s) for k, s in d["stacks"].items()}
            if set(stacks) != set(STACKS):
                raise KeyError("stacks")
            return cls(str(d["corner"]), float(d["vdd"]), float(d["temp"]), str(d["design"]),
                       float(d["v_pre"]), stacks, float(d["c_par_l"]), float(d["c_par_r"]),
                       SAModel(**d["sa"]), dict(d.get("info", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a cell-model record ({type(exc).__name__}: {exc})") \
                from None

    def summary(self) -> dict[str, float]:
        """The flat numbers of the ``ima_cell_mc`` table."""
        out: dict[str, float] = {}
        vr = self.v_pre - 0.05
        for k, s in self.stacks.items():
            out[f"i_{k}"] = float(np.interp(vr, s.v, s.i_on))
            out[f"ileak_{k}"] = float(np.interp(vr, s.v, s.i_off))
            out[f"sigma_ln_{k}"] = s.sigma_ln
            out[f"sigma_vt_{k}"] = s.sigma_vt_eq
            out[f"t_off_{k}"] = s.t_off
            # the edge's departure from t_off at the lowest bitline voltage, in seconds
            # of the current there
            out[f"t_edge_lo_{k}"] = (float(s.dq_edge[0] / (s.gain * np.interp(
                s.v_edge[0], s.v, s.i_on))) if s.dq_edge.size else math.nan)
            out[f"gain_{k}"] = s.gain
            out[f"corr_v_{k}"] = s.corr_v
        out["c_drain_mac"] = self.stacks["mac"].c_drain
        out["c_par_l"], out["c_par_r"] = self.c_par_l, self.c_par_r
        c = len(self.sa.vcm) // 2  # the middle common mode
        out["sa_vcm"] = float(self.sa.vcm[c])
        out["sa_offset_nom"] = float(self.sa.offset_nom[c])
        out["sa_sigma"] = float(self.sa.sigma[c])
        out["sa_mean_mc"] = float(self.sa.mean_mc[c])
        out["sa_t0"], out["sa_tau"] = self.sa.t0, self.sa.tau
        nan = math.nan
        for k, st in self.stacks.items():
            out[f"reg_r2_{k}"] = st.reg.r2 if st.reg else nan
            out[f"reg_sigma_{k}"] = st.reg.sigma if st.reg else nan
        r = self.sa.reg[c] if self.sa.reg else None
        out["sa_reg_r2"] = r.r2 if r else nan
        out["sa_reg_r2_cv"] = r.r2_cv if r else nan
        out["sa_reg_sigma"] = r.sigma if r else nan
        out["sa_reg_terms"] = len(r.terms) if r else 0
        return out


# -- benches ----------------------------------------------------------------------------------

def sub_context(ctx: JobContext, seed: int | None, sub: str) -> JobContext:
    point = dataclasses.replace(ctx.point, seed=seed)
    return dataclasses.replace(ctx, point=point, workdir=ctx.workdir / sub, elapsed=0.0,
                               decks=[])


def _tpl(ctx: JobContext, subckt: str):
    return next(t for t in ctx.templates if subckt in t.subckts)


def stack_sizes(params: dict[str, float], rep_ratio: float) -> dict[str, dict[str, float]]:
    """The read-stack geometry of each width, as the lean column builds it."""
    read = {k: float(params[k]) for k in ("w_ra", "l_ra", "w_rd", "l_rd")}
    ratios = {"mac": 1.0, "rep": rep_ratio, "cal": rep_ratio * N_CAL}
    return {k: dict(read, w_ra=read["w_ra"] * r, w_rd=read["w_rd"] * r)
            for k, r in ratios.items()}


def _ratios(design: Design) -> dict[str, float]:
    r = design.cfg.rep_ratio
    return {"mac": 1.0, "rep": r, "cal": r * N_CAL}


def _dc_grid(v_pre: float) -> str:
    return f".dc vbl {num(V_LOW)} {num(v_pre + 0.05)} {num(V_STEP)}"


def _dc_currents(res, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from charact.runner import read_raw

    v = read_raw(res.raw)
    sweep = next((v[k] for k in v if "sweep" in k), None)
    if sweep is None:
        raise JobFailed("stack bench: no sweep vector")
    missing = [n for n in names if f"i({n})" not in v]
    if missing:
        raise JobFailed(f"stack bench: no current of {missing[0]}")
    return np.asarray(sweep), np.stack([v[f"i({n})"] for n in names])


def nominal_stacks(ctx: JobContext, design: Design) -> dict[str, dict[str, np.ndarray]]:
    """One DC sweep: on-current, leakage and the RWL sensitivity of every width."""
    cfg = design.cfg
    cell = _tpl(ctx, "rd_stack")
    sizes = stack_sizes(ctx.params, cfg.rep_ratio)
    lines = [dc("vsram", "vsram", cfg.vdd_sram), dc("vrwl", "rwl", cfg.v_rwl),
             dc("vrwlp", "rwlp", cfg.v_rwl + DVG), dc("vrwlm", "rwlm", cfg.v_rwl - DVG),
             dc("vbl", "bl", cfg.v_pre)]
    names = []
    for k in STACKS:
        for tag, rwl in (("on", "rwl"), ("off", "0"), ("up", "rwlp"), ("dn", "rwlm")):
            n = f"vm_{k}_{tag}"
            lines += [f"{n} bl d_{k}_{tag} 0",
                      cell.instance(f"{k}_{tag}", "rd_stack", [f"d_{k}_{tag}", rwl, "vsram",
                                                               "0"], sizes[k])]
            names.append(n)
    lines += [_dc_grid(cfg.v_pre), ".save " + " ".join(f"i({n})" for n in names)]
    res = ctx.run("stacks_dc", "\n".join(lines), raw=True)
    v, cur = _dc_currents(res, names)
    out: dict[str, dict[str, np.ndarray]] = {}
    for i, k in enumerate(STACKS):
        on, off, up, dn = cur[4 * i:4 * i + 4]
        out[k] = {"v": v, "on": on, "off": np.maximum(off, 0.0), "up": up, "dn": dn}
    return out


def mc_stacks(ctx: JobContext, design: Design, n: int) -> dict[str, Any]:
    """On-current of ``n`` Monte-Carlo instances per width against the bitline voltage,
    and (``z_<width>``, ``terms``) their devices' scores where the mismatch is keyed."""
    cfg = design.cfg
    cell = _tpl(ctx, "rd_stack")
    sizes = stack_sizes(ctx.params, cfg.rep_ratio)
    lines = [dc("vsram", "vsram", cfg.vdd_sram), dc("vrwl", "rwl", cfg.v_rwl),
             dc("vbl", "bl", cfg.v_pre)]
    names = []
    for k in STACKS:
        for j in range(n):
            m = f"vm_{k}_{j}"
            lines += [f"{m} bl d_{k}_{j} 0", cell.instance(f"{k}_{j}", "rd_stack",
                                                           [f"d_{k}_{j}", "rwl", "vsram", "0"],
                                                           sizes[k])]
            names.append(m)
    lines += [f".dc vbl {num(0.2)} {num(cfg.v_pre)} {num(0.05)}",
              ".save " + " ".join(f"i({m})" for m in names)]
    body = "\n".join(lines)
    scores = bench_scores(ctx, "stacks_mc", body,
                          [f"x{k}_{j}" for k in STACKS for j in range(n)])
    res = ctx.run("stacks_mc", body, raw=True)
    v, cur = _dc_currents(res, names)
    out: dict[str, Any] = {"v": v, **{k: cur[i * n:(i + 1) * n] for i, k in enumerate(STACKS)}}
    if scores is not None:
        out["terms"] = scores[0]
        out.update({f"z_{k}": scores[1][i * n:(i + 1) * n] for i, k in enumerate(STACKS)})
    return out


def pulse_charges(ctx: JobContext, design: Design, v_drain: float) -> dict[str, np.ndarray]:
    """Charge of one pulse of each width in ``PULSE_UNITS`` x t_unit, drain held at
    ``v_drain`` (nominal). Edges and the gate coupling are in the integral."""
    cfg = design.cfg
    cell = _tpl(ctx, "rd_stack")
    sizes = stack_sizes(ctx.params, cfg.rep_ratio)
    t_on = 0.5e-9
    t_end = t_on + max(PULSE_UNITS) * cfg.t_unit + 1e-9
    lines = [dc("vsram", "vsram", cfg.vdd_sram), dc("vbl", "bl", v_drain)]
    for i, u in enumerate(PULSE_UNITS):
        # the column's word-line pulse
        lines.append(trapezoid(f"Vrwl{i}", f"rwl{i}", t_on, u * cfg.t_unit, cfg.v_rwl,
                               cfg.t_edge))
    meas: dict[str, list[Integ]] = {k: [] for k in STACKS}
    saves = []
    for k in STACKS:
        for i in range(len(PULSE_UNITS)):
            m = f"vm_{k}_{i}"
            lines += [f"{m} bl d_{k}_{i} 0", cell.instance(f"{k}_{i}", "rd_stack",
                                                           [f"d_{k}_{i}", f"rwl{i}", "vsram",
                                                            "0"], sizes[k])]
            meas[k].append(Integ(f"q_{k}_{i}", f"i({m})", 0, t_end))
            saves.append(f"i({m})")
    lines += [tran(cfg.tmax / 8, t_end, cfg.tmax / 4), ".save " + " ".join(saves)]
    lines += [q.line() for k in STACKS for q in meas[k]]
    res = ctx.run("stacks_pulse", "\n".join(lines))
    out = {}
    for k in STACKS:
        q = read_all(res, meas[k])
        if not np.isfinite(q).all():
            raise JobFailed(f"stack pulse bench: missing charge of {k}")
        out[k] = q
    return out


#: pulse widths (in t_unit) of the edge bench: long against the edges, so the charge is
#: affine in the width and its intercept is the edge's
EDGE_UNITS = (16, 64)
EDGE_VOLTS = 6  # drain voltages of the edge bench, from 0.1 V to v_pulse


def edge_volts(v_pulse: float) -> np.ndarray:
    """The drain voltages of :func:`edge_charges` (ascending, v_pulse the last)."""
    return np.linspace(min(0.1, v_pulse / 2), v_pulse, EDGE_VOLTS)


def edge_charges(ctx: JobContext, design: Design, volts: np.ndarray
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per stack width: (slope in A, intercept in C) of a pulse's charge against its width
    at each drain voltage of ``volts`` (nominal; pulses from rest, as every MAC, ramp and
    calibration row fires once per conversion)."""
    cfg = design.cfg
    cell = _tpl(ctx, "rd_stack")
    sizes = stack_sizes(ctx.params, cfg.rep_ratio)
    t_on = 0.5e-9
    t_end = t_on + max(EDGE_UNITS) * cfg.t_unit + 1e-9
    lines = [dc("vsram", "vsram", cfg.vdd_sram)]
    for i, u in enumerate(EDGE_UNITS):
        lines.append(trapezoid(f"Vrwl{i}", f"rwl{i}", t_on, u * cfg.t_unit, cfg.v_rwl,
                               cfg.t_edge))
    meas: dict[tuple[str, int, int], Integ] = {}
    for j, v in enumerate(volts):
        lines.append(dc(f"vbl{j}", f"bl{j}", float(v)))
        for k in STACKS:
            for i in range(len(EDGE_UNITS)):
                m = f"vm_{k}_{j}_{i}"
                lines += [f"{m} bl{j} d_{k}_{j}_{i} 0",
                          cell.instance(f"{k}_{j}_{i}", "rd_stack",
                                        [f"d_{k}_{j}_{i}", f"rwl{i}", "vsram", "0"], sizes[k])]
                meas[(k, j, i)] = Integ(f"q_{k}_{j}_{i}", f"i({m})", 0, t_end)
    lines += [tran(cfg.tmax / 8, t_end, cfg.tmax / 4),
              ".save " + " ".join(f"i(vm_{k}_{j}_{i})" for (k, j, i) in meas)]
    lines += [q.line() for q in meas.values()]
    res = ctx.run("stacks_edge", "\n".join(lines))
    q = dict(zip(meas, read_all(res, list(meas.values())), strict=True))
    if not all(math.isfinite(x) for x in q.values()):
        raise JobFailed("stack edge bench: a charge is missing")
    t = np.array(EDGE_UNITS, float) * cfg.t_unit
    out = {}
    for k in STACKS:
        slope, icpt = np.empty(len(volts)), np.empty(len(volts))
        for j in range(len(volts)):
            qq = np.array([q[(k, j, i)] for i in range(len(EDGE_UNITS))])
            slope[j] = (qq[1] - qq[0]) / (t[1] - t[0])
            icpt[j] = qq[0] - slope[j] * t[0]
        if np.any(slope <= 0):  # a stack that does not conduct would divide by zero later
            raise JobFailed(f"stack edge bench: stack {k} draws no charge growing with "
                            "the pulse width")
        out[k] = (slope, icpt)
    return out


def edge_terms(edges: dict[str, tuple[np.ndarray, np.ndarray]], volts: np.ndarray
               ) -> dict[str, np.ndarray]:
    """Per stack width, the edge charge beyond the model's ``gain * I(V) * t_off``: the
    intercept at V less the one at v_pulse (the last voltage) scaled by the current, which
    is what a constant ``t_off`` assumes."""
    out = {}
    for k, (slope, icpt) in edges.items():
        out[k] = icpt - icpt[-1] * slope / slope[-1]
    return out


def line_capacitances(ctx: JobContext, design: Design) -> tuple[float, float, float]:
    """(c_par_l, c_par_r, c_drain_mac): the devices on each bitline besides ``c_rbl``,
    measured by the time a small current takes to move the line by 0.1 V (nominal)."""
    cfg = design.cfg
    cell, sa = _tpl(ctx, "rd_stack"), _tpl(ctx, "strongarm_sa")
    sizes = stack_sizes(ctx.params, cfg.rep_ratio)
    i_line, i_mac = 0.1e-6, 5e-9
    lines = [dc("vsup", "vdd", "{vdd}"), dc("vpre", "vpre", cfg.v_pre), dc("vclk", "clk", 0),
             dc("vpcb", "pcb", "{vdd}"),
             "Xpre_l l pcb vpre vdd rbl_pre",
             "Xpre_r r pcb vpre vdd rbl_pre",
             sa.instance("sa", "strongarm_sa", ["r", "l", "clk", "dout", "doutb", "outp",
                                                "outn", "vdd", "0"], design.sa_params),
             "cloadp outp 0 2f", "cloadn outn 0 2f",
             # stacks off (word line and storage gate low): capacitance without leakage
             cell.instance("cal", "rd_stack", ["r", "0", "0", "0"], sizes["cal"])]
    lines += [cell.instance(f"rep{j}", "rd_stack", ["l", "0", "0", "0"], sizes["rep"])
              for j in range(N_RAMP)]
    lines += [cell.instance(f"mac{j}", "rd_stack", ["m", "0", "0", "0"], sizes["mac"])
              for j in range(MAC_CAP_STACKS)]
    lines += [dc("il", "l", i_line), dc("ir", "r", i_line), dc("im", "m", i_mac),
              f".ic v(l)={num(cfg.v_pre)} v(r)={num(cfg.v_pre)} v(m)={num(cfg.v_pre)}",
              tran("0.2n", "600n", "1n"), ".save v(l) v(r) v(m)"]
    hi, lo = cfg.v_pre - 0.05, cfg.v_pre - 0.15
    # when each line, discharged by its current source, passes hi and then lo
    meas = [When(f"{n}_{tag}", f"v({n})", level, edge="FALL")
            for n in ("l", "r", "m") for tag, level in (("hi", hi), ("lo", lo))]
    lines += [m.line() for m in meas]
    res = ctx.run("line_cap", "\n".join(lines))
    vals = {m.name: m.value(res) for m in meas}
    if not all(math.isfinite(v) for v in vals.values()):
        raise JobFailed("line capacitance bench: a line did not fall by 0.15 V")
    c_l = i_line * (vals["l_lo"] - vals["l_hi"]) / (hi - lo)
    c_r = i_line * (vals["r_lo"] - vals["r_hi"]) / (hi - lo)
    c_m = i_mac * (vals["m_lo"] - vals["m_hi"]) / (hi - lo) / MAC_CAP_STACKS
    return c_l, c_r, c_m


def stack_models(nom: dict[str, dict[str, np.ndarray]], mc: dict[str, Any] | None,
                 q: dict[str, np.ndarray], design: Design, v_pulse: float
                 ) -> dict[str, StackModel]:
    """Fit the benches into one :class:`StackModel` per width."""
    cfg = design.cfg
    out = {}
    t = np.array(PULSE_UNITS, float) * cfg.t_unit
    for k, r in _ratios(design).items():
        d = nom[k]
        v, on = d["v"], d["on"]
        keep = v > V_LOW / 2
        v, on, off = v[keep], on[keep], d["off"][keep]
        if np.any(on <= 0):
            raise JobFailed(f"stack {k}: no on-current at some bitline voltage")
        i_ref = float(np.interp(v_pulse, v, on))
        up = float(np.interp(v_pulse, d["v"], d["up"]))
        dn = float(np.interp(v_pulse, d["v"], d["dn"]))
        dln = math.log(up / dn) / (2 * DVG) if up > 0 and dn > 0 else math.nan
        long = t >= 4 * cfg.t_unit  # the slope from pulses long against their edges
        slope, icpt = np.polyfit(t[long], q[k][long], 1)
        m = StackModel(k, r, v, on, off, gain=float(slope / i_ref),
                       t_off=float(icpt / slope), t_pulse=t, t_off_t=q[k] / slope - t,
                       dln_dvg=dln)
        if mc is not None:
            ln = np.log(np.maximum(mc[k], 1e-30) / np.interp(mc["v"], v, on)[None, :])
            j = int(np.argmin(np.abs(mc["v"] - v_pulse)))
            x = ln[:, j]
            m.mu_ln, m.sigma_ln = float(x.mean()), float(x.std(ddof=1))
            m.sigma_ln_v = ln.std(axis=0, ddof=1)
            m.corr_v = float(np.corrcoef(ln[:, 0], ln[:, -1])[0, 1])
            m.skew = float(((x - x.mean()) ** 3).mean() / x.std() ** 3)
            m.n_mc = int(x.size)
            if f"z_{k}" in mc and x.size >= len(mc["terms"]) + 2:
                # at the same bitline voltage as sigma_ln: the ratio hardly moves with it
                m.reg = fit_linear(mc[f"z_{k}"], x, list(mc["terms"]))
        out[k] = m
    return out


# -- sense amplifier ------------------------------------------------------------------------

def _sa_body(ctx: JobContext, design: Design, vcm: float, dv: np.ndarray
             ) -> tuple[str, list[FindAt]]:
    """The SA offset bench: instance ``Xsa<i>`` with inp - inn = dv[i] (see
    :func:`_sa_deck`), and the decisions it measures."""
    cfg = design.cfg
    sa = _tpl(ctx, "strongarm_sa")
    te = cfg.t_edge
    t_rise, t_read = SA_T_RISE, SA_T_RISE + te + SA_EVAL
    lines = [dc("vsup", "vdd", "{vdd}"),
             pwl("vclk", "clk", [(0, 0), (t_rise, 0), (t_rise + te, "{vdd}")])]
    for i, d in enumerate(dv):
        lines += [dc(f"vp{i}", f"inp{i}", vcm + d / 2), dc(f"vn{i}", f"inn{i}", vcm - d / 2),
                  sa.instance(f"sa{i}", "strongarm_sa",
                              [f"inp{i}", f"inn{i}", "clk", f"dout{i}", f"doutb{i}",
                               f"outp{i}", f"outn{i}", "vdd", "0"], design.sa_params),
                  f"cp{i} outp{i} 0 2f", f"cn{i} outn{i} 0 2f"]
    meas = [FindAt(f"d{i}", f"v(dout{i})", at=t_read) for i in range(len(dv))]
    lines += [tran("10p", t_read + 0.05e-9, "50p"),
              ".save " + " ".join(f"v(dout{i})" for i in range(len(dv)))]
    lines += [m.line() for m in meas]
    return "\n".join(lines), meas


def sa_scores(ctx: JobContext, design: Design, n: int
              ) -> tuple[list[str], np.ndarray] | None:
    """The device scores of the ``n`` SA instances of :func:`sa_offsets` at ``ctx``'s die
    (the same in every bisection deck: only the sources differ), see :func:`bench_scores`."""
    body, _ = _sa_body(ctx, design, 0.4, np.zeros(n))
    return bench_scores(ctx, "sa_scores", body, [f"xsa{i}" for i in range(n)])


def sa_regression(offsets: np.ndarray, scores: tuple[list[str], np.ndarray] | None,
                  valid: np.ndarray | None = None) -> Regression | None:
    """The offsets (V) of the MC instances against their device scores
    (:func:`select_linear`); ``valid`` leaves out instances whose bisection hit its
    bounds. None without scores or with too few instances."""
    if scores is None:
        return None
    terms, z = scores
    keep = np.ones(len(offsets), bool) if valid is None else np.asarray(valid, bool)
    try:
        return select_linear(z[keep], np.asarray(offsets, float)[keep], terms)
    except ValueError:  # a handful of instances: no fit, the column stays unpaired
        return None


def _sa_deck(ctx: JobContext, design: Design, vcm: float, dv: np.ndarray,
             name: str) -> np.ndarray:
    """One evaluation of ``len(dv)`` SA instances, instance i with inp - inn = dv[i]:
    True where the decision is 1 (inp above inn plus its offset).

    The operating point at t = 0 has the clock low, i.e. the latch already reset, so the
    deck evaluates once right away (``SA_EVAL`` long: a resolvable decision takes well
    under it) instead of simulating a whole 4 ns cycle."""
    body, meas = _sa_body(ctx, design, vcm, dv)
    vals = read_all(ctx.run(name, body), meas)
    if not np.isfinite(vals).all():
        raise JobFailed(f"{name}: missing SA decisions")
    return vals > 0.5 * ctx.point.vdd


def sa_offsets(ctx: JobContext, design: Design, vcm: float, n: int, rng: float,
               resolution: float, tag: str) -> np.ndarray:
    """Offsets of ``n`` SA instances (MC when ``ctx`` has a seed) by parallel bisection."""
    lo, hi = np.full(n, -rng), np.full(n, rng)
    iters = max(1, math.ceil(math.log2(2 * rng / resolution)))
    for it in range(iters):
        mid = (lo + hi) / 2
        dec = _sa_deck(ctx, design, vcm, mid, f"sa_{tag}_{it}")
        hi, lo = np.where(dec, mid, hi), np.where(dec, lo, mid)
    return (lo + hi) / 2


def sa_delay(ctx: JobContext, design: Design, vcm: float, offset: float
             ) -> tuple[float, float]:
    """(t0, tau) of delay = t0 + tau ln(vdd / dv), clk rise to outp rise, nominal."""
    cfg = design.cfg
    sa = _tpl(ctx, "strongarm_sa")
    dvs = [1e-4, 1e-3, 1e-2, 1e-1]
    te, tc = cfg.t_edge, cfg.t_clk
    vdd = ctx.point.vdd
    lines = [dc("vsup", "vdd", "{vdd}"), clock("vclk", "clk", tc, te, width=tc / 2 - 2 * te)]
    meas: list[Delay] = []
    for i, d in enumerate(dvs):
        d = d + offset
        lines += [dc(f"vp{i}", f"inp{i}", vcm + d / 2), dc(f"vn{i}", f"inn{i}", vcm - d / 2),
                  sa.instance(f"sa{i}", "strongarm_sa",
                              [f"inp{i}", f"inn{i}", "clk", f"dout{i}", f"doutb{i}",
                               f"outp{i}", f"outn{i}", "vdd", "0"], design.sa_params),
                  f"cp{i} outp{i} 0 2f", f"cn{i} outn{i} 0 2f"]
        meas.append(Delay(f"td{i}", "v(clk)", vdd / 2, f"v(outp{i})", vdd / 2))
        lines.append(meas[-1].line())
    lines += [tran("5p", tc, "20p"),
              ".save v(clk) " + " ".join(f"v(outp{i})" for i in range(len(dvs)))]
    td = read_all(ctx.run("sa_delay", "\n".join(lines)), meas)
    ok = np.isfinite(td) & (td > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    tau, t0 = np.polyfit(np.log(vdd / np.array(dvs)[ok]), td[ok], 1)
    return float(t0), float(tau)


def sa_resolution(t0: float, tau: float, vdd: float, t_avail: float) -> float:
    """The smallest overdrive the SA resolves within ``t_avail`` (0 if unknown)."""
    if not (math.isfinite(t0) and math.isfinite(tau) and tau > 0):
        return 0.0
    return float(vdd * math.exp(-(t_avail - t0) / tau))


def sa_from_sweep(path: str, corner: str, vdd: float, temp: float) -> SAModel:
    """The SA model from a ``sense_amp`` sweep: offset mean/sigma per common mode."""
    _, df = read_table(path, "sense_amp sweep table",
                       ("offset", "vcm", "corner", "vdd", "temp", "status"))
    g = df[(df["status"] == "ok") & (df["corner"] == corner) & np.isclose(df["vdd"], vdd)
           & np.isclose(df["temp"], temp)]
    if g.empty:
        raise JobFailed(f"sense_amp sweep {path} has no point {corner} {vdd:g} V {temp:g} C")
    rows = sorted(g.groupby("vcm"), key=lambda kv: kv[0])
    vcm = [float(k) for k, _ in rows]
    mean = [float(x["offset"].mean()) for _, x in rows]
    sigma = [float(x["offset"].std(ddof=1)) if len(x) > 1 else 0.0 for _, x in rows]
    t0 = float(g["t0"].median()) if "t0" in g else math.nan
    tau = float(g["tau"].median()) if "tau" in g else math.nan
    # the sweep has no nominal run: the mean of its samples stands for the nominal offset
    return SAModel(vcm, mean, sigma, mean, int(len(g)), t0, tau, source=str(path),
                   offsets=[x["offset"].tolist() for _, x in rows])


__all__ = ["CELL_OPTIONS", "CellOptions", "PointModel", "Regression", "SAModel", "STACKS",
           "SCORE_KINDS", "StackModel", "bench_scores", "check_cell_options", "fit_linear",
           "edge_charges", "edge_terms", "edge_volts", "interp_rows", "line_capacitances",
           "mc_stacks", "nominal_stacks", "pulse_charges", "sa_delay", "sa_from_sweep",
           "sa_offsets", "sa_regression",
           "sa_scores", "select_linear", "stack_models", "stack_sizes"]
