"""Charge-to-pulse readout: output pulse width against the signed input charge, with its
gain, offset and saturation.

The paper (N. Leroux, P.-P. Manea et al., arXiv 2409.19315, Methods, Eq. 3) reads each
column with a charge-to-pulse circuit instead of an ADC: the output pulse, which drives
the next array's word lines, is ``T_max / S_sat x S`` for a charge ``S`` between 0 and
``S_sat``, nothing below 0 and ``T_max = 15 ns`` above ``S_sat``, a hard sigmoid.
``gc_readout`` in ``netlists/gain_cell.sp`` is that circuit (reset, integrate, then a
mirrored reference current discharges one integration node while a comparator holds the
output high, all within a ``t_max`` window), and this block measures its transfer.

Bench, per job (one die), one transient: for each ``q_in`` a cycle of reset
(``t_reset``), integration (``t_int``: an ideal current draws ``|q_in|`` from the
'+' node for a positive charge, from the '-' node for a negative one, as the column's
cells would) and conversion (``t_max``). The pulse width is the output's integral over
the window divided by VDD (edges and partial levels count as the next array would see
them).

One row per ``q_in``: ``width``, ``dv`` (the integrated voltage ``v(inn) - v(inp)`` as the
conversion starts). Per job (the same on each of its rows), from a straight line through
the conversions whose width lies within ``linear`` x ``t_max``: ``gain`` (s/C, ideally
1 / i_ref), ``q_offset`` (the charge where the line gives no pulse: the comparator's and
switches' offset referred to the input), ``t_sat`` (the widest pulse) and ``q_sat`` (the
charge where the line reaches ``t_sat``: the paper's S_sat). The comparator's delay
lengthens every pulse, so the line's offset is below the charge of the first pulse,
which is already about that delay wide (a step at the onset). Fitted into a
``grid_table`` over ``q_in`` per PVT point; the spread over dies is the readout's
Monte-Carlo gain and offset spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from charact.bench import FindAt, Integ, dc, num, pwl, read_all, tran
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.options import opt
from charact.errors import UserError
from charact.gaincell.common import TEMPLATE, pulses_source, spice_options_field, template


def _two_fractions(value: Any) -> str | None:
    lo, hi = value
    return None if lo < hi else f"needs low < high, got {value}"


@dataclass(frozen=True)
class ReadoutOptions:
    """``[measure]`` options of ``gc_readout`` (charges in C, times in s)."""

    q_in: list[float] = opt([-20e-15, 0.0, 10e-15, 30e-15, 60e-15, 100e-15, 130e-15, 200e-15],
                            "signed input charges Q+ - Q-, one conversion (and row) each",
                            min=-1e-11, max=1e-11, min_len=2,
                            rule="at least two inside the linear range")
    i_ref: float = opt(10e-6, "reference current: the pulse is (Q+ - Q-) / i_ref",
                       positive=True, max=1e-3)
    t_max: float = opt(15e-9, "conversion window, the longest pulse (the paper's T_max)",
                       positive=True, max=1e-6)
    t_int: float = opt(5e-9, "integration time of the input charge", positive=True, max=1e-6)
    t_reset: float = opt(3e-9, "reset of both integration nodes to the precharge level",
                         positive=True, max=1e-6)
    pre_frac: float = opt(0.9, "precharge level of the integration nodes as a fraction of "
                          "VDD", positive=True, max=1.0)
    linear: list[float] = opt([0.1, 0.9], "the widths, as fractions of t_max, of the "
                              "conversions that the gain and offset line goes through",
                              min=0.0, max=1.0, length=2, check=_two_fractions)
    t_edge: float = opt(50e-12, "edge of the control pulses and input currents",
                        positive=True, max=1e-9, rule="at most t_reset / 4")
    tstep: float = opt(10e-12, "transient step (the largest step is 2 x tstep)",
                       positive=True, max=1e-9)
    # Gear integration and a tighter reltol: the comparator's high-gain node otherwise
    # stalls ngspice's trapezoidal steps on some dies (timestep too small).
    spice_options: list[str] = spice_options_field(["method=gear", "reltol=1e-4"])


class GcReadout(Block):
    """Charge-to-pulse readout: pulse width against input charge, gain, offset, saturation."""

    name = "gc_readout"
    version = "1"
    template_files = (TEMPLATE,)
    subckt = "gc_readout"
    Options = ReadoutOptions
    columns = ("q_in", "width", "dv", "gain", "q_offset", "t_sat", "q_sat")
    units = {"q_in": "C", "width": "s", "dv": "V", "gain": "s/C", "q_offset": "C",
             "t_sat": "s", "q_sat": "C"}
    summary_columns = ("gain", "q_offset", "t_sat", "q_sat")
    lookup_axes: ClassVar[tuple[str, ...]] = ("q_in",)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        if opts["t_edge"] > opts["t_reset"] / 4:
            raise UserError(f"[measure] t_edge must be at most t_reset / 4 "
                            f"({opts['t_reset'] / 4:g} s), got {opts['t_edge']:g}")
        return opts

    def simulate(self, ctx: JobContext) -> list[dict[str, float]]:
        o = ctx.options
        edge = float(o["t_edge"])
        t_rst, t_int, t_max = float(o["t_reset"]), float(o["t_int"]), float(o["t_max"])
        qs = [float(q) for q in o["q_in"]]
        cycle = t_rst + t_int + 1e-9 + t_max + 2e-9
        rst, conv, cur_p, cur_n, meas_w, meas_v = [], [], [], [], [], []
        for k, q in enumerate(qs):
            t0 = 0.5e-9 + k * cycle
            rst.append((t0, t_rst))
            t_i = t0 + t_rst + 0.2e-9  # the current starts once the reset is open
            (cur_p if q > 0 else cur_n).append((t_i, abs(q) / t_int))
            t_c = t0 + t_rst + t_int + 1e-9
            conv.append((t_c, t_max))
            meas_w.append(Integ(f"w{k}", "v(out)", t_c - 0.5e-9, t_c + t_max + 1.5e-9))
            meas_v.append(FindAt(f"dv{k}", "par('v(inn)-v(inp)')", at=t_c))
        ro = template(ctx, "gc_readout").instance(
            "ro", "gc_readout", ["inp", "inn", "rst", "conv", "ibn", "vpre", "out", "vdd", "0"],
            ctx.params)
        body = [
            dc("vsup", "vdd", "{vdd}"),
            dc("vpre", "vpre", f"{{{num(o['pre_frac'])}*vdd}}"),
            f"iref vdd ibn {num(o['i_ref'])}",
            ro,
            pulses_source("vrst", "rst", [(t + edge / 2, w - edge) for t, w in rst], edge,
                          0.0, "{vdd}"),
            pulses_source("vconv", "conv", conv, edge, 0.0, "{vdd}"),
            # each input charge is a constant current over t_int (edges inside it)
            _current("iinp", "inp", cur_p, t_int, edge),
            _current("iinn", "inn", cur_n, t_int, edge),
            tran(o["tstep"], 0.5e-9 + len(qs) * cycle, 2 * o["tstep"]),
            ".save v(out) v(inp) v(inn)",
            *(m.line() for m in meas_w + meas_v),
        ]
        res = ctx.run("readout", "\n".join(body))
        widths = read_all(res, meas_w) / ctx.point.vdd
        dvs = read_all(res, meas_v)
        if np.isnan(widths).any() or np.isnan(dvs).any():
            raise JobFailed("readout: ngspice reported no pulse for some conversions")
        fit = _transfer(np.array(qs), widths, t_max, o["linear"])
        return [{"q_in": q, "width": float(w), "dv": float(v), **fit}
                for q, w, v in zip(qs, widths, dvs, strict=True)]


def _current(name: str, node: str, pulses: list[tuple[float, float]], t_int: float,
             edge: float) -> str:
    """A current source drawing ``amp`` from ``node`` over ``t_int`` from each
    ``(t_start, amp)``; 0 A with none."""
    pts: list[tuple[float, float]] = [(0.0, 0.0)]
    for t, amp in pulses:
        pts += [(t, 0.0), (t + edge, amp), (t + t_int - edge, amp), (t + t_int, 0.0)]
    # a current source's PWL is written like a voltage source's; the letter makes it one
    return pwl(name, node, pts)


def _transfer(q: np.ndarray, width: np.ndarray, t_max: float, linear: list[float]
              ) -> dict[str, float]:
    """Gain, offset and saturation of one die's transfer (see the module doc)."""
    lo, hi = linear
    sel = (width >= lo * t_max) & (width <= hi * t_max)
    if np.unique(q[sel]).size < 2:
        raise JobFailed(f"readout: fewer than two conversions with a width within "
                        f"{lo:g}-{hi:g} x t_max ({np.count_nonzero(sel)}); add q_in values "
                        "inside the linear range")
    gain, intercept = np.polyfit(q[sel], width[sel], 1)
    if not gain > 0:
        raise JobFailed(f"readout: the pulse does not grow with the charge (gain {gain:g})")
    t_sat = float(width.max())
    q_offset = float(-intercept / gain)
    return {"gain": float(gain), "q_offset": q_offset, "t_sat": t_sat,
            "q_sat": q_offset + t_sat / float(gain)}
