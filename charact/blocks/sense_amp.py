"""StrongARM sense amplifier (PMOS input pair): offset, decision delay, energy, kickback.

The comparator of the Topkima-Former ramp ADC (S. Dong et al., arXiv 2411.13050,
Sec. III-A): it compares the MAC bitline with the replica-ramp bitline every 4 ns.

Bench, per Monte-Carlo sample (each a separate deck, same seed, so the same devices):

1. *Offset, coarse*: a staircase of differential inputs ``dv = inp - inn`` around the
   common mode ``vcm``, one value per clock cycle (changed during reset), from
   ``-offset_range`` to ``+offset_range`` in ``coarse_step``. The latched decision is read
   at the end of every cycle; the offset lies in the step where it first flips to 1.
2. *Offset, fine*: the same over that one coarse step in ``fine_steps`` steps. The offset
   is the midpoint of the fine step where the decision flips (resolution
   ``coarse_step / fine_steps``). A staircase, not a bisection, so one transient per
   pass; the reset before every decision removes memory of the previous one.
3. *Delay and energy*: one cycle per ``delta_v`` (0.1-100 mV), each applied on top of
   the measured offset, so every sample sees the same effective overdrive. Delay is clk
   rising (50 %) to outp rising (50 %); energy per decision is the supply charge over the
   cycle times VDD. ``t0`` and ``tau`` fit ``delay = t0 + tau * ln(vdd / delta_v)``.
4. *Kickback*: inputs left floating on ``c_bl`` (the bitline capacitance); the largest
   excursion of either input from its precharged value during a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from charact.bench import (
    Delay,
    FindAt,
    Integ,
    MaxOf,
    MinOf,
    clock,
    dc,
    num,
    pwl,
    read_all,
    staircase,
    tran,
)
from charact.blocks.base import Block, JobContext, JobFailed
from charact.blocks.options import SPICE_OPTIONS_RULE, check_spice_options, opt
from charact.errors import UserError


@dataclass(frozen=True)
class SenseAmpOptions:
    """``[measure]`` options of ``sense_amp`` (times in s, voltages in V)."""

    t_clk: float = opt(4e-9, "clock period (the paper's ADC clock)", positive=True)
    t_edge: float = opt(50e-12, "clock and input edge", positive=True,
                        rule="less than t_clk / 10")
    offset_range: float = opt(0.08, "the coarse offset search spans +-offset_range",
                              positive=True)
    coarse_step: float = opt(4e-3, "step of the coarse offset staircase", positive=True,
                             rule="at most offset_range")
    fine_steps: int = opt(16, "fine steps per coarse step (resolution coarse_step / "
                          "fine_steps)", min=1, max=1000)
    # the first value also serves as the warm-up cycle excluded from the energy
    delta_v: list[float] = opt(
        [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        "overdrives of the delay/energy bench, on top of the offset (one delay_dv<mV> "
        "column each; the first also warms up)", positive=True, min_len=1)
    delay_ref: float = opt(1e-2, "the delta_v reported as delay (and used by the "
                           "kickback bench)", positive=True, rule="one of delta_v")
    c_bl: float = opt(100e-15, "bitline capacitance (F) on each input of the kickback "
                      "bench", positive=True)
    tstep: float = opt(10e-12, "transient step (the largest step is 4 x tstep)",
                       positive=True, rule="less than t_clk / 10")
    # Sub-millivolt decisions need tighter tolerances than ngspice's defaults
    # (reltol 1e-3 is 0.4 mV at a 0.4 V common mode).
    spice_options: list[str] = opt(["reltol=1e-5", "vntol=1e-8"],
                                   "extra .option words of every deck",
                                   rule=SPICE_OPTIONS_RULE, check=check_spice_options)


class SenseAmp(Block):
    """StrongARM sense amplifier: offset, decision delay, energy, kickback."""

    name = "sense_amp"
    version = "1"
    template_files = ("sense_amp.sp",)
    subckt = "strongarm_sa"
    conditions = {"vcm": 0.4}
    Options = SenseAmpOptions
    columns = ("offset", "delay", "t0", "tau", "energy", "kickback")
    units = {"offset": "V", "delay": "s", "t0": "s", "tau": "s", "energy": "J",
             "kickback": "V", "vcm": "V"}
    # one delay column per [measure] delta_v (see delay_columns)
    unit_patterns = ((r"delay_dv.+mV", "s"),)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = super().check_options(options)
        if opts["delay_ref"] not in opts["delta_v"]:
            raise UserError("[measure] delay_ref must be one of delta_v")
        # the clock's flat top and the decision read need room inside each cycle
        for key in ("t_edge", "tstep"):
            if not opts[key] < opts["t_clk"] / 10:
                raise UserError(f"[measure] {key} must be less than t_clk / 10 "
                                f"({opts['t_clk'] / 10:g} s), got {opts[key]:g}")
        if opts["coarse_step"] > opts["offset_range"]:
            raise UserError("[measure] coarse_step must be at most offset_range")
        return opts

    def delay_columns(self, options: dict[str, Any]) -> list[str]:
        return [f"delay_dv{dv * 1e3:g}mV" for dv in options["delta_v"]]

    # -- benches ---------------------------------------------------------------------

    def _dut(self, ctx: JobContext, inp: str = "inp", inn: str = "inn") -> str:
        sa = next(t for t in ctx.templates if self.subckt in t.subckts)
        return "\n".join([
            dc("vsup", "vdd", "{vdd}"),
            sa.instance("sa", self.subckt, [inp, inn, "clk", "dout", "doutb", "outp", "outn",
                                             "vdd", "0"], ctx.params),
            "cloadp outp 0 2f",
            "cloadn outn 0 2f",
        ])

    def _inputs(self, ctx: JobContext, dvs: list[float]) -> list[str]:
        """The comparator, its clock and a staircase of differential inputs ``dvs``
        around the common mode, one per clock cycle."""
        t_clk, t_edge = ctx.options["t_clk"], ctx.options["t_edge"]
        vcm = ctx.conditions["vcm"]
        return [
            self._dut(ctx),
            clock("vclk", "clk", t_clk, t_edge),
            pwl("vinp", "inp", staircase([vcm + d / 2 for d in dvs], t_clk, t_edge)),
            pwl("vinn", "inn", staircase([vcm - d / 2 for d in dvs], t_clk, t_edge)),
        ]

    def _staircase_decisions(self, ctx: JobContext, name: str, dvs: list[float]) -> np.ndarray:
        o = ctx.options
        t_clk, t_edge = o["t_clk"], o["t_edge"]
        # the latched decision of each cycle, read just before the next reset
        meas = [FindAt(f"dec{i}", "v(dout)", at=(i + 1) * t_clk - 2 * t_edge)
                for i in range(len(dvs))]
        body = [
            *self._inputs(ctx, dvs),
            tran(o["tstep"], len(dvs) * t_clk, 4 * o["tstep"]),
            ".save v(dout)",
            *(m.line() for m in meas),
        ]
        vals = read_all(ctx.run(name, "\n".join(body)), meas)
        if np.isnan(vals).any():
            raise JobFailed(f"{name}: ngspice reported no decision for some cycles")
        return vals > 0.5 * ctx.point.vdd

    def _offset(self, ctx: JobContext) -> float:
        o = ctx.options
        rng, step = float(o["offset_range"]), float(o["coarse_step"])
        n = int(round(2 * rng / step)) + 1
        coarse = [-rng + i * step for i in range(n)]
        dec = self._staircase_decisions(ctx, "offset_coarse", coarse)
        if dec.all() or not dec.any():
            raise JobFailed(f"offset outside +-{rng:g} V (raise [measure] offset_range)")
        first = int(np.argmax(dec))
        if first == 0:
            raise JobFailed(f"offset below -{rng:g} V")
        lo = coarse[first - 1]
        nf = int(o["fine_steps"])
        fine = [lo + (i + 0.5) * step / nf for i in range(nf)]
        dec_f = self._staircase_decisions(ctx, "offset_fine", fine)
        if not dec_f.any():
            # Flip between the last fine value and the coarse point that did flip.
            return lo + step - 0.25 * step / nf
        j = int(np.argmax(dec_f))
        return fine[j] - 0.5 * step / nf

    def _delay_energy(self, ctx: JobContext, offset: float) -> tuple[np.ndarray, np.ndarray]:
        o = ctx.options
        t_clk, t_edge = o["t_clk"], o["t_edge"]
        vdd = ctx.point.vdd
        dvs = [offset + d for d in o["delta_v"]]
        half = vdd / 2
        delays, charges, meas = [], [], []
        for i in range(len(dvs)):
            # clk rising (50 %) to outp rising (50 %) in cycle i; the cycle's supply charge
            t_eval = i * t_clk + t_clk / 2
            delays.append(Delay(f"td{i}", "v(clk)", half, "v(outp)", half, td=t_eval - t_edge))
            charges.append(Integ(f"q{i}", "i(vsup)", i * t_clk, (i + 1) * t_clk))
            meas += [delays[-1], charges[-1]]
        body = [
            *self._inputs(ctx, dvs),
            tran(o["tstep"], len(dvs) * t_clk, 4 * o["tstep"]),
            ".save v(clk) v(outp) i(vsup)",
            *(m.line() for m in meas),
        ]
        res = ctx.run("delay", "\n".join(body))
        td = read_all(res, delays)
        q = read_all(res, charges)
        # A decision that did not resolve within the evaluation half-cycle counts as none.
        td[(td <= 0) | (td > t_clk / 2)] = math.nan
        return td, -q * vdd

    def _kickback(self, ctx: JobContext) -> float:
        o = ctx.options
        t_clk, t_edge = o["t_clk"], o["t_edge"]
        vcm = ctx.conditions["vcm"]
        dv = o["delay_ref"]
        meas = [MaxOf("inp_max", "v(inp)"), MinOf("inp_min", "v(inp)"),
                MaxOf("inn_max", "v(inn)"), MinOf("inn_min", "v(inn)")]
        body = [
            self._dut(ctx),
            clock("vclk", "clk", t_clk, t_edge),
            f"cblp inp 0 {num(o['c_bl'])}",
            f"cbln inn 0 {num(o['c_bl'])}",
            f".ic v(inp)={num(vcm + dv / 2)} v(inn)={num(vcm - dv / 2)}",
            tran(o["tstep"], t_clk, 4 * o["tstep"], uic=True),
            ".save v(inp) v(inn)",
            *(m.line() for m in meas),
        ]
        pmax, pmin, nmax, nmin = read_all(ctx.run("kickback", "\n".join(body)), meas)
        p0, n0 = vcm + dv / 2, vcm - dv / 2
        return float(max(abs(pmax - p0), abs(pmin - p0), abs(nmax - n0), abs(nmin - n0)))

    def simulate(self, ctx: JobContext) -> dict[str, float]:
        o = ctx.options
        offset = self._offset(ctx)
        td, energy = self._delay_energy(ctx, offset)
        dvs = np.asarray(o["delta_v"], dtype=float)
        ok = np.isfinite(td)
        t0 = tau = math.nan
        if ok.sum() >= 2:
            tau, t0 = np.polyfit(np.log(ctx.point.vdd / dvs[ok]), td[ok], 1)
        row = {
            "offset": offset,
            "delay": float(td[list(dvs).index(o["delay_ref"])]),
            "t0": float(t0),
            "tau": float(tau),
            # Cycle 0 also charges every node from the t=0 operating point: leave it out.
            "energy": float(np.nanmean(energy[1:])),
            "kickback": self._kickback(ctx),
        }
        row.update({c: float(v) for c, v in zip(self.delay_columns(o), td, strict=True)})
        return row
