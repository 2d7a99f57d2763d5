"""The composed column: a numerical replica-ramp IMA column built from cell-level models.

One conversion, vectorized over many (numpy), on the timeline of
:class:`charact.column.netlist.ColumnConfig`:

1. **MAC phase.** Every conducting read stack k of a line (the lean column's set: input
   sign x ternary digit picks the stack and the bitline) sinks ``f_k * I(V)`` for its
   pulse ``|x| * scale * t_unit`` (plus its edge term, ``t_off`` of the current and the
   edge charge's departure from it at the pulse's starting voltage), where ``I(V)`` is the
   nominal on-current against the bitline voltage and ``f_k = exp(mu + sigma z_k)`` its
   device's mismatch factor. ``C dV/dt = -I(V) sum_k f_k`` is separable, so the line
   voltage after the phase is ``psi^-1(psi(v_pre) + sum_k f_k t_k / C)`` with
   ``psi(V) = int dV / I``: exact for any pattern, including the fall of the current as
   the line drops.
2. **Calibration.** The calibration rows that store -1 pull RBL_R for ``t_cal``: the
   merged stack of 32 rows (``cal_rows`` 32, untrimmed), or, when the design leaves trim
   room or a trim chose a column's rows, each row on its own (a replica stack with its
   own factor, keyed to the deck's ``xc<c>_cal<j>``): a trim then selects rows of the
   same die, as in the SPICE deck.
3. **Ramp.** Ramp row j pulls RBL_L for ``t_step`` with its own factor; then the SA
   compares: crossed when ``V(RBL_R) - V(RBL_L)`` exceeds its offset (nominal offset +
   sigma z at the common mode of that decision) by more than the smallest overdrive it
   resolves in the half-cycle (from its delay fit). Code = 31 - first crossing cycle.
4. **Leakage** of every stack that is present and off (the replica rows, the merged
   calibration stack, MAC stacks after their pulse) is integrated phase by phase from
   the nominal leakage curves; its mismatch is neglected (a few tenths of a millivolt).

Each line's capacitance is ``c_rbl`` + the measured parasitics (SA input, precharge
switch, replica stacks) + the drain capacitance of the MAC stacks on it.

A die (one Monte-Carlo job) has one factor per read stack: those of the cell positions
(so a cell reads with the same device every time it conducts through it), 32 ramp rows,
the calibration stack, and one offset per SA; all decks of the job convert on that same
die. :func:`keyed_die` computes them from the device-keyed scores
(:mod:`charact.mismatch`) of the devices at the very instance paths the SPICE deck of the
same pattern holds (``xc<c>_d<i>_b<b><side>.x0.xa``, ``xc<c>_ramp<j>``, ``xc<c>_cal``,
``xsa<c>``), through the sensitivities the cell benches fitted (``StackModel.reg``,
``SAModel.reg``): composed die d of seed s is SPICE die d of seed s, conversion for
conversion, up to the fits' residuals. :func:`draw_die` (an rng) remains for studies of
the composed column alone. Not modelled: SA kickback onto the bitlines, SA noise, RWL
wire delay, the precharge switches' mismatch, the edge charge's mismatch; the report of
the validation says how much that matters.

The edge of a pulse charges the stack's inner node from the bitline, up towards the
line's voltage: below a few tenths of a volt that charge falls with the line (at 0.1 V
a third of its value at 0.45 V in FreePDK45, 4x read driver), while the current hardly
moves. A ramp step is mostly edge when its pulse is short, so the steps shrink as
RBL_L falls, and an SA offset costs more codes where they are small: modelling the
edge as a time of the current (``t_off`` alone) left the composed column's column
offsets at 0.63 of SPICE's on the same dies; with the edge's voltage dependence
(``StackModel.edge``) they agree.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from charact.column.calibration import ROW_WORTH_SPAN, Calibration, calibration_patterns
from charact.column.cells import SCORE_KINDS, PointModel, Regression
from charact.column.design import Design, draw_patterns
from charact.column.netlist import N_CAL, N_CODES, N_RAMP, W_MAX
from charact.mismatch import normals


@dataclasses.dataclass(frozen=True)
class Die:
    """Standard scores of every device of an array of ``n_cols`` columns."""

    z_mac: np.ndarray  # (n_cols, n_dims, 3, 4): stacks lp, ln, rp, rn of each cell
    z_rep: np.ndarray  # (n_cols, 32)
    z_cal: np.ndarray  # (n_cols,)
    z_sa: np.ndarray  # (n_cols,)
    scale: float = 1.0  # multiplies every spread; 0 = the nominal circuit
    # (n_cols, n_vcm): each SA's offset (V) at the model's common modes, from its device
    # scores (keyed dies); None: ``z_sa`` scales the model's offset spread
    sa_grid: np.ndarray | None = None
    paired: bool = False  # every value from the SPICE deck's devices (see keyed_die)
    # (n_cols, 32): the calibration rows one by one (a design with trim room); None: the
    # merged stack only
    z_cal_rows: np.ndarray | None = None


def draw_die(rng: np.random.Generator, n_cols: int, n_dims: int,
             scale: float = 1.0) -> Die:
    """One Monte-Carlo die."""
    z = (rng.standard_normal((n_cols, n_dims, 3, 4)), rng.standard_normal((n_cols, N_RAMP)),
         rng.standard_normal(n_cols), rng.standard_normal(n_cols))
    # drawn last, so the other scores of a seed are those of a die without them
    return Die(*z, float(scale), z_cal_rows=rng.standard_normal((n_cols, N_CAL)))


def nominal_die(n_cols: int, n_dims: int) -> Die:
    """The circuit without mismatch."""
    return Die(np.zeros((n_cols, n_dims, 3, 4)), np.zeros((n_cols, N_RAMP)),
               np.zeros(n_cols), np.zeros(n_cols), 0.0, z_cal_rows=np.zeros((n_cols, N_CAL)))


#: Side letter of a conducting MAC stack in the lean deck, by the index of ``Die.z_mac``'s
#: last axis (0 lp: Q_L read by RWL+, 1 ln, 2 rp, 3 rn): the deck names a stack by the
#: bitline it pulls (``l`` when weight digit x input > 0), so lp and rn are one device,
#: ln and rp another.
STACK_SIDE = ("l", "r", "r", "l")


def stack_instance(col: int, dim: int, bit: int, side: str) -> str:
    """The lean deck's instance of a MAC read stack (lower case, as device paths are)."""
    return f"xc{col}_d{dim}_b{bit}{side}"


def ramp_instance(col: int, row: int) -> str:
    return f"xc{col}_ramp{row}"


def cal_instance(col: int) -> str:
    """The merged calibration stack (untrimmed lean deck)."""
    return f"xc{col}_cal"


def cal_row_instance(col: int, row: int) -> str:
    """Calibration row ``row`` on its own (a replica stack; a deck with trim room)."""
    return f"xc{col}_cal{row}"


def split_cal_rows(design: Design, cal_rows: object = None) -> bool:
    """Whether the calibration rows are placed one by one: the design leaves trim room,
    or a trim chose rows (as :func:`charact.column.netlist.array_body` decides)."""
    return cal_rows is not None or design.cfg.cal_rows != N_CAL


def sa_instance(col: int) -> str:
    return f"xsa{col}"


#: The read stacks' devices sit one level down, in the lean wrapper's ``X0 ... rd_stack``.
STACK_WRAP = "x0"


def device_paths(n_cols: int, n_dims: int, model: PointModel,
                 need: np.ndarray | None = None, split_cal: bool = False) -> set[str]:
    """The device paths a keyed die reads through the model's fits (MAC stacks: those
    of ``need``, see :func:`keyed_die`; all when None; the calibration rows one by one
    with ``split_cal``): for checks against a deck."""
    out: set[str] = set()
    devs = {k: _devices(s.reg) for k, s in model.stacks.items()}
    sa_devs = list(dict.fromkeys(d for r in model.sa.reg for d in _devices(r)))
    for c in range(n_cols):
        insts = [(stack_instance(c, i, b, side), "mac") for i in range(n_dims)
                 for b in range(3) for s_i, side in enumerate("lr")
                 if need is None or need[c, i, b, s_i]]
        insts += [(ramp_instance(c, j), "rep") for j in range(N_RAMP)]
        if split_cal:
            insts += [(cal_row_instance(c, j), "rep") for j in range(N_CAL)]
        else:
            insts += [(cal_instance(c), "cal")]
        out |= {f"{inst}.{STACK_WRAP}.{d}" for inst, k in insts for d in devs[k]}
        out |= {f"{sa_instance(c)}.{d}" for d in sa_devs}
    return out


def _devices(reg: Regression | None) -> list[str]:
    return list(dict.fromkeys(t.split(":")[0] for t in reg.terms)) if reg else []


class _Scores:
    """Device scores of one die, each device hashed once."""

    def __init__(self, seed: int, die: int) -> None:
        self.seed, self.die = seed, die
        self.cache: dict[str, tuple[float, float]] = {}

    def device(self, path: str) -> tuple[float, float]:
        z = self.cache.get(path)
        if z is None:
            z = self.cache[path] = normals(self.seed, self.die, path)
        return z

    def terms(self, prefix: str, terms: list[str]) -> dict[str, float]:
        """``{"<device>:vt": score, ...}`` of the devices below instance ``prefix``."""
        out = {}
        for t in terms:
            dev, _, kind = t.partition(":")
            out[t] = self.device(f"{prefix}.{dev}")[SCORE_KINDS.index(kind)]
        return out


def keyed_die(seed: int, die: int, n_cols: int, n_dims: int, model: PointModel,
              scale: float = 1.0, need: np.ndarray | None = None,
              storage: str = "lean", split_cal: bool = False) -> Die:
    """Die ``die`` of the mismatch stream ``seed``: every stack's factor and every SA's
    offset from the keyed scores of the devices at the SPICE deck's instance paths,
    through the models' fits.

    A stack's standard score is ``(ln_fit - mu_ln) / sigma_ln`` with ``ln_fit`` the fit
    of its ln current ratio, so :func:`convert` (``exp(mu + sigma z)``) applies exactly
    the fitted factor. ``need`` (n_cols, n_dims, 3, 2) bool, side l/r: the MAC stacks
    the patterns make conduct (:func:`stacks_used`; the others are not in the lean deck
    and are never read: their scores stay 0). Where a model has no fit (an old model, a
    technology whose mismatch is not keyed, SA offsets from a ``sense_amp`` sweep), or
    the storage is not lean (other instance paths), the value is still keyed to
    ``(seed, die, instance)`` but drawn as a standard score of its own: the same die every
    time, not the SPICE die's device values; ``Die.paired`` says whether all are.
    ``split_cal``: also each calibration row's factor (a design with trim room), through
    the replica stack's fit (a row is a replica stack in the deck)."""
    sc = _Scores(int(seed), int(die))
    lean = storage == "lean"
    paired = lean and all(s.reg is not None for s in model.stacks.values()) \
        and bool(model.sa.reg)

    def stack_z(kind: str, inst: str) -> float:
        st = model.stacks[kind]
        if st.reg is None or not lean:
            return sc.device(f"{inst}#stack")[0]
        ln = st.reg.predict(sc.terms(f"{inst}.{STACK_WRAP}", st.reg.terms))
        return (ln - st.mu_ln) / st.sigma_ln if st.sigma_ln > 0 else 0.0

    z_mac = np.zeros((n_cols, n_dims, 3, 4))
    z_rep = np.zeros((n_cols, N_RAMP))
    z_cal = np.zeros(n_cols)
    z_sa = np.zeros(n_cols)
    z_rows = np.zeros((n_cols, N_CAL)) if split_cal else None
    grid = np.zeros((n_cols, len(model.sa.vcm))) if model.sa.reg else None
    # the fits of the common modes may keep different terms: score their union
    sa_terms = list(dict.fromkeys(t for r in model.sa.reg for t in r.terms))
    for c in range(n_cols):
        for i in range(n_dims):
            for b in range(3):
                for s_i, side in enumerate("lr"):
                    if need is not None and not need[c, i, b, s_i]:
                        continue
                    z = stack_z("mac", stack_instance(c, i, b, side))
                    z_mac[c, i, b, [k for k in range(4) if STACK_SIDE[k] == side]] = z
        z_rep[c] = [stack_z("rep", ramp_instance(c, j)) for j in range(N_RAMP)]
        if z_rows is not None:
            z_rows[c] = [stack_z("rep", cal_row_instance(c, j)) for j in range(N_CAL)]
        else:
            z_cal[c] = stack_z("cal", cal_instance(c))
        if grid is not None:
            grid[c] = model.sa.offset_grid(sc.terms(sa_instance(c), sa_terms))
        else:
            z_sa[c] = sc.device(f"{sa_instance(c)}#sa")[0]
    return Die(z_mac, z_rep, z_cal, z_sa, float(scale), grid, paired, z_rows)


def stacks_used(x: np.ndarray, w: np.ndarray, col: np.ndarray, n_cols: int) -> np.ndarray:
    """(n_cols, n_dims, 3, 2) bool: the MAC stacks (side l, r) that conduct in any of the
    conversions ``x``, ``w`` (B, n_dims) on columns ``col`` (B,): the lean deck's set."""
    x, w = np.asarray(x, np.int64), np.asarray(w, np.int64)
    prod = np.sign(_digits(w)) * np.sign(x)[:, :, None]  # (B, n, 3)
    out = np.zeros((n_cols, x.shape[1], 3, 2), bool)
    for s_i, on in enumerate((prod > 0, prod < 0)):
        bb, ii, kk = np.nonzero(on)
        out[np.asarray(col)[bb], ii, kk, s_i] = True
    return out


@dataclasses.dataclass
class Result:
    """Conversions of a batch (B conversions)."""

    decisions: np.ndarray  # (B, 32) bool
    levels_l: np.ndarray  # (B, 33): V(RBL_L) at the ramp start and after each step
    levels_r: np.ndarray
    v_l_mac: np.ndarray  # (B,) after the MAC phase
    v_r_mac: np.ndarray
    vcm: np.ndarray  # (B, 32) common mode of each decision

    @property
    def cross(self) -> np.ndarray:
        any_ = self.decisions.any(axis=1)
        return np.where(any_, self.decisions.argmax(axis=1), -1)

    @property
    def code(self) -> np.ndarray:
        c = self.cross
        return np.where(c >= 0, N_CODES - 1 - c, 0)


def _digits(w: np.ndarray) -> np.ndarray:
    """Ternary digits (..., 3) of signed 4-bit weights, scales 1, 2, 4."""
    s = np.sign(w)
    m = np.abs(w)
    return np.stack([s * (m & 1), s * ((m >> 1) & 1), s * ((m >> 2) & 1)], axis=-1)


def convert(model: PointModel, design: Design, x: np.ndarray, w: np.ndarray,
            col: np.ndarray, die: Die, t_cal: float, t_step: float,
            cal_rows: np.ndarray | list[int] | None = None) -> Result:
    """Convert B patterns: ``x`` (B, n) inputs in -31..31, ``w`` (B, n) weights in -7..7,
    ``col`` (B,) the column of ``die`` each conversion runs on. ``cal_rows``: the
    calibration rows storing -1 per column of the die (a trim); None: the design's."""
    cfg = design.cfg
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    col = np.asarray(col, dtype=np.int64)
    if np.abs(w).max(initial=0) > W_MAX:
        raise ValueError("weights outside -7..7")
    mac_m, rep_m, cal_m = (model.stacks[k] for k in ("mac", "rep", "cal"))
    s = die.scale
    split = split_cal_rows(design, cal_rows)
    if split:
        n_die = die.z_mac.shape[0]
        rows = np.asarray(cal_rows if cal_rows is not None else [design.cfg.cal_rows] * n_die,
                          dtype=np.int64)
        if rows.shape != (n_die,) or rows.min() < 0 or rows.max() > N_CAL:
            raise ValueError(f"cal_rows must be {n_die} integers in 0..{N_CAL}")
        if die.z_cal_rows is None and s != 0:
            raise ValueError("a die without calibration-row scores cannot convert with "
                             "trim rows (keyed_die(..., split_cal=True))")
        z_rows = die.z_cal_rows[col] if die.z_cal_rows is not None \
            else np.zeros((col.size, N_CAL))
        on_rows = np.arange(N_CAL)[None, :] < rows[col][:, None]  # (B, 32)
        f_rows = np.exp(s * (rep_m.mu_ln + rep_m.sigma_ln * z_rows)) * on_rows
        n_rows_on = on_rows.sum(axis=1)

        def cal_leak(v: np.ndarray) -> np.ndarray:
            # a row storing 0 has both devices off: its leakage is left out
            return n_rows_on * rep_m.leak(v)
    else:
        def cal_leak(v: np.ndarray) -> np.ndarray:
            return cal_m.leak(v)
    # -- MAC phase: which stack of each cell conducts, onto which line, for how long
    t = _digits(w)  # (B, n, 3)
    xs = x[:, :, None]
    prod = np.sign(t) * np.sign(xs)
    on_l, on_r = prod > 0, prod < 0
    pulse = np.abs(xs) * np.asarray(cfg.scales)[None, None, :] * cfg.t_unit
    # stack index: 0 lp (Q_L, RWL+) 1 ln (Q_L, RWL-) 2 rp (Q_R, RWL+) 3 rn (Q_R, RWL-)
    k = 2 * (t < 0) + (xs < 0)
    z = np.take_along_axis(die.z_mac[col], k[..., None], axis=-1)[..., 0]
    f = np.exp(s * (mac_m.mu_ln + mac_m.sigma_ln * z))
    q = f * mac_m.t_eff(pulse)
    n_l = on_l.sum(axis=(1, 2))
    n_r = on_r.sum(axis=(1, 2))
    if cfg.storage == "lean":
        c_l = cfg.c_rbl + model.c_par_l + n_l * mac_m.c_drain
        c_r = cfg.c_rbl + model.c_par_r + n_r * mac_m.c_drain
        leak_l_n, leak_r_n = n_l, n_r
    else:  # every cell's four stacks are there: two on each line
        n_all = 6 * cfg.n_dims
        c_l = cfg.c_rbl + model.c_par_l + n_all * mac_m.c_drain
        c_r = cfg.c_rbl + model.c_par_r + n_all * mac_m.c_drain
        leak_l_n = leak_r_n = np.full(x.shape[0], n_all)
    v0 = np.full(x.shape[0], model.v_pre)
    # every MAC pulse starts at the precharge: its edge is drawn there
    e_mac = mac_m.edge(model.v_pre, pulse)  # (B, n, 3)
    v_l = mac_m.discharge(v0, (q * on_l).sum(axis=(1, 2)), c_l) \
        - (e_mac * on_l).sum(axis=(1, 2)) / c_l
    v_r = mac_m.discharge(v0, (q * on_r).sum(axis=(1, 2)), c_r) \
        - (e_mac * on_r).sum(axis=(1, 2)) / c_r
    # leakage over the MAC phase (from the precharge release)
    t_phase = cfg.t_cal0() - (cfg.t_pre + cfg.t_edge)
    on_time_l = (pulse * on_l).sum(axis=(1, 2))
    on_time_r = (pulse * on_r).sum(axis=(1, 2))
    i_mac_off = mac_m.leak(v0)
    v_l = v_l - (i_mac_off * (leak_l_n * t_phase - on_time_l)
                 + N_RAMP * rep_m.leak(v0) * t_phase) / c_l
    v_r = v_r - (i_mac_off * (leak_r_n * t_phase - on_time_r)
                 + cal_leak(v0) * t_phase) / c_r
    v_l_mac, v_r_mac = v_l.copy(), v_r.copy()

    def leak(vl: np.ndarray, vr: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        il = leak_l_n * mac_m.leak(vl) + N_RAMP * rep_m.leak(vl)
        ir = leak_r_n * mac_m.leak(vr) + cal_leak(vr)
        return vl - il * dt / c_l, vr - ir * dt / c_r

    # -- calibration: the calibration rows storing -1 pull RBL_R
    if split:
        v_r = (rep_m.discharge(v_r, (f_rows * rep_m.t_eff(t_cal)).sum(axis=1), c_r)
               - n_rows_on * rep_m.edge(v_r, t_cal) / c_r)
    else:
        f_cal = np.exp(s * (cal_m.mu_ln + cal_m.sigma_ln * die.z_cal[col]))
        v_r = cal_m.discharge(v_r, f_cal * cal_m.t_eff(t_cal), c_r) \
            - cal_m.edge(v_r, t_cal) / c_r
    v_l, v_r = leak(v_l, v_r, cfg.cal_cycles(t_cal) * cfg.t_clk)
    # -- ramp and decisions
    f_rep = np.exp(s * (rep_m.mu_ln + rep_m.sigma_ln * die.z_rep[col]))  # (B, 32)
    z_sa = die.z_sa[col] * s
    levels_l = np.empty((x.shape[0], N_RAMP + 1))
    levels_r = np.empty_like(levels_l)
    levels_l[:, 0], levels_r[:, 0] = v_l, v_r
    dec = np.zeros((x.shape[0], N_RAMP), dtype=bool)
    vcm = np.empty((x.shape[0], N_RAMP))
    sa = model.sa
    grid = die.sa_grid[col] if die.sa_grid is not None else None

    def sa_off(vc: np.ndarray) -> np.ndarray:
        if grid is None:
            return sa.offset_at(vc, z_sa)
        nom = sa.offset_at(vc, np.zeros_like(vc))
        return nom + s * (sa.offset_from_grid(vc, grid) - nom)  # s = 1: the fit itself

    for j in range(N_RAMP):
        # a ramp step's edge follows the line's voltage: the steps shrink as it falls
        v_l = rep_m.discharge(v_l, f_rep[:, j] * rep_m.t_eff(t_step), c_l) \
            - rep_m.edge(v_l, t_step) / c_l
        v_l, v_r = leak(v_l, v_r, cfg.t_clk / 2)
        levels_l[:, j + 1], levels_r[:, j + 1] = v_l, v_r
        vcm[:, j] = 0.5 * (v_l + v_r)
        over = (v_r - v_l) - sa_off(vcm[:, j])
        dec[:, j] = over > sa.resolution
        v_l, v_r = leak(v_l, v_r, cfg.t_clk / 2)
    return Result(dec, levels_l, levels_r, v_l_mac, v_r_mac, vcm)


def _root(g, lo: float, hi: float, xtol: float = 1e-15, max_iter: int = 100) -> float:
    """Root of a monotonic ``g`` bracketed by [lo, hi] (Illinois regula falsi; scipy's
    optimizer would cost seconds of import in every worker)."""
    g_lo, g_hi = g(lo), g(hi)
    if g_lo == 0:
        return lo
    if g_hi == 0:
        return hi
    if (g_lo > 0) == (g_hi > 0):
        raise ValueError("composed calibration: the target is not bracketed")
    side = 0
    for _ in range(max_iter):
        x = (lo * g_hi - hi * g_lo) / (g_hi - g_lo)
        gx = g(x)
        if gx == 0 or hi - lo < xtol:
            return x
        if (gx > 0) == (g_lo > 0):
            lo, g_lo = x, gx
            if side == -1:
                g_hi /= 2
            side = -1
        else:
            hi, g_hi = x, gx
            if side == 1:
                g_lo /= 2
            side = 1
        if abs(gx) < 1e-12:  # volts: far below any bench resolution
            return x
    return x


def calibrate_model(model: PointModel, design: Design) -> Calibration:
    """The calibration procedure of :mod:`charact.column.calibration` on the nominal composed
    column: ``t_cal`` balances a column of MAC = mac_hi at the ramp start, ``t_step``
    balances a column of MAC = mac_lo after 32 steps (same patterns)."""
    x, w = calibration_patterns(design)
    m_hi, m_lo = (int(v) for v in w @ x)
    xx = np.stack([x, x])
    col = np.array([0, 1])
    die = nominal_die(2, design.cfg.n_dims)
    est = design.lsb * design.cfg.t_unit / design.cfg.rep_ratio

    def run(t_cal: float, t_step: float) -> Result:
        return convert(model, design, xx, w, col, die, t_cal, t_step)

    r0 = run(16 * est, est)
    d = r0.v_l_mac - r0.v_r_mac
    a = float((d[1] - d[0]) / (m_hi - m_lo))
    if not a > 0:
        raise ValueError(f"composed calibration: no MAC discharge difference (a = {a:.3g})")
    target_hi = a * (design.mac_hi - m_hi)
    target_lo = a * (design.mac_lo - m_lo)

    def g_cal(tc: float) -> float:
        r = run(tc, est)
        return float(r.levels_l[0, 0] - r.levels_r[0, 0] - target_hi)

    hi = 64 * est
    while g_cal(hi) < 0 and hi < 1e-6:
        hi *= 2
    t_cal = _root(g_cal, 0.0, hi)

    def g_step(ts: float) -> float:
        r = run(t_cal, ts)
        return float(r.levels_l[1, -1] - r.levels_r[1, -1] - target_lo)

    top = 4 * est
    while g_step(top) > 0 and top < design.cfg.t_clk:
        top *= 2
    t_step = _root(g_step, 0.0, top)
    # a trim row's worth, measured as the SPICE calibration does: the mac_hi pattern
    # at cal_rows -+ a few rows, their differentials at the ramp start
    worth = math.nan
    r0 = design.cfg.cal_rows
    span = min(ROW_WORTH_SPAN, r0, N_CAL - r0)
    if span >= 1:
        r = convert(model, design, xx, np.stack([w[0], w[0]]), col, die, t_cal, t_step,
                    cal_rows=[r0 - span, r0 + span])
        d = r.levels_l[:, 0] - r.levels_r[:, 0]
        worth = float((d[1] - d[0]) / (2 * span)) / (a * design.lsb)
    return Calibration(float(t_cal), float(t_step), a, a * design.lsb, 0.0, 0.0, 0, worth)


def typical_vcm(model: PointModel, design: Design, n: int = 64, seed: int = 7) -> float:
    """Median common mode of the SA decisions at the crossing, over stratified random
    patterns on the nominal composed column (the SA is characterized there)."""
    cal = calibrate_model(model, design)
    rng = np.random.default_rng(seed)
    decks = draw_patterns(rng, design, "stratified", 8, max(1, n // 8))
    x = np.concatenate([np.repeat(xd[None, :], wd.shape[0], 0) for xd, wd in decks])
    w = np.concatenate([wd for _, wd in decks])
    col = np.tile(np.arange(8), len(decks))
    r = convert(model, design, x, w, col, nominal_die(8, design.cfg.n_dims), cal.t_cal,
                cal.t_step)
    c = r.cross
    vc = np.where(c >= 0, r.vcm[np.arange(c.size), np.maximum(c, 0)], r.vcm[:, -1])
    v = float(np.median(vc))
    return v if math.isfinite(v) else model.v_pre - 0.1


__all__ = ["Die", "Result", "STACK_SIDE", "STACK_WRAP", "cal_instance", "cal_row_instance",
           "calibrate_model", "convert", "device_paths", "draw_die", "keyed_die",
           "nominal_die", "ramp_instance", "sa_instance", "split_cal_rows", "stack_instance",
           "stacks_used", "typical_vcm"]
