"""Gain-cell retention: the stored voltage against time after a write, with its leakage
split by path.

The paper (N. Leroux, P.-P. Manea et al., arXiv 2409.19315) keeps K and V as charge on
volatile gain cells and bounds how long a value must be held by attending over a sliding
window of recent tokens; how far a stored value droops over the window's lifetime is
what this block measures. Here every device is the kit's thin-oxide silicon nfet/pfet
(the paper's oxide-semiconductor write transistors leak far less), so the numbers are
those of a silicon 2T1C gain cell.

Leakage paths of the storage node ``sn`` (each measured through a zero-volt ammeter of
``gc_cell``; positive = charge leaving the node):

* ``i_wr_channel``: subthreshold conduction of the write transistor's channel to the
  write bitline (gate at ``v_wwl_hold``, the bitline at ``v_wbl_hold``); it grows
  steeply with temperature;
* ``i_wr_gate``: tunnelling through the write transistor's gate oxide where it overlaps
  the storage node, to the write word line (this kit's oxide is 1.1 nm: comparable to
  the channel's leak with a high level stored);
* ``i_wr_body``: into the write transistor's body: the reverse current of the
  storage-node junction and gate-induced drain leakage;
* ``i_rd_gate``: through the read transistor's gate oxide. With the read word line and
  bitline idling high the read channel is off, so only its overlap regions tunnel; with
  the node low, charge tunnels in from the read transistor's high source and drain (a
  negative current), which sets the level a cell decays to.

Bench, per job (one written level ``v_store``, one die, the PVT point's temperature):
one ``gc_cell`` is written through its boosted write word line, which then falls to
``v_wwl_hold``; the write bitline goes to ``v_wbl_hold`` (0 V: another row written a zero,
the worst case for a stored high), the read word line to VDD and the read bitline to
``rbl_frac x VDD`` (idle). Times are counted from ``t_settle`` after the word line falls
(``v0`` is the stored voltage then, after the feedthrough).

A second deck holds the storage node with a source swept over -0.1..1.2 V (a DC sweep
of the same devices, so the same die, and no displacement current of a decaying node)
and reads the four leakage currents against the stored voltage (the write bitline's and
word line's own sources carry the write transistor's channel and gate currents).

One row per ``times`` entry: ``t_hold``, ``v_sn``, ``droop = v0 - v_sn`` and the four
leakage currents at that ``v_sn``; per job (the same on each of its rows) ``v0``,
``t_ret`` (time until the droop first reaches ``dv_fail``) and ``tau`` (time until
``v_sn`` first falls to ``v0 / e``), NaN where the run ends first. Fitted into a ``grid_table``
over (``v_store``,
``t_hold``) per PVT point: a retention curve per temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from charact.bench import FindAt, dc, num, read_all, tran
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.options import opt
from charact.gaincell.common import (
    TEMPLATE,
    CellOptions,
    check_cell_options,
    pulses_source,
    rbl_level,
    spice_options_field,
    step_source,
    template,
)
from charact.runner import read_raw

#: the storage-node voltages of the leakage sweep: (start, stop, step) in V
LEAK_SWEEP = (-0.1, 1.2, 0.01)
LEAKS = ("i_wr_channel", "i_wr_gate", "i_wr_body", "i_rd_gate")
_SN = "v(sn)"


@dataclass(frozen=True)
class RetentionOptions(CellOptions):
    """``[measure]`` options of ``gc_retention`` (times in s, voltages in V)."""

    times: list[float] = opt([1e-8, 1e-7, 1e-6, 1e-5, 1e-4],
                             "hold times after the write, one row each (the run lasts "
                             "until the longest)", positive=True, max=1.0, min_len=1)
    dv_fail: float = opt(0.05, "droop that ends retention (t_ret)", positive=True, max=1.0)
    v_wwl_hold: float = opt(0.0, "write word line while holding (negative: underdrive)",
                            min=-1.0, max=1.0)
    v_wbl_hold: float = opt(0.0, "write bitline while holding", min=-1.0, max=2.0)
    t_settle: float = opt(1e-9, "time from the write word line's fall to t_hold = 0",
                          positive=True, max=1e-6)
    spice_options: list[str] = spice_options_field([])


class GcRetention(Block):
    """Gain cell: stored voltage against time after a write, leakage by path."""

    name = "gc_retention"
    version = "1"
    template_files = (TEMPLATE,)
    subckt = "gc_cell"
    conditions = {"v_store": 0.9}
    Options = RetentionOptions
    columns = ("t_hold", "v_sn", "droop", "v0", "t_ret", "tau", "i_wr_channel", "i_wr_gate",
               "i_wr_body", "i_rd_gate")
    units = {"t_hold": "s", "v_sn": "V", "droop": "V", "i_wr_channel": "A", "i_wr_gate": "A",
             "i_wr_body": "A", "i_rd_gate": "A", "v0": "V", "t_ret": "s", "tau": "s",
             "v_store": "V"}
    summary_columns = ("droop", "t_ret", "tau")
    lookup_axes: ClassVar[tuple[str, ...]] = ("v_store", "t_hold")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        check_cell_options(opts)
        return opts

    def _hold_sources(self, ctx: JobContext) -> list[str]:
        """Supply, read word line and read bitline of a holding cell."""
        return [dc("vsup", "vdd", "{vdd}"), dc("vrb", "rbl", rbl_level(ctx))]

    def _cell(self, ctx: JobContext) -> str:
        # the same instance name in both decks: the same devices of the same die
        return template(ctx, "gc_cell").instance("c", "gc_cell",
                                                 ["wwl", "wbl", "vdd", "rbl", "sn", "0"],
                                                 ctx.params)

    def _decay(self, ctx: JobContext, t0: float, t_on: float) -> tuple[np.ndarray, float,
                                                                        np.ndarray, np.ndarray]:
        """``(v_sn at each hold time, v0, hold times, v_sn)`` of the write-then-hold run."""
        o = ctx.options
        edge, tw = float(o["t_edge"]), float(o["t_write"])
        v_store = float(ctx.conditions["v_store"])
        times = [float(t) for t in o["times"]]
        stop = t0 + 1.01 * max(times)  # the last FIND must fall inside the run
        meas = [FindAt(f"v{i}", _SN, at=t0 + t) for i, t in enumerate(times)]
        body = [
            *self._hold_sources(ctx),
            self._cell(ctx),
            # the bitline leaves the written level only once the word line is down
            step_source("vwb", "wbl", [(t_on + tw + edge, float(o["v_wbl_hold"]))], edge,
                        v_store),
            pulses_source("vww", "wwl", [(t_on, tw)], edge, 0.0, float(o["v_wwl"])),
            # steps up to a two-hundredth of the span: the decay is smooth, and the write's
            # edges are breakpoints of its sources
            tran(min(edge, stop / 1000), stop, max(stop / 200, 4 * edge)),
            f".save {_SN}",
            *(m.line() for m in meas),
        ]
        res = ctx.run("retention", "\n".join(body), raw=True)
        vals = read_all(res, meas)
        wave = read_raw(res.raw) if res.raw is not None else {}
        t_all, v_all = wave.get("time"), wave.get(_SN)
        if np.isnan(vals).any() or t_all is None or v_all is None:
            raise JobFailed("retention: ngspice reported no stored voltage for some hold "
                            "times")
        keep = t_all >= t0
        v0 = float(np.interp(t0, t_all, v_all))
        return vals, v0, t_all[keep] - t0, v_all[keep]

    def _leakage(self, ctx: JobContext) -> dict[str, np.ndarray]:
        """The storage node's leakage by path (``LEAKS``) against its voltage ``v``: the
        node held by a source swept over ``LEAK_SWEEP`` (a DC sweep: no displacement
        current)."""
        o = ctx.options
        lo, hi, step = LEAK_SWEEP
        body = [
            *self._hold_sources(ctx),
            self._cell(ctx),
            dc("vwb", "wbl", float(o["v_wbl_hold"])),
            dc("vww", "wwl", float(o["v_wwl_hold"])),
            dc("vsn", "sn", 0.0),
            # sub-picoampere currents: ngspice's default abstol (1 pA) would blur them
            ".option abstol=1e-18",
            f".dc vsn {num(lo)} {num(hi)} {num(step)}",
            ".save i(vwb) i(vww) i(v.xc.vmb) i(v.xc.vmr)",
        ]
        res = ctx.run("leakage", "\n".join(body), raw=True)
        wave = read_raw(res.raw) if res.raw is not None else {}
        # positive: out of the storage node (into the bitline's and word line's sources)
        names = ("i(vwb)", "i(vww)", "i(v.xc.vmb)", "i(v.xc.vmr)")
        sweep = wave.get("v(v-sweep)", wave.get("v-sweep"))
        if sweep is None or any(n not in wave for n in names):
            raise JobFailed(f"leakage: the raw file holds no DC sweep ({sorted(wave)})")
        ich, igw, ib, ir = (wave[n] for n in names)
        return {"v": np.asarray(sweep, float), "i_wr_channel": ich, "i_wr_gate": igw,
                "i_wr_body": ib, "i_rd_gate": ir}

    def simulate(self, ctx: JobContext) -> list[dict[str, float]]:
        o = ctx.options
        t_on = 0.5e-9
        # t_hold = 0 is t_settle after the 50 % point of the write word line's fall
        t0 = t_on + float(o["t_write"]) + float(o["t_settle"])
        vals, v0, th, vh = self._decay(ctx, t0, t_on)
        t_ret = _first_crossing(th, v0 - vh, float(o["dv_fail"]))
        tau = _first_crossing(th, v0 / math.e - vh, 0.0) if v0 > 0 else math.nan
        leak = self._leakage(ctx)

        def at(name: str, v: float) -> float:
            return float(np.interp(v, leak["v"], leak[name]))

        return [{"t_hold": float(t), "v_sn": float(v), "droop": v0 - float(v), "v0": v0,
                 "t_ret": t_ret, "tau": tau,
                 **{n: at(n, float(v)) for n in LEAKS}}
                for t, v in zip(o["times"], vals, strict=True)]

def _first_crossing(t: np.ndarray, y: np.ndarray, level: float) -> float:
    """The first time ``y`` reaches ``level`` from below (linear between samples); NaN if
    it never does."""
    above = np.flatnonzero(y >= level)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(t[0])
    y0, y1 = y[i - 1], y[i]
    return float(t[i - 1] + (level - y0) / (y1 - y0) * (t[i] - t[i - 1]))
