"""Softmax-macro latency: the paper's equations (3) and (4), term by term.

One softmax macro computes one attention head's scores ``softmax(Q·Kᵀ)`` for ``d`` queries
against ``d`` keys (seq. len. ``d``). Kᵀ is written once (``T_wr``), then the ``d`` rows of Q
are applied one after another; each row costs an input pulse (``T_pwm``), a conversion and
the digital non-linearity. From the Topkima-Former paper, section III-A::

    T_conv-SM     = T_wr + d·(T_pwm + T_ima + d·T_NL)
    T_Dtopk-SM    = T_wr + d·(T_pwm + T_ima + T_sort + k·T_NL)              (3)
    T_topkima-SM  = T_wr + d·(T_pwm + T_ima,arb + k·T_NL)                    (4)
    T_sort        = min(d·log2 d, d·k)·T_clk,sort
    T_ima,arb     = max(α·T_ima + T_arb, T_clk + k·T_arb)

Reading taken where the paper leaves a choice (section IV-B gives the numbers):

* ``T_pwm`` is the longest input pulse, the MSB cell's 62 ns (5-bit PWM from a 2 GHz clock,
  pulse scale 4): the three scaled pulses of a weight are applied together, so a row of Q
  takes as long as its longest pulse.
* ``T_clk`` inside ``T_ima,arb`` is the IMA (ramp) clock, 4 ns.
* ``log`` in ``T_sort`` is base 2 (comparisons of a sort); at d = 384, k = 5 the ``d·k``
  branch of the min is taken anyway, so the base does not change the numbers.
* ``T_clk,sort`` is 0.5 ns: the 2 GHz clock the paper names for the PWM; the paper writes
  only ``T_clk``.

With these inputs (T_wr = 320 ns, T_NL = 6.5 ns, d = 384, k = 5, T_ima = 32 × 4 ns,
α = 0.31, T_arb = 2.08 ns) the equations give T_conv/T_topkima ≈ 19.6× and
T_Dtopk/T_topkima ≈ 8.6×. The paper's text states "about 15× and 8×" for Fig. 4(a); its
own equations do not give 15× under any reading of T_pwm or the sorting clock alone. The
conv/topkima ratio is ``(T_pwm + T_ima + d·T_NL)/(T_pwm + T_ima,arb + k·T_NL)`` per query
and the numerator is dominated by d·T_NL = 2496 ns, so 15× needs about 45 ns more per query
in every macro (for example T_pwm = 15.5 + 31 + 62 = 108.5 ns, the three scaled pulses one
after another, gives 14.9×) -- but that same overhead pulls the Dtopk ratio down to 6.7×, and
8× then needs a sorting clock near 0.62 ns. :func:`claim_readings` computes these numbers.
So Fig. 4(a) must hold per-query overheads the equations leave out (buffers, interconnect,
the NeuroSim peripherals of section IV-B).

α may be one number or per-query samples; :func:`alpha_spread` summarises the latency over
the samples. All times are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from charact.errors import UserError


def _src(text: str) -> dict[str, str]:
    """Field metadata naming where a default comes from (printed in the provenance)."""
    return {"source": text}


@dataclass(frozen=True)
class MacroInputs:
    """Inputs of equations (3) and (4); SI units (seconds). Defaults are the paper's."""

    # Keys per head = queries per head: BERT-base on SQuAD, one head's Q is 384×64 (IV-B).
    d: int = field(default=384, metadata=_src("paper IV-B: Q of one head is 384×64"))
    # Top-5 is the paper's operating point (IV-A, IV-B).
    k: int = field(default=5, metadata=_src("paper IV-B: top-5 from 384 MAC results"))
    # Head dimension: rows of Kᵀ (used to turn a per-row write time into T_wr, and energy).
    d_k: int = field(default=64, metadata=_src("paper IV-B: Kᵀ of one head is 64×384"))
    # Kᵀ write, row-by-row parallel; 320 ns = 64 rows × 5 ns (IV-B, estimated from [1], [13]).
    t_wr: float = field(default=320e-9, metadata=_src("paper IV-B: T_write = 320 ns"))
    # Digital exponent + division per element (IV-B, estimated from [1], [13]).
    t_nl: float = field(default=6.5e-9, metadata=_src("paper IV-B: T_NL,dig = 6.5 ns"))
    # Longest input pulse: MSB of 5-bit PWM at 2 GHz with scale 4 (IV-B).
    t_pwm: float = field(
        default=62e-9, metadata=_src("paper IV-B: T_pwm,inp = 62 ns for the MSB (reading)")
    )
    # Ramp clock of the in-memory ADC (IV-B).
    t_clk_ima: float = field(default=4e-9, metadata=_src("paper IV-B: T_clk,ima = 4 ns"))
    # Full ramp: 2^5 = 32 cycles of T_clk,ima (IV-B).
    t_ima: float = field(default=128e-9, metadata=_src("paper IV-B: T_ima = 32 × 4 ns"))
    # Mean early-stop fraction over the data set (IV-B).
    alpha: float = field(default=0.31, metadata=_src("paper IV-B: α ≈ 0.31 averaged"))
    # Arbiter 1.51 ns + encoder 0.57 ns, SS, 0.8 V, 65 nm (IV-B).
    t_arb: float = field(default=2.08e-9, metadata=_src("paper IV-B: T_arb < 2.08 ns (SS, 0.8 V)"))
    # The paper writes only T_clk for sorting; reading: its 2 GHz clock (see module docstring).
    t_clk_sort: float = field(
        default=0.5e-9, metadata=_src("reading: 2 GHz clock of paper IV-B, T_clk,sort = 0.5 ns")
    )
    # ADC resolution: 5-bit ramp, 32 cycles (III-A).
    n_bits: int = field(default=5, metadata=_src("paper III-A: 5-bit ramp IMA"))
    # SA decision delay: not in eqs. (3)-(4); only checked against the ramp clock.
    t_sa: float | None = field(default=None, metadata=_src("not given by the paper"))

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first out-of-range input."""
        if self.d < 2:
            raise UserError(f"d must be at least 2, got {self.d}")
        if self.k < 1 or self.k > self.d:
            raise UserError(f"k must be in 1..d={self.d}, got {self.k}")
        if self.d_k < 1 or self.n_bits < 1:
            raise UserError("d_k and n_bits must be positive integers")
        for f in fields(self):
            v = getattr(self, f.name)
            bad = v is not None and (not math.isfinite(v) or v < 0)
            if f.name.startswith("t_") and bad:
                raise UserError(f"{f.name} must be a non-negative time in seconds, got {v}")
        if self.t_clk_ima <= 0 or self.t_ima <= 0:
            raise UserError("t_clk_ima and t_ima must be positive")
        _check_alpha(np.asarray(self.alpha, dtype=float), "alpha")


def _check_alpha(alpha: np.ndarray, what: str) -> None:
    if alpha.size == 0:
        raise UserError(f"{what} is empty")
    if not np.all(np.isfinite(alpha)) or np.any(alpha <= 0) or np.any(alpha > 1):
        bad = alpha[~(np.isfinite(alpha) & (alpha > 0) & (alpha <= 1))].ravel()[0]
        raise UserError(f"{what} must lie in (0, 1], found {bad}")


def sort_compares(d: int, k: int) -> float:
    """Compare steps of the digital top-k sort: ``min(d·log2 d, d·k)``."""
    return min(d * math.log2(d), float(d * k))


def t_sort(inp: MacroInputs) -> float:
    """``T_sort = min(d·log2 d, d·k)·T_clk,sort`` (per query)."""
    return sort_compares(inp.d, inp.k) * inp.t_clk_sort


def t_ima_arb(inp: MacroInputs, alpha: float | np.ndarray | None = None) -> float | np.ndarray:
    """``T_ima,arb = max(α·T_ima + T_arb, T_clk,ima + k·T_arb)``; vectorised over ``alpha``.

    The first branch is the ramp stopping at α plus one arbitration of the k-th crossing; the
    second is the floor when all k crossings queue at the arbiter in one cycle.
    """
    a = inp.alpha if alpha is None else alpha
    return np.maximum(np.asarray(a) * inp.t_ima + inp.t_arb, inp.t_clk_ima + inp.k * inp.t_arb)


def ima_arb_branch(inp: MacroInputs, alpha: float | None = None) -> str:
    """Which branch of ``T_ima,arb`` is taken: ``"ramp"`` (α·T_ima + T_arb) or ``"arbiter"``."""
    a = inp.alpha if alpha is None else alpha
    ramp = a * inp.t_ima + inp.t_arb
    return "ramp" if ramp >= inp.t_clk_ima + inp.k * inp.t_arb else "arbiter"


def t_conv_sm(inp: MacroInputs) -> float:
    """``T_conv-SM = T_wr + d·(T_pwm + T_ima + d·T_NL)``."""
    return inp.t_wr + inp.d * (inp.t_pwm + inp.t_ima + inp.d * inp.t_nl)


def t_dtopk_sm(inp: MacroInputs) -> float:
    """``T_Dtopk-SM = T_wr + d·(T_pwm + T_ima + T_sort + k·T_NL)`` (eq. 3)."""
    return inp.t_wr + inp.d * (inp.t_pwm + inp.t_ima + t_sort(inp) + inp.k * inp.t_nl)


def t_topkima_sm(inp: MacroInputs, alpha: float | np.ndarray | None = None) -> float | np.ndarray:
    """``T_topkima-SM = T_wr + d·(T_pwm + T_ima,arb + k·T_NL)`` (eq. 4); vectorised over α."""
    return inp.t_wr + inp.d * (inp.t_pwm + t_ima_arb(inp, alpha) + inp.k * inp.t_nl)


@dataclass(frozen=True)
class MacroLatency:
    """One macro's latency split into the terms of its equation (seconds, whole macro)."""

    macro: str
    write: float  # T_wr
    pwm: float  # d·T_pwm
    ima: float  # d·T_ima (conv, Dtopk) or d·T_ima,arb (topkima)
    sort: float  # d·T_sort (Dtopk only)
    nl: float  # d·d·T_NL (conv) or d·k·T_NL

    @property
    def total(self) -> float:
        return self.write + self.pwm + self.ima + self.sort + self.nl


MACROS: tuple[str, str, str] = ("conv", "Dtopk", "topkima")


def macro_latencies(
    inp: MacroInputs, alpha: float | None = None
) -> tuple[MacroLatency, MacroLatency, MacroLatency]:
    """The three macros' latencies (conv, Dtopk, topkima at ``alpha`` or ``inp.alpha``)."""
    d, k = inp.d, inp.k
    conv = MacroLatency("conv", inp.t_wr, d * inp.t_pwm, d * inp.t_ima, 0.0, d * d * inp.t_nl)
    dtopk = MacroLatency(
        "Dtopk", inp.t_wr, d * inp.t_pwm, d * inp.t_ima, d * t_sort(inp), d * k * inp.t_nl
    )
    ima = float(t_ima_arb(inp, alpha))
    topk = MacroLatency("topkima", inp.t_wr, d * inp.t_pwm, d * ima, 0.0, d * k * inp.t_nl)
    return conv, dtopk, topk


@dataclass(frozen=True)
class AlphaSpread:
    """T_topkima-SM over per-query α samples.

    ``t_at_mean`` evaluates eq. (4) at the mean α. ``t_mean`` is the mean of eq. (4) over the
    samples: the expected macro latency when each of the d queries stops at its own α
    (eq. 4 is a sum over queries, so its expectation is d·E[T_ima,arb(α)]); because of the
    max() it is never below ``t_at_mean``. The percentiles are eq. (4) with every query at the
    α of that percentile: the spread between inputs whose queries stop early or late.
    """

    n: int
    alpha_mean: float
    alpha_std: float
    alpha_p5: float
    alpha_p50: float
    alpha_p95: float
    t_at_mean: float
    t_mean: float
    t_p5: float
    t_p50: float
    t_p95: float
    speedup_conv_at_mean: float
    speedup_dtopk_at_mean: float
    speedup_conv_mean: float
    speedup_dtopk_mean: float
    speedup_conv_p95: float  # against the slow (p95) end of the α spread
    speedup_dtopk_p95: float


def alpha_spread(inp: MacroInputs, alpha_samples: np.ndarray) -> AlphaSpread:
    """Summarise eq. (4) over α samples (values in (0, 1])."""
    a = np.asarray(alpha_samples, dtype=float).ravel()
    _check_alpha(a, "alpha samples")
    t = np.asarray(t_topkima_sm(inp, a), dtype=float)
    a_mean = float(a.mean())
    t_at_mean = float(t_topkima_sm(inp, a_mean))
    p5, p50, p95 = (float(x) for x in np.percentile(t, [5, 50, 95]))
    conv, dtopk = t_conv_sm(inp), t_dtopk_sm(inp)
    return AlphaSpread(
        n=int(a.size),
        alpha_mean=a_mean,
        alpha_std=float(a.std()),
        alpha_p5=float(np.percentile(a, 5)),
        alpha_p50=float(np.percentile(a, 50)),
        alpha_p95=float(np.percentile(a, 95)),
        t_at_mean=t_at_mean,
        t_mean=float(t.mean()),
        t_p5=p5,
        t_p50=p50,
        t_p95=p95,
        speedup_conv_at_mean=conv / t_at_mean,
        speedup_dtopk_at_mean=dtopk / t_at_mean,
        speedup_conv_mean=conv / float(t.mean()),
        speedup_dtopk_mean=dtopk / float(t.mean()),
        speedup_conv_p95=conv / p95,
        speedup_dtopk_p95=dtopk / p95,
    )


@dataclass(frozen=True)
class Reading:
    """One reading of the paper's inputs and the speed-ups it gives."""

    name: str
    t_pwm: float
    t_clk_sort: float
    extra_per_query: float  # overhead added to every macro's per-query time
    speedup_conv: float
    speedup_dtopk: float


def _ratios(inp: MacroInputs, extra: float = 0.0) -> tuple[float, float]:
    top = float(t_topkima_sm(inp)) + inp.d * extra
    return (t_conv_sm(inp) + inp.d * extra) / top, (t_dtopk_sm(inp) + inp.d * extra) / top


def solve_extra_per_query(inp: MacroInputs, target_conv: float) -> float:
    """Per-query overhead X (added to every macro) that makes T_conv/T_topkima = target.

    From ``T_conv + d·X = R·(T_topkima + d·X)``: ``X = (T_conv − R·T_topkima)/(d·(R − 1))``.
    """
    if target_conv <= 1:
        raise UserError("target speed-up must exceed 1")
    top = float(t_topkima_sm(inp))
    return (t_conv_sm(inp) - target_conv * top) / (inp.d * (target_conv - 1))


def solve_sort_clock(inp: MacroInputs, target_dtopk: float) -> float:
    """Sorting clock that makes T_Dtopk/T_topkima = target with the other inputs fixed."""
    top = float(t_topkima_sm(inp))
    per_query_sort = (target_dtopk * top - inp.t_wr) / inp.d - (
        inp.t_pwm + inp.t_ima + inp.k * inp.t_nl
    )
    return per_query_sort / sort_compares(inp.d, inp.k)


def claim_readings(inp: MacroInputs, claim: tuple[float, float] = (15.0, 8.0)) -> list[Reading]:
    """Speed-ups under alternative readings, and the inputs that would give the paper's claim.

    Rows: the reading used here; T_pwm = the LSB's 15.5 ns; T_pwm = the three scaled pulses
    applied one after another (15.5 + 31 + 62 ns); sorting clocked by the 4 ns IMA clock or
    the 5 ns (200 MHz) system clock; the per-query overhead that gives the claimed conv
    speed-up; and that overhead together with the sorting clock that also gives the claimed
    Dtopk speed-up.
    """
    lsb = inp.t_pwm / 4  # scale-1 cell's longest pulse (IV-B: 15.5 ns for the LSB)
    rows: list[tuple[str, MacroInputs, float]] = [
        ("equations as read here", inp, 0.0),
        ("T_pwm = LSB pulse (15.5 ns)", replace(inp, t_pwm=lsb), 0.0),
        ("T_pwm = 1+2+4 scaled pulses in series", replace(inp, t_pwm=7 * lsb), 0.0),
        ("T_clk,sort = IMA clock (4 ns)", replace(inp, t_clk_sort=inp.t_clk_ima), 0.0),
        ("T_clk,sort = system clock (5 ns, 200 MHz)", replace(inp, t_clk_sort=5e-9), 0.0),
    ]
    x = solve_extra_per_query(inp, claim[0])
    rows.append((f"per-query overhead solved for {claim[0]:g}x", inp, x))
    shifted = replace(inp, t_pwm=inp.t_pwm + x)
    clk = solve_sort_clock(shifted, claim[1])
    rows.append(
        (f"same overhead + sort clock solved for {claim[1]:g}x", replace(shifted, t_clk_sort=clk),
         0.0)
    )
    out = []
    for name, r, extra in rows:
        sc, sd = _ratios(r, extra)
        out.append(Reading(name, r.t_pwm, r.t_clk_sort, extra, sc, sd))
    return out
