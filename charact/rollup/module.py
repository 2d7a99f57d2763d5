"""Attention-module breakdown by operation, in the manner of the paper's Fig. 4(e)-(h).

One attention module (BERT-base: d_model 768, 12 heads of d_k 64) at sequence length SL,
with the three softmax macros swapped in. Operations and the first-order model of each:

* ``X·W_QKV`` on RRAM crossbars (weights stationary, all crossbars in parallel). W_QKV is
  d_model × 3·d_model with 8-bit weights on 2-bit cells, so ``c_w = 4`` columns per weight,
  ``row_tiles = ceil(d_model/R)`` crossbars stacked along the inputs. Tokens are applied one
  after another; per token: ``T_pwm,in + mux·T_clk + (ceil(log2 row_tiles) + 1)·T_clk``
  (PWM input, ``mux`` columns sharing one ADC at one conversion per clock, adder tree and
  shift-add). Energy per token: ``d_model·3·d_model·c_w·e_rram_cell`` (every cell read once)
  ``+ row_tiles·3·d_model·c_w·e_adc``.
* ``Q·Kᵀ`` and ``softmax``: the softmax macro of :mod:`charact.rollup.latency` with d = SL,
  split into its Q·Kᵀ part (T_wr + d·T_pwm + d·T_ima or d·T_ima,arb) and its softmax part
  (d·d·T_NL, d·(T_sort + k·T_NL) or d·k·T_NL). The 12 heads run in parallel (latency once,
  energy ×12).
* ``A·V`` on SRAM crossbars (NeuroSim-style, as the paper says): V (SL × d_k, 5 bits, one
  bit per cell) is written row by row, crossbars in parallel: ``min(SL, R)·t_write_row``;
  then the SL rows of A are applied one after another, per row as for X·W_QKV. Energy per
  head: the V write, ``rows_active·d_k·b_v·e_sram_cell`` per query with ``rows_active = SL``
  for the dense A of conv and ``k`` for the sparse A of Dtopk/topkima, and ``d_k·b_v``
  conversions per query. Sparsity saves energy, not time (no row skipping is assumed).
* Buffers: every operand read and every result written once, ``e_buffer_bit`` per bit
  (scores as 5-bit codes; a selected score or probability also carries its key address).

The operations run one after another (the paper uses no dedicated pipelining). This is a
first-order model with every parameter written out below; it does not reproduce NeuroSim's
peripheral circuits, so it is a check of trends, not of the paper's absolute Fig. 4(e)-(h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from charact.errors import UserError
from charact.rollup.energy import E_SRAM_CELL, EnergyInputs, macro_energies
from charact.rollup.latency import MACROS, MacroInputs, macro_latencies


def _src(text: str) -> dict[str, str]:
    return {"source": text}


@dataclass(frozen=True)
class ArchParams:
    """Architecture parameters of the attention module (SI units), with their sources."""

    d_model: int = field(default=768, metadata=_src("paper IV-B: BERT-base"))
    heads: int = field(default=12, metadata=_src("paper IV-B: 12 heads of BERT-base"))
    xbar_rows: int = field(default=256, metadata=_src("paper Table I: 256×256 subarray"))
    xbar_cols: int = field(default=256, metadata=_src("paper Table I: 256×256 subarray"))
    f_clk: float = field(default=200e6, metadata=_src("paper Table I: 200 MHz"))
    bits_w_qkv: int = field(default=8, metadata=_src("paper IV-B: W_QKV 8-bit (PTQ)"))
    rram_cell_bits: int = field(default=2, metadata=_src("paper Table I: 2-bit RRAM"))
    bits_act: int = field(default=5, metadata=_src("paper IV-B: X, A, V at 5 bits (QAT)"))
    # The arrays are assumed to take inputs the way the macro does (5-bit PWM, scale 4).
    t_pwm_in: float = field(default=62e-9, metadata=_src("assumption: as the macro's T_pwm"))
    # Columns sharing one ADC; NeuroSim designs mux several columns per ADC.
    mux: int = field(default=8, metadata=_src("assumption: 8 columns per ADC"))
    t_write_row: float = field(default=5e-9, metadata=_src("paper IV-B: 5 ns SRAM write"))
    # (0.5 V)^2 / 1 MΩ × 31 ns (mean pulse): V_read from paper IV-B [4], R from Table I.
    e_rram_cell: float = field(
        default=0.25 / 1e6 * 31e-9, metadata=_src("assumption: V²/R·t = 0.5²/1 MΩ × 31 ns")
    )
    e_sram_cell: float = field(
        default=E_SRAM_CELL, metadata=_src("paper IV-B [20]: 1.8e-7 mW/MHz per cell")
    )
    e_adc: float = field(default=0.5e-12, metadata=_src("assumption: 0.5 pJ per 5-bit ADC"))
    e_buffer_bit: float = field(default=50e-15, metadata=_src("assumption: 50 fJ per buffer bit"))

    @property
    def d_k(self) -> int:
        return self.d_model // self.heads

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v) or v < 0:
                raise UserError(f"arch.{f.name} must be non-negative, got {v}")
        for name in ("d_model", "heads", "xbar_rows", "xbar_cols", "bits_w_qkv",
                     "rram_cell_bits", "bits_act", "mux"):
            if getattr(self, name) < 1:
                raise UserError(f"arch.{name} must be a positive integer")
        if self.f_clk <= 0:
            raise UserError("arch.f_clk must be positive")
        if self.d_model % self.heads:
            raise UserError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")


OPS: tuple[str, str, str, str] = ("X·W_QKV", "Q·Kᵀ", "softmax", "A·V")


@dataclass(frozen=True)
class OpCost:
    """Latency (s) and energy (J) of one operation of the module with one softmax macro."""

    macro: str
    op: str
    latency: float
    energy_array: float  # crossbars, ADC/IMA, digital cores
    energy_buffer: float

    @property
    def energy(self) -> float:
        return self.energy_array + self.energy_buffer


def read_latency(arch: ArchParams, row_tiles: int) -> float:
    """One input vector through weight-stationary crossbars: pulse, muxed ADC, adders."""
    t_clk = 1.0 / arch.f_clk
    adders = math.ceil(math.log2(row_tiles)) if row_tiles > 1 else 0
    return arch.t_pwm_in + arch.mux * t_clk + (adders + 1) * t_clk


def module_breakdown(
    macro: MacroInputs, energy: EnergyInputs, arch: ArchParams, alpha: float | None = None
) -> list[OpCost]:
    """Latency and energy per operation for the conv, Dtopk and topkima modules (SL = d)."""
    if macro.d_k != arch.d_k:
        raise UserError(f"macro d_k {macro.d_k} differs from d_model/heads = {arch.d_k}")
    sl, k, dk, h, nb = macro.d, macro.k, arch.d_k, arch.heads, macro.n_bits
    addr_bits = math.ceil(math.log2(sl))
    b = arch.bits_act

    # X·W_QKV, the same for the three macros.
    c_w = math.ceil(arch.bits_w_qkv / arch.rram_cell_bits)
    cols = 3 * arch.d_model * c_w
    row_tiles = math.ceil(arch.d_model / arch.xbar_rows)
    t_qkv = sl * read_latency(arch, row_tiles)
    e_qkv = sl * (arch.d_model * cols * arch.e_rram_cell + row_tiles * cols * arch.e_adc)
    buf_qkv = sl * (arch.d_model + 3 * arch.d_model) * b * arch.e_buffer_bit

    # A·V: latency the same for the three macros (no row skipping).
    av_row_tiles = math.ceil(sl / arch.xbar_rows)
    t_av = min(sl, arch.xbar_rows) * arch.t_write_row + sl * read_latency(arch, av_row_tiles)
    e_v_write = sl * dk * b * energy.e_write_cell

    lat = macro_latencies(macro, alpha)
    en = macro_energies(macro, energy, alpha)
    out: list[OpCost] = []
    for name, ml, me in zip(MACROS, lat, en, strict=True):
        selected = name != "conv"
        out.append(OpCost(name, "X·W_QKV", t_qkv, e_qkv, buf_qkv))
        # Q·Kᵀ: the IMA part of the macro; the arbiter belongs to it in topkima.
        t_qk = ml.write + ml.pwm + ml.ima
        e_qk = h * (me.write + me.mac + me.ramp + me.sa + me.arb)
        score_bits = sl * k * (nb + addr_bits) if name == "topkima" else sl * sl * nb
        buf_qk = h * (2 * sl * dk * b + score_bits) * arch.e_buffer_bit
        out.append(OpCost(name, "Q·Kᵀ", t_qk, e_qk, buf_qk))
        # softmax: sorting (Dtopk) and the digital non-linearity.
        prob_bits = sl * k * (b + addr_bits) if selected else sl * sl * b
        buf_sm = h * (score_bits + prob_bits) * arch.e_buffer_bit
        out.append(OpCost(name, "softmax", ml.sort + ml.nl, h * (me.sort + me.nl), buf_sm))
        rows_active = k if selected else sl
        e_av = h * (
            e_v_write
            + sl * rows_active * dk * b * arch.e_sram_cell
            + sl * dk * b * arch.e_adc
        )
        buf_av = h * (prob_bits + sl * dk * b + sl * dk * b) * arch.e_buffer_bit
        out.append(OpCost(name, "A·V", t_av, e_av, buf_av))
    return out


def module_totals(costs: list[OpCost]) -> dict[str, tuple[float, float]]:
    """Per macro: (total latency, total energy) of the module."""
    tot: dict[str, tuple[float, float]] = {}
    for c in costs:
        t, e = tot.get(c.macro, (0.0, 0.0))
        tot[c.macro] = (t + c.latency, e + c.energy)
    return tot


def module_ops(macro: MacroInputs, arch: ArchParams) -> float:
    """Operations (2 per MAC) of one module: X·W_QKV, and Q·Kᵀ and A·V over all heads."""
    sl = macro.d
    macs = sl * arch.d_model * 3 * arch.d_model + 2 * arch.heads * sl * sl * arch.d_k
    return 2.0 * macs


@dataclass(frozen=True)
class SweepRow:
    """Macro and module totals at one sequence length."""

    seq_len: int
    t_conv: float
    t_dtopk: float
    t_topkima: float
    e_conv: float
    e_dtopk: float
    e_topkima: float
    module_t: tuple[float, float, float]
    module_e: tuple[float, float, float]


def seq_len_sweep(
    macro: MacroInputs,
    energy: EnergyInputs,
    arch: ArchParams,
    seq_lens: list[int],
    alpha: float | None = None,
) -> list[SweepRow]:
    """Macro and module latency/energy for each sequence length (d = SL, k and α kept)."""
    rows = []
    for sl in seq_lens:
        m = replace(macro, d=int(sl))
        m.validate()
        lat = [x.total for x in macro_latencies(m, alpha)]
        en = [x.total for x in macro_energies(m, energy, alpha)]
        tot = module_totals(module_breakdown(m, energy, arch, alpha))
        rows.append(
            SweepRow(
                int(sl), *lat, *en,
                module_t=tuple(tot[n][0] for n in MACROS),  # type: ignore[arg-type]
                module_e=tuple(tot[n][1] for n in MACROS),  # type: ignore[arg-type]
            )
        )
    return rows
