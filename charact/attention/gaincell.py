"""Gain-cell attention from the fitted gain-cell lookup models.

The architecture of N. Leroux, P.-P. Manea et al., "Analog in-memory computing attention
mechanism for fast and energy-efficient large language models" (arXiv 2409.19315): K
and V live as charge in 2T1C gain cells, a query element is the width of a read
word-line pulse, the cells' charges add on a bitline, and a charge-to-pulse readout
turns each column's charge into the pulse that drives the next array, saturating like a
hard sigmoid, in place of softmax and of any ADC. ``gaincell_attention(q, k, v,
config)`` runs, per head, causal and over a sliding window of ``window`` tokens::

    Q -> pulse widths (sign: which of two read phases)   K, V -> stored pair voltages
    S = sum_d charge(v_K decayed by its age, pulse_Q)     (multiply surface + retention)
    A = hard sigmoid readout of S (per-column gain/offset)  [or softmax: readout off]
    O = sum_j charge(v_V decayed by its age, pulse = A)   -> digital output

It reads only lookup-model files (``charact.lookup``): ``gaincell_multiply`` (charge of
each cell of a pair against its stored voltage and the pulse width, with its spread over
Monte-Carlo dies), ``gaincell_retention`` (droop of a stored voltage against hold time
and temperature) and ``gaincell_readout`` (pulse width against charge: gain, offset,
saturation, with their spread).

How the tables become tensor arithmetic (why: the charge of every query-key pair has to
be a few matrix products, not a per-element table lookup, to train with it):

* Multiply: each cell's charge ``f(v, tau)`` is nearly separable (charge ~ read current
  x pulse width), so the tables of both cells' mean and sigma are factored together
  over the pulse axis, ``f(v, tau) = sum_r g_r(v) h_r(tau)`` (an SVD of rank
  ``pulse_rank``; :attr:`GainCellHardware.rank_residual` says what is left out, 0.2 %
  of full scale at rank 1 on the shipped table). ``h_r`` interpolates linearly between
  the characterized pulse widths (and 0 at no pulse); ``g_r`` is the degree-4 polynomial
  through the five characterized stored levels, as the paper fits a polynomial in
  K - K_offset (its Eq. 4).
* Retention: the shipped table holds two stored levels, so along the stored voltage the
  droop is a straight line (extrapolated below the lower level, as the grid table does
  along a two-point axis): a cell written to ``v`` holds ``alpha(t) + beta(t) v`` after
  ``t``. Along time it interpolates linearly between the characterized hold times (0 at
  0), and keeps the last one beyond the table. The droop is applied to the written
  target level (the multiply table's axis). Age of key j at query i: ``(i - j) t_token``.
* A polynomial of an affine map is a polynomial: for each age the charge is
  ``sum_p C_p(age) u^p`` in the stored level ``u``, so Q.K^T is a few matrix products
  weighted elementwise by a Toeplitz matrix of ages.
* Spread, as deviations per physical cell and column of one simulated chip
  (:func:`draw_chip`): a cell's charge ``f + sigma_f(v, tau) z`` with ``sigma_f`` the
  multiply table's spread over dies (``cell_spread``); a cell's leak rate times
  ``exp(s eps)`` with ``s`` the log-spread of the table's retention time ``t_ret``, to
  first order in ``eps`` (``retention_spread``); each readout column's gain and offset
  from the readout table's spread (``readout_spread``). Token j sits in slot
  ``j mod window`` of the array, so the same slot is the same silicon for every token it
  holds. ``readout_noise`` adds a fresh deviation per conversion (the SPICE benches are
  noiseless, so it is 0 unless set).

Choices of this project, not the paper's: a signed query element applies its pulse in
one of two read phases and the readout subtracts the second phase's charge; the A.V
outputs are read out linearly with their nominal gain and offset divided out digitally
(their per-column deviations stay); the multiply and readout tables hold 27 C only and
are used at their own temperature, the retention follows ``temp``.

Digital units: ``q_full``, ``k_full``, ``v_full`` are the values that map to the longest
pulse and the full stored swing; beyond them a value clips. With every effect off the
function is plain causal sliding-window softmax attention (no scaling, as
:func:`charact.attention.pipeline.reference_attention`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charact.attention.quant import q_max_level, quantize_symmetric, signed_max_level
from charact.errors import UserError
from charact.lookup.grid_table import GridTableModel

#: shipped reference models (``models/``) used when a config names none
SHIPPED_MODELS = {
    "multiply": "gaincell_multiply_freepdk45.json",
    "retention": "gaincell_retention_freepdk45.json",
    "readout": "gaincell_readout_freepdk45.json",
}
#: degree of the polynomial in the stored level: through the multiply table's five levels
POLY_DEGREE = 4
_TERMS = ("mean", "cell_pos", "cell_neg", "ret_pos", "ret_neg")


@dataclass(frozen=True)
class GainCellConfig:
    """What the gain-cell hardware does to one attention call.

    Effects (each switchable; all off = plain sliding-window softmax attention):
    ``quantize``: Q to ``n_bits_q`` magnitude bits of pulse width (sign apart), K and V to
    ``n_bits_kv`` signed bits (sign included) of stored level; ``multiply``: products
    through the fitted multiply surface (off: exact products); ``cell_spread``: each
    cell's charge deviation from the multiply table's spread over dies; ``readout``: the
    charge-to-pulse hard sigmoid in place of softmax; ``readout_spread``: per-column
    gain and offset of every readout drawn per simulated chip; ``retention``: stored K/V
    droop with token age; ``retention_spread``: per-cell leak rate from the spread of the
    retention time; ``readout_noise``: a fresh deviation per conversion, as a fraction of
    the longest pulse (0: none; not characterized).

    ``window``: tokens each query sees, itself included (None: all earlier ones).
    ``t_token``: seconds between two tokens (age in s = token age x t_token; the decode
    roll-up supplies it, 100 ns here is an assumption). ``temp``: temperature of the
    retention (C, within the retention table). ``corner``, ``vdd``: the tables' PVT point.
    ``q_full``, ``k_full``, ``v_full``: the digital values mapped to the longest input
    pulse and the full stored swing (larger ones clip). ``pulse_rank``: terms of the
    separable multiply surface. ``multiply_model``, ``retention_model``,
    ``readout_model``: lookup-model files (None: the shipped FreePDK45 ones).
    """

    window: int | None = 64
    quantize: bool = True
    multiply: bool = True
    cell_spread: bool = True
    readout: bool = True
    readout_spread: bool = True
    retention: bool = True
    retention_spread: bool = True
    readout_noise: float = 0.0
    t_token: float = 1e-7
    temp: float = 27.0
    corner: str = "NOM"
    vdd: float = 1.0
    n_bits_q: int = 5
    n_bits_kv: int = 5
    q_full: float = 1.0
    k_full: float = 1.0
    v_full: float = 1.0
    pulse_rank: int = 1
    multiply_model: str | None = None
    retention_model: str | None = None
    readout_model: str | None = None

    def __post_init__(self) -> None:
        if self.window is not None and (isinstance(self.window, bool) or self.window < 1):
            raise UserError(f"window must be >= 1 or None (all tokens), got {self.window}")
        for name in ("t_token", "readout_noise"):
            val = getattr(self, name)
            if not (isinstance(val, int | float) and math.isfinite(val) and val >= 0):
                raise UserError(f"{name} must be a finite number >= 0, got {val}")
        for name in ("q_full", "k_full", "v_full", "vdd"):
            val = getattr(self, name)
            if not (isinstance(val, int | float) and math.isfinite(val) and val > 0):
                raise UserError(f"{name} must be a finite number > 0, got {val}")
        if not (isinstance(self.temp, int | float) and math.isfinite(self.temp)):
            raise UserError(f"temp must be a finite number, got {self.temp}")
        if not 1 <= self.n_bits_q <= 16:
            raise UserError(f"n_bits_q must be in 1..16, got {self.n_bits_q}")
        if not 2 <= self.n_bits_kv <= 16:
            raise UserError(f"n_bits_kv must be in 2..16 (sign included), got {self.n_bits_kv}")
        if not 1 <= self.pulse_rank <= 4:
            raise UserError(f"pulse_rank must be in 1..4, got {self.pulse_rank}")

    @classmethod
    def ideal(cls, window: int | None = 64) -> GainCellConfig:
        """Every effect off: plain causal softmax attention over a ``window``."""
        return cls(window=window, quantize=False, multiply=False, cell_spread=False,
                   readout=False, readout_spread=False, retention=False,
                   retention_spread=False)

    def with_(self, **kw: Any) -> GainCellConfig:
        """A copy with some fields changed."""
        return replace(self, **kw)

    @property
    def is_ideal(self) -> bool:
        """Whether no effect is on (the plain attention path); retention acts through the
        multiply surface, so without it there is nothing to decay."""
        return not (self.quantize or self.multiply or self.readout
                    or self.readout_noise > 0 or self.readout_spread)

    @property
    def has_chip(self) -> bool:
        """Whether a call draws per-chip deviations."""
        return (self.readout_spread or (self.multiply and self.cell_spread)
                or (self.multiply and self.retention and self.retention_spread))

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain values (for provenance)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _model_path(given: str | None, kind: str) -> Path:
    from charact.paths import models_dir

    path = Path(given) if given else Path(models_dir()) / SHIPPED_MODELS[kind]
    if not path.is_file():
        raise UserError(f"gain-cell {kind} model not found: {path}")
    return path


def _vander(u: np.ndarray) -> np.ndarray:
    return np.vander(np.asarray(u, dtype=np.float64), POLY_DEGREE + 1, increasing=True)


#: stored levels (fractions of the swing) where each age's polynomial is sampled
_NODES = np.linspace(0.0, 1.0, POLY_DEGREE + 1)
_NODES_INV = np.linalg.inv(_vander(_NODES))


class GainCellHardware:
    """The three gain-cell tables at one PVT point, reduced to what attention needs.

    Built by :func:`load_hardware` (cached per files and point). Charges in C, times in s,
    voltages in V.
    """

    def __init__(self, multiply: GridTableModel, retention: GridTableModel,
                 readout: GridTableModel, corner: str, vdd: float, temp: float,
                 pulse_rank: int, sources: dict[str, str]) -> None:
        self.sources = sources
        self._coef_cache: dict[tuple, dict[str, np.ndarray]] = {}
        self.corner, self.vdd, self.temp = corner, vdd, temp
        for name in ("q_pos", "q_neg"):
            if multiply.axes_of(name) != ["v_store", "pulse"]:
                raise UserError(f"the multiply model's {name!r} must vary over (v_store, pulse), "
                                f"not {multiply.axes_of(name)}")
        v_grid = multiply.axis_points(corner, "v_store")
        pulses = multiply.axis_points(corner, "pulse")
        if v_grid.size != POLY_DEGREE + 1 or not np.allclose(v_grid, v_grid[::-1].max()
                                                                   - v_grid[::-1]):
            raise UserError(f"the multiply model needs {POLY_DEGREE + 1} stored levels "
                            f"symmetric about the pair's zero level, got {v_grid.tolist()}")
        mtemp = float(multiply.axis_points(corner, "temp")[0])
        vv, tt = np.meshgrid(v_grid, pulses, indexing="ij")

        def grid(name: str, stat: str) -> np.ndarray:
            vals = multiply.values(name, corner, vdd, mtemp, stat=stat, v_store=vv, pulse=tt)
            return np.concatenate([np.zeros((v_grid.size, 1)), vals], axis=1)  # 0 at no pulse

        # each cell on its own stored voltage: the '-' cell of a pair written v_store
        # holds v_max - v_store, so its table reads backwards along the level axis
        tables = {"pos_mean": grid("q_pos", "mean"), "neg_mean": grid("q_neg", "mean")[::-1],
                  "pos_sigma": grid("q_pos", "sigma"), "neg_sigma": grid("q_neg", "sigma")[::-1]}
        stacked = np.concatenate([t / max(np.abs(t).max(), 1e-300) for t in tables.values()])
        _, _, vt = np.linalg.svd(stacked, full_matrices=False)
        basis = vt[:pulse_rank]
        basis = basis * np.sign(basis[:, -1:])  # positive at the longest pulse
        self.rank_residual = float(np.abs(stacked - stacked @ basis.T @ basis).max())
        self.pulse_grid = np.concatenate([[0.0], pulses])
        self.pulse_basis = basis  # (R, pulses): h_r at the grid pulses
        self.v_max = float(v_grid.max())
        self.v_offset = self.v_max / 2
        self.t_in = float(pulses.max())
        # g_r(v) as degree-4 polynomials in v (coefficients increasing), per table
        self.poly = {key: np.linalg.solve(_vander(v_grid), tab @ basis.T)
                     for key, tab in tables.items()}

        rtemp = readout.axis_points(corner, "temp")

        def rd(name: str, stat: str = "mean") -> float:
            return readout.value(name, corner, vdd, float(rtemp[0]), stat=stat)

        self.gain, self.gain_sigma = rd("gain"), rd("gain", "sigma")
        self.q_offset, self.q_offset_sigma = rd("q_offset"), rd("q_offset", "sigma")
        self.t_sat = rd("t_sat")
        if not (self.gain > 0 and self.t_sat > 0):
            raise UserError("the readout model's gain and t_sat must be > 0")

        self.ret_times = retention.axis_points(corner, "t_hold")
        lv = retention.axis_points(corner, "v_store")
        if lv.size < 2:
            raise UserError("the retention model needs at least two stored levels")
        lo, hi = float(lv[0]), float(lv[-1])
        th = self.ret_times
        d_lo = retention.values("droop", corner, vdd, temp, v_store=lo, t_hold=th)
        d_hi = retention.values("droop", corner, vdd, temp, v_store=hi, t_hold=th)
        # droop(v, t) = d0(t) + d1(t) v: the straight line through the two stored levels
        self.d1 = (d_hi - d_lo) / (hi - lo)
        self.d0 = d_lo - lo * self.d1
        t_ret = retention.value("t_ret", corner, vdd, temp, v_store=hi)
        t_ret_sd = retention.value("t_ret", corner, vdd, temp, stat="sigma", v_store=hi)
        # log-normal leak rate with the retention time's relative spread
        self.log_leak_sigma = math.sqrt(math.log1p((t_ret_sd / t_ret) ** 2))
        self.full_charge = self.pair_charge(1.0, self.t_in)
        self.av_full_charge = self.pair_charge(1.0, self.t_sat)

    # -- pieces in numpy (float64) --------------------------------------------------------

    def h(self, tau: np.ndarray) -> np.ndarray:
        """h_r(tau), shape (R, *tau.shape)."""
        return np.stack([np.interp(tau, self.pulse_grid, b) for b in self.pulse_basis])

    def droop(self, v: np.ndarray, t: float) -> np.ndarray:
        """Mean droop (V) of a cell written to ``v`` after ``t`` s."""
        tg = np.concatenate([[0.0], self.ret_times])
        d0 = np.interp(t, tg, np.concatenate([[0.0], self.d0]))
        d1 = np.interp(t, tg, np.concatenate([[0.0], self.d1]))
        return d0 + d1 * np.asarray(v, dtype=np.float64)

    def _log_slope(self, t: float) -> tuple[float, float]:
        """t * d(droop)/dt as (e0, e1) of e0 + e1 v: the droop's change per unit of
        log leak rate (a faster leak is a later time)."""
        tg = np.concatenate([[0.0], self.ret_times])
        if t <= 0 or t >= tg[-1]:
            return 0.0, 0.0
        k = int(np.searchsorted(tg, t, side="right")) - 1
        dt = tg[k + 1] - tg[k]
        d0 = np.concatenate([[0.0], self.d0])
        d1 = np.concatenate([[0.0], self.d1])
        return t * (d0[k + 1] - d0[k]) / dt, t * (d1[k + 1] - d1[k]) / dt

    def pair_charge(self, x: float, tau: float) -> float:
        """Mean charge of a pair holding the signed level ``x`` (-1..1) for a pulse
        ``tau``, no droop."""
        coef = self.age_coefficients(np.zeros(1), spread=False)["mean"][0]  # (R, P)
        u = (1.0 + x) / 2.0
        return float((self.h(np.asarray(tau))[:, None] * coef).sum(axis=0) @ _vander([u])[0])

    def cached_coefficients(self, n_ages: int, t_token: float,
                            retention_spread: bool) -> dict[str, np.ndarray]:
        """:meth:`age_coefficients` of token ages ``0 .. n_ages - 1`` (kept per setting:
        every layer and call of a run asks for the same ones)."""
        key = (n_ages, float(t_token), bool(retention_spread))
        if key not in self._coef_cache:
            self._coef_cache[key] = self.age_coefficients(
                np.arange(n_ages) * t_token, spread=True,
                retention_spread=retention_spread and t_token > 0)
        return self._coef_cache[key]

    def age_coefficients(self, ages: np.ndarray, spread: bool = True,
                         retention_spread: bool = True) -> dict[str, np.ndarray]:
        """Per term, the polynomial coefficients ``C[age, r, p]`` of the charge in the
        stored level ``u`` (the '+' cell at ``u v_max``, the '-' cell at ``(1 - u) v_max``)
        after ``ages`` seconds: ``charge = sum_r h_r(tau) sum_p C[age, r, p] u^p``, the
        spread terms to be weighted by each cell's standard normal deviation."""
        out: dict[str, np.ndarray] = {}
        vp = _NODES * self.v_max  # '+' cell as written
        vn = (1.0 - _NODES) * self.v_max
        pol = np.polynomial.polynomial
        rows: dict[str, list[np.ndarray]] = {t: [] for t in _TERMS}
        for age in np.asarray(ages, dtype=np.float64):
            vp_a = vp - self.droop(vp, age)
            vn_a = vn - self.droop(vn, age)
            e0, e1 = self._log_slope(float(age))
            dvp = -(e0 + e1 * vp) * self.log_leak_sigma  # dv per unit eps of the leak
            dvn = -(e0 + e1 * vn) * self.log_leak_sigma
            vals = {"mean": [], "cell_pos": [], "cell_neg": [], "ret_pos": [], "ret_neg": []}
            for r in range(self.pulse_basis.shape[0]):
                cp, cn = self.poly["pos_mean"][:, r], self.poly["neg_mean"][:, r]
                vals["mean"].append(pol.polyval(vp_a, cp) - pol.polyval(vn_a, cn))
                vals["cell_pos"].append(pol.polyval(vp_a, self.poly["pos_sigma"][:, r]))
                vals["cell_neg"].append(-pol.polyval(vn_a, self.poly["neg_sigma"][:, r]))
                vals["ret_pos"].append(pol.polyval(vp_a, pol.polyder(cp)) * dvp)
                vals["ret_neg"].append(-pol.polyval(vn_a, pol.polyder(cn)) * dvn)
            for t in _TERMS:
                rows[t].append(np.stack(vals[t]) @ _NODES_INV.T)  # (R, P)
        for t in _TERMS:
            if t.startswith("cell") and not spread:
                continue
            if t.startswith("ret") and not retention_spread:
                continue
            out[t] = np.stack(rows[t])
        return out


@functools.lru_cache(maxsize=16)
def _load(paths: tuple[str, str, str], corner: str, vdd: float, temp: float,
          rank: int) -> GainCellHardware:
    mult, ret, rd = (GridTableModel.load(p) for p in paths)
    return GainCellHardware(mult, ret, rd, corner, vdd, temp, rank,
                            dict(zip(("multiply", "retention", "readout"), paths, strict=True)))


def load_hardware(config: GainCellConfig) -> GainCellHardware:
    """The tables of ``config`` at its PVT point (cached); a missing file, a point or
    temperature outside the tables is one :class:`UserError`."""
    paths = (str(_model_path(config.multiply_model, "multiply")),
             str(_model_path(config.retention_model, "retention")),
             str(_model_path(config.readout_model, "readout")))
    return _load(paths, config.corner, float(config.vdd), float(config.temp),
                 int(config.pulse_rank))


# -- simulated chips -------------------------------------------------------------------------

@dataclass
class GainCellChip:
    """One layer's deviations on one simulated chip, standard normal draws per physical
    cell or column (None where the effect is off). ``slots``: array columns (window).

    Cells (H, slots, d): ``k_pos``/``k_neg`` charge, ``k_ret_pos``/``k_ret_neg`` leak, and
    the same for V. Readout columns: ``qk_gain``/``qk_offset`` (H, slots), ``av_gain``/
    ``av_offset`` (H, d_v).
    """

    slots: int
    k_pos: torch.Tensor | None = None
    k_neg: torch.Tensor | None = None
    k_ret_pos: torch.Tensor | None = None
    k_ret_neg: torch.Tensor | None = None
    v_pos: torch.Tensor | None = None
    v_neg: torch.Tensor | None = None
    v_ret_pos: torch.Tensor | None = None
    v_ret_neg: torch.Tensor | None = None
    qk_gain: torch.Tensor | None = None
    qk_offset: torch.Tensor | None = None
    av_gain: torch.Tensor | None = None
    av_offset: torch.Tensor | None = None


def draw_chip(config: GainCellConfig, heads: int, d_k: int, d_v: int, slots: int,
              generator: torch.Generator | None = None, device: Any = "cpu",
              dtype: torch.dtype = torch.float32) -> GainCellChip:
    """Standard normal deviations of one layer of one chip, in a fixed order (so a seeded
    ``generator`` gives the same chip every time)."""

    def n(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype).to(device)

    chip = GainCellChip(slots)
    cells = config.multiply and config.cell_spread
    leak = config.multiply and config.retention and config.retention_spread
    # always draw every field, so switching one effect off leaves the others' draws as
    # they were on the same seed
    draws = {name: n(heads, slots, d) for name, d in (
        ("k_pos", d_k), ("k_neg", d_k), ("k_ret_pos", d_k), ("k_ret_neg", d_k),
        ("v_pos", d_v), ("v_neg", d_v), ("v_ret_pos", d_v), ("v_ret_neg", d_v))}
    cols = {"qk_gain": n(heads, slots), "qk_offset": n(heads, slots),
            "av_gain": n(heads, d_v), "av_offset": n(heads, d_v)}
    for name, t in draws.items():
        if (cells and "ret" not in name) or (leak and "ret" in name):
            setattr(chip, name, t)
    if config.readout_spread:
        for name, t in cols.items():
            setattr(chip, name, t)
    return chip


def chip_generator(seed: int, layer: int, device: Any = "cpu") -> torch.Generator:
    """The generator of chip ``seed``'s array ``layer`` (independent per layer)."""
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + int(layer) + 1)


# -- the attention call ----------------------------------------------------------------------

@dataclass
class GainCellResult:
    """Output (B, H, Lq, Dv) and the attention weights (B, H, Lq, Lk): the readout's
    pulse widths as fractions of the longest pulse, or the softmax probabilities."""

    out: torch.Tensor
    attn: torch.Tensor


def window_ages(lq: int, lk: int, window: int | None,
                device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token age ``i - j`` (int64, (Lq, Lk)) and the causal window mask (True = attend);
    the queries are the last ``lq`` of the ``lk`` positions."""
    i = torch.arange(lq, device=device).unsqueeze(-1) + (lk - lq)
    j = torch.arange(lk, device=device).unsqueeze(0)
    age = i - j
    valid = age >= 0
    if window is not None:
        valid = valid & (age < window)
    return age, valid


def _h(tau: torch.Tensor, hw: GainCellHardware, r: int) -> torch.Tensor:
    """h_r(tau) in torch: linear between the pulse grid points, differentiable in tau."""
    grid = torch.as_tensor(hw.pulse_grid, dtype=tau.dtype, device=tau.device)
    vals = torch.as_tensor(hw.pulse_basis[r], dtype=tau.dtype, device=tau.device)
    t = tau.clamp(0.0, float(grid[-1]))
    idx = torch.bucketize(t.detach().contiguous(), grid[1:-1])
    t0, t1, v0, v1 = grid[idx], grid[idx + 1], vals[idx], vals[idx + 1]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _slot_weights(dev: torch.Tensor | None, lk: int, slots: int) -> torch.Tensor | None:
    """(H, Lk, d) deviations of the cells that hold tokens 0..lk-1 (slot j mod slots)."""
    if dev is None:
        return None
    if dev.shape[1] != slots:
        raise UserError(f"the chip has {dev.shape[1]} array slots but the window needs {slots}")
    idx = torch.arange(lk, device=dev.device) % slots
    return dev[:, idx]


def _features(u: torch.Tensor) -> list[torch.Tensor]:
    """u^0 .. u^POLY_DEGREE."""
    feats = [torch.ones_like(u), u]
    for _ in range(POLY_DEGREE - 1):
        feats.append(feats[-1] * u)
    return feats


class _Terms:
    """The age polynomials of one call as tensors: per term (T), pulse term (R), power (P)
    either one coefficient (no retention) or a Toeplitz matrix over (Lq, Lk)."""

    def __init__(self, hw: GainCellHardware, config: GainCellConfig, age: torch.Tensor,
                 valid: torch.Tensor, dtype: torch.dtype) -> None:
        retention = config.retention and config.t_token > 0
        n_ages = int(age.clamp_min(0).max()) + 1
        if config.window is not None:
            n_ages = min(n_ages, config.window)  # older keys are outside the window
        if not retention:
            n_ages = 1
        coef = hw.cached_coefficients(n_ages, config.t_token if retention else 0.0,
                                      config.retention_spread)
        self.per_age = retention
        self.coef = {t: torch.as_tensor(c, dtype=dtype, device=age.device)
                     for t, c in coef.items()}
        self.index = age.clamp(0, n_ages - 1)
        self.valid = valid

    def matrix(self, term: str, r: int, p: int) -> torch.Tensor:
        """C[term][age(i, j), r, p] over (Lq, Lk), zero outside the window."""
        c = self.coef[term][:, r, p][self.index]
        return c * self.valid


def _stored_terms(x_unit: torch.Tensor, chip: GainCellChip | None, which: str,
                  slots: int) -> list[tuple[str, torch.Tensor | None]]:
    """(term, per-cell weight (H, Lk, d) or None) for K (``which`` 'k') or V."""
    lk = x_unit.shape[-2]
    out: list[tuple[str, torch.Tensor | None]] = [("mean", None)]
    if chip is None:
        return out
    for term, name in (("cell_pos", "pos"), ("cell_neg", "neg"),
                       ("ret_pos", "ret_pos"), ("ret_neg", "ret_neg")):
        w = _slot_weights(getattr(chip, f"{which}_{name}"), lk, slots)
        if w is not None:
            out.append((term, w))
    return out


def _stacked(feats: list[torch.Tensor], stored: list[tuple[str, torch.Tensor | None]],
             terms: _Terms) -> tuple[list[tuple[str, int]], torch.Tensor]:
    """Every (term, power) feature of the stored side stacked on a new axis 2:
    (B, H, F, Lk, d), and the (term, power) of each."""
    keys, parts = [], []
    for term, w in stored:
        if term not in terms.coef:
            continue
        for p, f in enumerate(feats):
            keys.append((term, p))
            parts.append(f if w is None else f * w)
    return keys, torch.stack(parts, dim=2)


def _age_matrices(terms: _Terms, keys: list[tuple[str, int]], r: int) -> torch.Tensor:
    """(F, Lq, Lk) Toeplitz coefficient matrices of the stacked features."""
    return torch.stack([terms.matrix(t, r, p) for t, p in keys])


def _folded(feats: list[torch.Tensor], stored: list[tuple[str, torch.Tensor | None]],
            terms: _Terms, r: int) -> torch.Tensor:
    """Without droop the coefficients do not depend on age: the stored side's charge
    polynomial per cell, summed over terms, (B, H, Lk, d)."""
    g = None
    for term, w in stored:
        if term not in terms.coef:
            continue
        c = terms.coef[term][0, r]
        part = sum(c[p] * f for p, f in enumerate(feats))
        part = part if w is None else part * w
        g = part if g is None else g + part
    assert g is not None
    return g


def _qk_charge(xq: torch.Tensor, xk: torch.Tensor, hw: GainCellHardware,
               terms: _Terms, stored: list[tuple[str, torch.Tensor | None]]) -> torch.Tensor:
    """Charge (C) of every query-key pair: ``xq``, ``xk`` signed levels in -1..1."""
    tau = xq.abs() * hw.t_in
    sgn = torch.sign(xq)
    feats = _features((1.0 + xk) / 2.0)
    s = None
    if terms.per_age:
        keys, fall = _stacked(feats, stored, terms)
        b, h, f, lk, d = fall.shape
        fall = fall.reshape(b, h, f * lk, d).transpose(-2, -1)
    for r in range(hw.pulse_basis.shape[0]):
        hr = _h(tau, hw, r) * sgn
        if terms.per_age:
            m = torch.matmul(hr, fall).view(b, h, -1, f, lk)
            part = (m * _age_matrices(terms, keys, r).transpose(0, 1)).sum(dim=-2)
        else:
            part = torch.matmul(hr, _folded(feats, stored, terms, r).transpose(-2, -1))
        s = part if s is None else s + part
    assert s is not None
    return s if terms.per_age else s * terms.valid


def _av_charge(a: torch.Tensor, xv: torch.Tensor, hw: GainCellHardware, terms: _Terms,
               stored: list[tuple[str, torch.Tensor | None]]) -> torch.Tensor:
    """Charge (C) of every output column: pulses ``a`` x t_sat on the V rows."""
    tau = a * hw.t_sat
    feats = _features((1.0 + xv) / 2.0)
    o = None
    if terms.per_age:
        keys, fall = _stacked(feats, stored, terms)
        b, h, f, lk, c = fall.shape
        fall = fall.reshape(b, h, f * lk, c)
    for r in range(hw.pulse_basis.shape[0]):
        hr = _h(tau, hw, r)
        if terms.per_age:
            x = hr.unsqueeze(-2) * _age_matrices(terms, keys, r).transpose(0, 1)
            part = torch.matmul(x.reshape(b, h, -1, f * lk), fall)
        else:
            part = torch.matmul(hr * terms.valid, _folded(feats, stored, terms, r))
        o = part if o is None else o + part
    assert o is not None
    return o


def _unit(x: torch.Tensor, full: float, n_levels: int | None) -> torch.Tensor:
    """``x / full`` clipped to -1..1, on ``n_levels`` levels a side when quantizing
    (straight-through gradient inside the range)."""
    if n_levels is None:
        return torch.clamp(x / full, -1.0, 1.0)
    step = torch.tensor(full / n_levels, dtype=x.dtype, device=x.device)
    return quantize_symmetric(x, n_levels, step) / full


def gaincell_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: GainCellConfig,
    chip: GainCellChip | None = None,
    generator: torch.Generator | None = None,
    hardware: GainCellHardware | None = None,
) -> GainCellResult:
    """Gain-cell attention on ``q`` (B, H, Lq, d_k), ``k`` (B, H, Lk, d_k), ``v`` (B, H,
    Lk, d_v), causal over ``config.window`` (queries are the last Lq positions).

    ``chip``: this layer's deviations (:func:`draw_chip`); None with a spread effect on
    draws a fresh chip from ``generator`` (a new chip per call, as noise-aware training
    wants). ``generator`` also drives ``readout_noise``; None: torch's default one.
    ``hardware``: the loaded tables (default :func:`load_hardware` of ``config``).
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise UserError("gaincell_attention takes (B, H, L, d) tensors")
    if generator is not None and generator.device.type != q.device.type:
        raise UserError(f"the generator is on {generator.device} but the tensors on "
                        f"{q.device}: create it there, torch.Generator(device=...)")
    lq, lk = q.shape[-2], k.shape[-2]
    if lq > lk:
        raise UserError(f"{lq} queries but only {lk} keys: queries are the last positions")
    age, valid = window_ages(lq, lk, config.window, q.device)
    if config.is_ideal:
        scores = torch.matmul(q, k.transpose(-2, -1))
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1)
        return GainCellResult(torch.matmul(probs, v), probs)

    hw = hardware or load_hardware(config)
    heads, d_k, d_v = q.shape[1], q.shape[-1], v.shape[-1]
    # array columns: the window, or (no window) the chip's own, or one per key
    slots = config.window or (chip.slots if chip is not None else lk)
    if chip is None and config.has_chip:
        chip = draw_chip(config, heads, d_k, d_v, slots, generator, q.device, q.dtype)
    lv = config.quantize
    xq = _unit(q, config.q_full, q_max_level(config.n_bits_q) if lv else None)
    xk = _unit(k, config.k_full, signed_max_level(config.n_bits_kv) if lv else None)
    xv = _unit(v, config.v_full, signed_max_level(config.n_bits_kv) if lv else None)
    terms = None
    if config.multiply:
        terms = _Terms(hw, config, age, valid, q.dtype)
        s = _qk_charge(xq, xk, hw, terms, _stored_terms(xk, chip, "k", slots))
    else:
        s = torch.matmul(xq, xk.transpose(-2, -1)) * hw.full_charge
    if config.readout:
        gain = torch.full((heads, lk), hw.gain, dtype=q.dtype, device=q.device)
        off = torch.full((heads, lk), hw.q_offset, dtype=q.dtype, device=q.device)
        if chip is not None and chip.qk_gain is not None:
            gain = gain * (1.0 + hw.gain_sigma / hw.gain * _slot_weights(
                chip.qk_gain.unsqueeze(-1), lk, slots).squeeze(-1))
            off = off + hw.q_offset_sigma * _slot_weights(
                chip.qk_offset.unsqueeze(-1), lk, slots).squeeze(-1)
        pulse = gain.unsqueeze(1) * (s - off.unsqueeze(1))
        if config.readout_noise > 0:
            noise = torch.randn(pulse.shape, generator=generator, dtype=pulse.dtype,
                                device=pulse.device)
            pulse = pulse + (config.readout_noise * hw.t_sat) * noise
        attn = torch.clamp(pulse / hw.t_sat, 0.0, 1.0) * valid
    else:
        scores = s * (config.q_full * config.k_full / hw.full_charge)
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
    if config.multiply:
        assert terms is not None
        o = _av_charge(attn, xv, hw, terms, _stored_terms(xv, chip, "v", slots))
        out = o * (config.v_full / hw.av_full_charge)
    else:
        out = torch.matmul(attn, xv) * config.v_full
    if chip is not None and chip.av_gain is not None:
        # per output column: the readout's relative gain and charge offset deviations
        g = 1.0 + hw.gain_sigma / hw.gain * chip.av_gain
        off_v = config.v_full * hw.q_offset_sigma / hw.av_full_charge * chip.av_offset
        out = out * g.unsqueeze(1).to(out.dtype) + off_v.unsqueeze(1).to(out.dtype)
    return GainCellResult(out, attn)


def plain_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           window: int | None) -> torch.Tensor:
    """Causal softmax attention over a window, no scaling: the reference of the ideal
    mode."""
    _, valid = window_ages(q.shape[-2], k.shape[-2], window, q.device)
    from charact.attention.pipeline import reference_attention

    return reference_attention(q, k, v, mask=valid)


__all__ = ["SHIPPED_MODELS", "GainCellChip", "GainCellConfig", "GainCellHardware",
           "GainCellResult", "chip_generator", "draw_chip", "gaincell_attention",
           "load_hardware", "plain_window_attention", "window_ages"]
