"""Softmax-macro energy from per-operation energies, for the three macros.

One macro run is one attention head: Kᵀ (``d_k`` × ``d``, ``c`` = 3 cells per signed 4-bit
weight) is written once, then each of the ``d`` queries is applied to all ``d`` columns.
``N = 2^n_bits`` is the number of ramp cycles (32). Per macro run::

    E_wr    = d_k·c·d · e_write_cell                      (every cell of Kᵀ written once)
    E_mac   = d·d·d_k · e_mac                             (bitline discharge, every product)
    conv, Dtopk (full ramp, every SA decides every cycle):
      E_ramp = d·d·(e_ramp_start + N·e_ramp_cycle)
      E_sa   = d·d·N · e_sa
    topkima (the ramp stops after α·N cycles):
      E_ramp = d·d·(e_ramp_start + α·N·e_ramp_cycle)
      E_sa   = d·d·α·N · e_sa        (upper bound: a column that fired is disabled, ≤ k do)
      E_arb  = d·k · e_arb            (one arbiter/encoder/counter event per selected key)
    E_sort  = d·min(d·log2 d, d·k) · e_sort              (Dtopk only)
    E_nl    = d·d·e_nl (conv) or d·k·e_nl (Dtopk, topkima)

Energy is linear in α, so its mean over per-query α samples equals the energy at the mean α.
The wordline (PWM) driver energy is the same in the three macros and is left out, as are the
interconnect and buffer energies (see :mod:`charact.rollup.module` for those).
All energies are joules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from charact.errors import UserError
from charact.rollup.latency import MacroInputs, sort_compares

# Paper IV-B [20]: dynamic power per SRAM cell 1.8e-7 mW/MHz = 1.8e-10 W / 1e6 Hz,
# i.e. 1.8e-16 J per cell per clock.
E_SRAM_CELL = 1.8e-7 * 1e-3 / 1e6


def _src(text: str) -> dict[str, str]:
    return {"source": text}


@dataclass(frozen=True)
class EnergyInputs:
    """Per-operation energies (joules). Each default names its source or says 'assumption'."""

    e_mac: float = field(
        default=3 * E_SRAM_CELL,
        metadata=_src("derived: 3 cells per 4-bit weight (III-A) × 1.8e-7 mW/MHz per cell [20]"),
    )
    e_ramp_cycle: float = field(
        default=E_SRAM_CELL,
        metadata=_src("derived: one replica cell per column per cycle (III-A) × cell energy [20]"),
    )
    e_ramp_start: float = field(
        default=32 * E_SRAM_CELL,
        metadata=_src("derived: 32 replica rows fired together (III-A) × cell energy [20]"),
    )
    # A StrongARM latch at ~0.5 V common mode: a few fJ per decision in 65 nm.
    e_sa: float = field(default=5e-15, metadata=_src("assumption: 5 fJ per SA decision"))
    # Tree arbiter over 256 requests + 8-bit encoder + counter step, one event per grant.
    e_arb: float = field(default=100e-15, metadata=_src("assumption: 0.1 pJ per grant event"))
    # Stated parameter: one exponent + one division of the digital softmax core [17].
    e_nl: float = field(default=2e-12, metadata=_src("assumption: 2 pJ per exp + division"))
    # Compare-and-swap of a 5-bit code with its 9-bit address.
    e_sort: float = field(default=50e-15, metadata=_src("assumption: 50 fJ per sort compare"))
    e_write_cell: float = field(
        default=E_SRAM_CELL, metadata=_src("paper IV-B [20]: 1.8e-7 mW/MHz per cell per write")
    )
    cells_per_weight: int = field(default=3, metadata=_src("paper III-A: 3 ternary cells"))

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v) or v < 0:
                raise UserError(f"{f.name} must be a non-negative energy, got {v}")
        if self.cells_per_weight < 1:
            raise UserError("cells_per_weight must be a positive integer")


@dataclass(frozen=True)
class MacroEnergy:
    """One macro's energy split by operation (joules, whole macro run)."""

    macro: str
    write: float
    mac: float
    ramp: float
    sa: float
    arb: float
    sort: float
    nl: float

    @property
    def total(self) -> float:
        return self.write + self.mac + self.ramp + self.sa + self.arb + self.sort + self.nl


def macro_energies(
    inp: MacroInputs, e: EnergyInputs, alpha: float | None = None
) -> tuple[MacroEnergy, MacroEnergy, MacroEnergy]:
    """Energies of the conv, Dtopk and topkima macros (formulas in the module docstring)."""
    d, k, dk = inp.d, inp.k, inp.d_k
    a = inp.alpha if alpha is None else float(alpha)
    n = 2**inp.n_bits
    write = dk * e.cells_per_weight * d * e.e_write_cell
    mac = d * d * dk * e.e_mac
    ramp_full = d * d * (e.e_ramp_start + n * e.e_ramp_cycle)
    sa_full = d * d * n * e.e_sa
    conv = MacroEnergy("conv", write, mac, ramp_full, sa_full, 0.0, 0.0, d * d * e.e_nl)
    dtopk = MacroEnergy(
        "Dtopk", write, mac, ramp_full, sa_full, 0.0,
        d * sort_compares(d, k) * e.e_sort, d * k * e.e_nl,
    )
    topk = MacroEnergy(
        "topkima", write, mac,
        d * d * (e.e_ramp_start + a * n * e.e_ramp_cycle),
        d * d * a * n * e.e_sa,
        d * k * e.e_arb, 0.0, d * k * e.e_nl,
    )
    return conv, dtopk, topk
