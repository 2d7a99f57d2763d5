"""The cell-level characterization of one operating point: every small SPICE bench of
:mod:`charact.column.cells`, assembled into a :class:`~charact.column.cells.PointModel`
with the composed column's own calibration (:mod:`charact.column.composed`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from charact.blocks.base import JobContext
from charact.column.cells import (
    PointModel,
    SAModel,
    edge_charges,
    edge_terms,
    edge_volts,
    line_capacitances,
    mc_stacks,
    nominal_stacks,
    pulse_charges,
    sa_delay,
    sa_from_sweep,
    sa_offsets,
    sa_regression,
    sa_resolution,
    sa_scores,
    stack_models,
    sub_context,
)
from charact.column.composed import calibrate_model, typical_vcm
from charact.column.design import Design

# -- one operating point ------------------------------------------------------------------------

def characterize_point(ctx: JobContext, design: Design, opts: dict[str, Any]) -> PointModel:
    """All cell-level benches at ``ctx``'s operating point (its MC seed is ignored: the
    Monte-Carlo decks use ``cell_seed``)."""
    t_start = time.perf_counter()
    nctx = sub_context(ctx, None, "cells_nominal")
    mctx = sub_context(ctx, int(opts["cell_seed"]), "cells_mc")
    try:
        cfg = design.cfg
        v_pulse = cfg.v_pre - 0.05
        nom = nominal_stacks(nctx, design)
        mc = mc_stacks(mctx, design, int(opts["cell_samples"]))
        q = pulse_charges(nctx, design, v_pulse)
        stacks = stack_models(nom, mc, q, design, v_pulse)
        volts = edge_volts(v_pulse)
        for k, dq in edge_terms(edge_charges(nctx, design, volts), volts).items():
            stacks[k].v_edge, stacks[k].dq_edge = volts, dq
        c_l, c_r, c_mac = line_capacitances(nctx, design)
        stacks["mac"].c_drain = c_mac
        p = ctx.point
        sa_stub = SAModel([0.4], [0.0], [0.0], [0.0], 0)
        model = PointModel(p.corner, p.vdd, p.temp, design.digest(ctx.params), cfg.v_pre,
                           stacks, c_l, c_r, sa_stub)
        vcm = float(opts["sa_vcm"])
        if vcm <= 0:
            vcm = round(typical_vcm(model, design), 2)
        t_avail = cfg.t_clk / 2 - 3 * cfg.t_edge
        if opts["sa_offset"] == "mc":
            span = float(opts["sa_vcm_span"])
            # the offset of a device grows as the common mode falls (about 20 -> 13 mV
            # from 0.28 to 0.46 V at NOM): characterize around the typical decision
            vcms = [round(vcm - span, 3), vcm, round(vcm + span, 3)] if span > 0 else [vcm]
            rng, res = float(opts["sa_range"]), float(opts["sa_resolution"])
            n_sa = int(opts["sa_samples"])
            # the instances' device scores: one rendering, the same in every deck
            scores = sa_scores(mctx, design, n_sa)
            nom, sig, mean, all_offs, bounds, regs = [], [], [], [], 0, []
            for i, vc in enumerate(vcms):
                nom.append(float(sa_offsets(nctx, design, vc, 1, rng, res / 8,
                                            f"nom{i}")[0]))
                offs = sa_offsets(mctx, design, vc, int(opts["sa_samples"]), rng, res,
                                  f"mc{i}")
                sig.append(float(offs.std(ddof=1)))
                mean.append(float(offs.mean()))
                all_offs.append(offs.tolist())
                inside = np.abs(offs) <= rng - res
                bounds += int((~inside).sum())
                regs.append(sa_regression(offs, scores, inside))
            t0, tau = sa_delay(nctx, design, vcm, nom[vcms.index(vcm)])
            sa = SAModel(vcms, nom, sig, mean, n_sa, t0, tau,
                         sa_resolution(t0, tau, p.vdd, t_avail), bounds, "mc", all_offs,
                         # a fit at every common mode or none: the grid is interpolated
                         [r for r in regs if r is not None] if all(regs) else [])
        else:
            sa = sa_from_sweep(str(opts["sa_offset"]), p.corner, p.vdd, p.temp)
            sa.resolution = sa_resolution(sa.t0, sa.tau, p.vdd, t_avail)
        model.sa = sa
    finally:
        ctx.elapsed += nctx.elapsed + mctx.elapsed
        ctx.decks += nctx.decks + mctx.decks
    model.info = {"cell_seed": int(opts["cell_seed"]), "cell_samples": int(opts["cell_samples"]),
                  "sa_samples": int(opts["sa_samples"]), "sa_offset": str(opts["sa_offset"]),
                  "simulator_seconds": nctx.elapsed + mctx.elapsed,
                  "wall_seconds": time.perf_counter() - t_start,
                  "decks": len(nctx.decks) + len(mctx.decks), "technology": ctx.tech.name}
    # the composed column's own calibration for this design, kept with its models
    model.info["calibration"] = calibrate_model(model, design).row()
    return model



__all__ = ["characterize_point"]
