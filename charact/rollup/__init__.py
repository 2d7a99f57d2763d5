"""System roll-up: softmax-macro latency/energy (paper eqs. 3-4) and the attention module.

Stages, each a plain function::

    gather_inputs(explicit, sources) -> RollupInputs     (explicit > measured > default)
    run_rollup(inputs, seq_lens)     -> RollupResult     (macros, α spread, module, SL sweep)
    write_outputs(result, outdir, provenance)            (CSV, Markdown, figures)
"""

from __future__ import annotations

from charact.rollup.energy import EnergyInputs, MacroEnergy, macro_energies
from charact.rollup.inputs import (
    AlphaStats,
    MeasuredSources,
    RollupConfig,
    RollupInputs,
    gather_inputs,
    load_alpha_stats,
    load_config,
    read_delays,
)
from charact.rollup.latency import (
    AlphaSpread,
    MacroInputs,
    MacroLatency,
    alpha_spread,
    claim_readings,
    macro_latencies,
    t_conv_sm,
    t_dtopk_sm,
    t_ima_arb,
    t_sort,
    t_topkima_sm,
)
from charact.rollup.module import ArchParams, OpCost, module_breakdown, seq_len_sweep
from charact.rollup.run import DEFAULT_SEQ_LENS, RollupResult, run_rollup

__all__ = [
    "DEFAULT_SEQ_LENS",
    "AlphaSpread",
    "AlphaStats",
    "ArchParams",
    "EnergyInputs",
    "MacroEnergy",
    "MacroInputs",
    "MacroLatency",
    "MeasuredSources",
    "OpCost",
    "RollupConfig",
    "RollupInputs",
    "RollupResult",
    "alpha_spread",
    "claim_readings",
    "gather_inputs",
    "load_alpha_stats",
    "load_config",
    "macro_energies",
    "macro_latencies",
    "module_breakdown",
    "read_delays",
    "run_rollup",
    "seq_len_sweep",
    "t_conv_sm",
    "t_dtopk_sm",
    "t_ima_arb",
    "t_sort",
    "t_topkima_sm",
]
