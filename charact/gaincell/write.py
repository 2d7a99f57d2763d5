"""Gain-cell write: write time, energy per cell and the written level's error.

In the paper (N. Leroux, P.-P. Manea et al., arXiv 2409.19315) every generation step
writes the new token's K and V projections into the gain-cell arrays (the sliding
window's oldest entries are overwritten), so a write's time and energy are paid once per
token and array row. Here a row of one signed column is written through the template's
``gc_write_driver`` (a transmission gate from the DAC line onto the write bitline) and
the boosted write word line.

Bench, per job (one target level ``v_store``, one die), one transient on a
``gc_column``: the drivers first write the row to ``v_from`` (the '-' cell to its
complement ``2 v_offset - v_from``), then the DAC lines step to the target pair
``(v_store, 2 v_offset - v_store)`` as the write word line rises again for ``t_wwl``.

* ``t_write``: from the word line's 50 % rise until both storage nodes last enter
  ``+-settle_tol`` of their targets (0 when neither has to move);
* ``e_write``: energy per cell of the second write: ``VDD x`` the net charge each DAC
  line and the drivers' supply deliver over the write (a DAC line that takes charge back
  counts zero), plus ``v_wwl x`` the charge the word line takes as it rises (from its
  boosted rail), halved for the pair;
* ``v_written``/``v_written_neg``: the storage nodes after the word line has fallen;
  ``v_error = v_written - v_store`` (mostly the word line's feedthrough and charge
  injection as it falls).

One row per job; ``charact fit`` makes a ``pvt_table`` with an entry per ``v_store``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from charact.bench import FindAt, Integ, dc, read_all, tran
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.options import opt
from charact.errors import UserError
from charact.gaincell.common import (
    TEMPLATE,
    PairOptions,
    column_line,
    pulses_source,
    rbl_level,
    spice_options_field,
    step_source,
    template,
)
from charact.runner import read_raw

_SN = ("v(xcol.x0.snp)", "v(xcol.x0.snn)")


@dataclass(frozen=True)
class WriteOptions(PairOptions):
    """``[measure]`` options of ``gc_write`` (times in s, voltages in V)."""

    v_from: float = opt(0.0, "the '+' cell's level before the measured write", min=-1.0,
                        max=2.0)
    t_wwl: float = opt(5e-9, "write word-line pulse of the measured write", positive=True,
                       max=1e-6, rule="at least 4 x t_edge")
    settle_tol: float = opt(5e-3, "a storage node is written once within this of its "
                            "target", positive=True, max=0.5)
    tstep: float = opt(10e-12, "transient step (the largest step is 2 x tstep)",
                       positive=True, max=1e-9)
    # Gear integration: ideal sources driving capacitive lines ring under the
    # trapezoidal rule, which would blur the supply charges
    spice_options: list[str] = spice_options_field(["method=gear"])


class GcWrite(Block):
    """Gain-cell pair: write time, energy per cell and written-level error."""

    name = "gc_write"
    version = "1"
    template_files = (TEMPLATE,)
    subckt = "gc_column"
    conditions = {"v_store": 0.9}
    Options = WriteOptions
    columns = ("t_write", "e_write", "v_written", "v_written_neg", "v_error")
    units = {"t_write": "s", "e_write": "J", "v_written": "V", "v_written_neg": "V",
             "v_error": "V", "v_store": "V"}

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        for key in ("t_write", "t_wwl"):
            if opts["t_edge"] > opts[key] / 4:
                raise UserError(f"[measure] t_edge must be at most {key} / 4 "
                                f"({opts[key] / 4:g} s), got {opts['t_edge']:g}")
        return opts

    def simulate(self, ctx: JobContext) -> dict[str, float]:
        o = ctx.options
        edge, tol = float(o["t_edge"]), float(o["settle_tol"])
        v_off, v_wwl = float(o["v_offset"]), float(o["v_wwl"])
        start = (float(o["v_from"]), 2 * v_off - float(o["v_from"]))
        target = (float(ctx.conditions["v_store"]), 2 * v_off - float(ctx.conditions["v_store"]))
        t_en = 0.5e-9
        t_pre = t_en + 0.5e-9  # the write that sets v_from
        t_on = t_pre + float(o["t_write"]) + 1e-9  # the measured write (50 % of the rise)
        t_off = t_on + float(o["t_wwl"])
        t_end = t_off + 2e-9
        drv = template(ctx, "gc_write_driver")
        # the DAC lines step with the word line's rise: the bitline and the cell settle
        # together, the slower case of a write
        dacs = [step_source(f"vd{s}", f"d{s}", [(t_on - edge / 2, target[i])], edge, start[i])
                for i, s in enumerate("pn")]
        # a node that has to move gets a settling time from the waveform
        moves = any(abs(t - s) > tol for t, s in zip(target, start, strict=True))
        meas_v = [FindAt("vp", _SN[0], at=t_end), FindAt("vn", _SN[1], at=t_end)]
        # charge each source delivers: DAC lines and the drivers' supply over the write,
        # the word line over its rise (what it gives back on the fall goes to ground)
        charges = [Integ("qdp", "i(vdp)", t_on - 0.5e-9, t_end),
                   Integ("qdn", "i(vdn)", t_on - 0.5e-9, t_end),
                   Integ("qsup", "i(vsup)", t_on - 0.5e-9, t_end),
                   Integ("qwwl", "i(vww)", t_on - edge, t_on + float(o["t_wwl"]) / 2)]
        body = [
            dc("vsup", "vdd", "{vdd}"),
            column_line(ctx, ["wwl0", "0", "0", "0"], ["vdd"] * 4),
            dc("vrp", "rblp", rbl_level(ctx)),
            dc("vrn", "rbln", rbl_level(ctx)),
            *dacs,
            drv.instance("dp", "gc_write_driver", ["dp", "en", "wblp", "vdd", "0"]),
            drv.instance("dn", "gc_write_driver", ["dn", "en", "wbln", "vdd", "0"]),
            pulses_source("ven", "en", [(t_en, t_off + 1e-9 - t_en)], edge, 0.0, "{vdd}"),
            pulses_source("vww", "wwl0", [(t_pre, float(o["t_write"])), (t_on, float(o["t_wwl"]))],
                          edge, 0.0, v_wwl),
            tran(o["tstep"], t_end, 2 * o["tstep"]),
            f".save {' '.join(_SN)} i(vdp) i(vdn) i(vsup) i(vww)",
            *(m.line() for m in [*meas_v, *charges]),
        ]
        res = ctx.run("write", "\n".join(body), raw=moves)
        vp, vn = read_all(res, meas_v)
        # a source delivers charge when its current (into its + terminal) is negative
        qdp, qdn, qsup, qwwl = -read_all(res, charges)
        vdd = ctx.point.vdd
        # a DAC line that takes charge back (a lower target) costs its supply nothing
        ew = vdd * (max(qdp, 0.0) + max(qdn, 0.0) + max(qsup, 0.0)) + v_wwl * max(qwwl, 0.0)
        if np.isnan([vp, vn, ew]).any():
            raise JobFailed("write: ngspice reported no written level or energy")
        t_write = 0.0
        if moves:
            wave = read_raw(res.raw) if res.raw is not None else {}
            t_write = _settle_time(wave, t_on, t_off, edge, target, tol)
        return {"t_write": t_write, "e_write": float(ew) / 2, "v_written": float(vp),
                "v_written_neg": float(vn), "v_error": float(vp) - target[0]}


def _settle_time(wave: dict[str, np.ndarray], t_on: float, t_off: float, edge: float,
                 target: tuple[float, float], tol: float) -> float:
    """Time from ``t_on`` until both storage nodes last enter ``target +- tol`` before the
    word line starts to fall (``t_off - edge``); NaN if one never does."""
    t = wave.get("time")
    if t is None or any(n not in wave for n in _SN):
        raise JobFailed("write: the raw file holds no storage-node voltage")
    win = (t >= t_on) & (t <= t_off - edge)
    if not win.any():
        raise JobFailed("write: no time step inside the write pulse")
    tw, latest = t[win], t_on
    for name, v_t in zip(_SN, target, strict=True):
        err = np.abs(wave[name][win] - v_t) - tol
        if err[-1] > 0:
            return float("nan")  # not settled before the word line fell
        out = np.flatnonzero(err > 0)
        if out.size:
            i = int(out[-1])  # the last sample outside the band; it enters before i + 1
            frac = err[i] / (err[i] - err[i + 1])
            latest = max(latest, float(tw[i] + frac * (tw[i + 1] - tw[i])))
    return latest - t_on
