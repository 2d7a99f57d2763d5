"""Gain-cell multiply: the charge a signed cell pair delivers against its stored voltage
and the width of its input pulse (the 2-D multiply surface).

In the paper's array (N. Leroux, P.-P. Manea et al., arXiv 2409.19315, Fig. 1 and
Methods, Eq. 4) a query element is the width of a read word-line pulse and a key element
the voltage stored in a gain cell; the charge the cell's read transistor draws from the
bitline during the pulse is their product, nonlinear in the stored voltage (a polynomial
in K - K_offset in the paper's fit). This block measures that surface in SPICE.

Bench, per job (one stored level ``v_store``, one Monte-Carlo die), in one transient on
a ``gc_column`` (``netlists/gain_cell.sp``):

1. *Write*: rows 1-3 get a zero weight (both cells at ``v_offset``), then row 0 the pair
   ``(v_store, 2 v_offset - v_store)``, each through its boosted write word line; the
   write bitlines then stay at row 0's levels (no write-transistor drift during reads).
2. *Read*: row 0's read word line is pulled from VDD to vss once per ``pulses`` width
   (50 % to 50 %, edges ``t_edge``), ``t_gap`` apart; rows 1-3 stay idle. The read
   bitlines are held at ``rbl_frac x VDD`` by ideal sources, the virtual ground of the
   readout, so each cell's charge is the integral of its bitline source's current over
   the pulse's window (edges included).

One row per pulse width: ``q_pos`` and ``q_neg`` the charges drawn by the '+' and '-'
cells, ``q = q_pos - q_neg`` the signed product, ``v_sn_pos``/``v_sn_neg`` the stored
voltages just before the pulse (the written level after the write word line's
feedthrough, and any read disturb of earlier pulses). Fitted into a ``grid_table`` over
(``v_store``, ``pulse``) per PVT point, with its spread over dies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from charact.bench import FindAt, Integ, dc, read_all, tran
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.options import opt
from charact.errors import UserError
from charact.gaincell.common import (
    TEMPLATE,
    PairOptions,
    check_cell_options,
    column_line,
    pulses_source,
    rbl_level,
    spice_options_field,
    step_source,
)


@dataclass(frozen=True)
class MultiplyOptions(PairOptions):
    """``[measure]`` options of ``gc_multiply`` (times in s, voltages in V)."""

    pulses: list[float] = opt([1e-9, 2e-9, 4e-9, 8e-9, 15e-9],
                              "input pulse widths, one row each (the paper's T_max is 15 ns)",
                              positive=True, max=1e-6, min_len=1,
                              rule="each at least 2 x t_edge")
    t_gap: float = opt(2e-9, "idle time between two pulses (the charge window reaches half "
                       "of it on each side)", positive=True, max=1e-6)
    tstep: float = opt(20e-12, "transient step (the largest step is 4 x tstep)", positive=True,
                       max=1e-9)
    spice_options: list[str] = spice_options_field([])


class GcMultiply(Block):
    """Gain-cell pair: charge against stored voltage and input pulse width."""

    name = "gc_multiply"
    version = "1"
    template_files = (TEMPLATE,)
    subckt = "gc_column"
    conditions = {"v_store": 0.9}
    Options = MultiplyOptions
    columns = ("pulse", "q_pos", "q_neg", "q", "v_sn_pos", "v_sn_neg")
    units = {"pulse": "s", "q_pos": "C", "q_neg": "C", "q": "C", "v_sn_pos": "V",
             "v_sn_neg": "V", "v_store": "V"}
    summary_columns = ("pulse", "q", "v_sn_pos")
    #: the axes of the lookup model (``charact fit`` makes a grid_table over them)
    lookup_axes: ClassVar[tuple[str, ...]] = ("v_store", "pulse")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        check_cell_options(opts)
        short = [p for p in opts["pulses"] if p < 2 * opts["t_edge"]]
        if short:
            raise UserError(f"[measure] pulses must each be at least 2 x t_edge "
                            f"({2 * opts['t_edge']:g} s), got {short[0]:g}")
        return opts

    def simulate(self, ctx: JobContext) -> list[dict[str, float]]:
        o = ctx.options
        edge, tw = float(o["t_edge"]), float(o["t_write"])
        v_pos = float(ctx.conditions["v_store"])
        v_neg = 2 * float(o["v_offset"]) - v_pos
        # write: rows 1-3 (one word line) to a zero weight, then row 0 to the pair
        t_zero = 0.5e-9
        t_data = t_zero + tw + 0.5e-9
        t_row0 = t_data + 0.5e-9
        t = t_row0 + tw + 1e-9
        windows = []
        for p in o["pulses"]:
            windows.append((t, float(p)))
            t += float(p) + o["t_gap"]
        half = o["t_gap"] / 2
        meas_q = [(Integ(f"qp{i}", "i(vrp)", t0 - half, t0 + p + half),
                   Integ(f"qn{i}", "i(vrn)", t0 - half, t0 + p + half))
                  for i, (t0, p) in enumerate(windows)]
        meas_v = [(FindAt(f"snp{i}", "v(xcol.x0.snp)", at=t0 - half / 2),
                   FindAt(f"snn{i}", "v(xcol.x0.snn)", at=t0 - half / 2))
                  for i, (t0, _) in enumerate(windows)]
        flat = [m for pair in meas_q + meas_v for m in pair]
        body = [
            dc("vsup", "vdd", "{vdd}"),
            column_line(ctx, ["wwl0", "wwlz", "wwlz", "wwlz"], ["rwl0", "vdd", "vdd", "vdd"]),
            step_source("vwp", "wblp", [(t_data, v_pos)], edge, float(o["v_offset"])),
            step_source("vwn", "wbln", [(t_data, v_neg)], edge, float(o["v_offset"])),
            pulses_source("vwz", "wwlz", [(t_zero, tw)], edge, 0.0, float(o["v_wwl"])),
            pulses_source("vw0", "wwl0", [(t_row0, tw)], edge, 0.0, float(o["v_wwl"])),
            pulses_source("vr0", "rwl0", windows, edge, "{vdd}", 0.0),
            dc("vrp", "rblp", rbl_level(ctx)),
            dc("vrn", "rbln", rbl_level(ctx)),
            tran(o["tstep"], t - half, 4 * o["tstep"]),
            ".save i(vrp) i(vrn) v(xcol.x0.snp) v(xcol.x0.snn)",
            *(m.line() for m in flat),
        ]
        vals = read_all(ctx.run("multiply", "\n".join(body)), flat)
        if np.isnan(vals).any():
            raise JobFailed("multiply: ngspice reported no charge for some pulses")
        n = len(windows)
        # a cell draws charge out of its bitline: the source's current is negative
        q_pos, q_neg = -vals[0:2 * n:2], -vals[1:2 * n:2]
        sn_pos, sn_neg = vals[2 * n::2], vals[2 * n + 1::2]
        return [{"pulse": p, "q_pos": float(q_pos[i]), "q_neg": float(q_neg[i]),
                 "q": float(q_pos[i] - q_neg[i]), "v_sn_pos": float(sn_pos[i]),
                 "v_sn_neg": float(sn_neg[i])}
                for i, (_, p) in enumerate(windows)]
