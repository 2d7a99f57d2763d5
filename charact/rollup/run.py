"""Compute the whole roll-up from gathered inputs: macros, α spread, module, SL sweep."""

from __future__ import annotations

from dataclasses import dataclass

from charact.rollup.energy import MacroEnergy, macro_energies
from charact.rollup.inputs import RollupInputs
from charact.rollup.latency import (
    AlphaSpread,
    MacroLatency,
    Reading,
    alpha_spread,
    claim_readings,
    ima_arb_branch,
    macro_latencies,
)
from charact.rollup.module import OpCost, SweepRow, module_breakdown, seq_len_sweep

DEFAULT_SEQ_LENS: tuple[int, ...] = (256, 384, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class RollupResult:
    """Numbers of one roll-up (SI units)."""

    inputs: RollupInputs
    latency: tuple[MacroLatency, MacroLatency, MacroLatency]
    energy: tuple[MacroEnergy, MacroEnergy, MacroEnergy]
    ima_arb_branch: str
    spread: AlphaSpread | None
    readings: list[Reading]
    module: list[OpCost]
    sweep: list[SweepRow]

    @property
    def speedup_conv(self) -> float:
        return self.latency[0].total / self.latency[2].total

    @property
    def speedup_dtopk(self) -> float:
        return self.latency[1].total / self.latency[2].total


def run_rollup(inputs: RollupInputs, seq_lens: tuple[int, ...] = DEFAULT_SEQ_LENS) -> RollupResult:
    """Evaluate eqs. (3)-(4), the energies, the module breakdown and the SL sweep."""
    m = inputs.macro
    samples = inputs.alpha_samples
    return RollupResult(
        inputs=inputs,
        latency=macro_latencies(m),
        energy=macro_energies(m, inputs.energy),
        ima_arb_branch=ima_arb_branch(m),
        spread=None if samples is None else alpha_spread(m, samples),
        readings=claim_readings(m),
        module=module_breakdown(m, inputs.energy, inputs.arch),
        sweep=seq_len_sweep(m, inputs.energy, inputs.arch, list(seq_lens)),
    )
