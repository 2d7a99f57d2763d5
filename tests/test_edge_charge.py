"""The read stacks' edge charge against the bitline voltage: the inner node of a stack
charges up towards the bitline at each pulse, so the edge is a charge that follows the
line's voltage, not a time of the current. The composed column's ramp steps shrink where
it falls, as the SPICE column's do."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from charact.column.cells import PointModel, StackModel
from charact.column.composed import convert, nominal_die
from charact.column.design import DESIGN_OPTIONS, make_design
from tests.test_hier import synthetic_model

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="no ngspice")


def _with_edge(model: PointModel, v_edge: np.ndarray, dq: dict[str, np.ndarray]
               ) -> PointModel:
    stacks = {k: dataclasses.replace(s, v_edge=v_edge, dq_edge=dq[k])
              for k, s in model.stacks.items()}
    return dataclasses.replace(model, stacks=stacks)


def test_edge_is_zero_without_the_bench_and_scales_with_the_pulse_share():
    v = np.arange(0.02, 0.551, 0.005)
    base = dict(name="rep", width_ratio=1.0, v=v, i_on=1e-7 * np.ones_like(v),
                i_off=1e-11 * np.ones_like(v), t_off=2e-9,
                t_pulse=np.array([0.1e-9, 1e-9, 10e-9]),
                t_off_t=np.array([0.5e-9, 2e-9, 2e-9]))
    old = StackModel(**base)
    assert np.all(old.edge(np.array([0.1, 0.3]), 1e-9) == 0)
    s = StackModel(**base, v_edge=np.array([0.1, 0.45]), dq_edge=np.array([-40e-18, 0.0]))
    # long pulse: the whole departure, interpolated in the voltage
    assert s.edge(0.1, 5e-9) == pytest.approx(-40e-18)
    assert s.edge(0.275, 5e-9) == pytest.approx(-20e-18)
    # a pulse of 0.1 ns carries a quarter of a long pulse's edge (0.5 of 2 ns)
    assert s.edge(0.1, 0.1e-9) == pytest.approx(-10e-18)
    # the JSON round trip keeps it; an old record without it still reads
    d = s.to_json()
    assert StackModel(**d).edge(0.1, 5e-9) == pytest.approx(-40e-18)
    d.pop("v_edge"), d.pop("dq_edge")
    assert np.all(StackModel(**d).edge(0.1, 5e-9) == 0)


def test_ramp_steps_shrink_where_the_edge_charge_falls():
    design = make_design({**DESIGN_OPTIONS, "n_dims": 8})
    model = synthetic_model(design)
    v_e = np.array([0.35, 0.42, 0.5])
    r = design.cfg.rep_ratio
    # the replica edge loses 60 aC per unit width at 0.35 V, nothing above 0.42 V
    dq = {"mac": np.zeros(3), "rep": r * np.array([-60e-18, 0, 0]),
          "cal": 32 * r * np.array([-60e-18, 0, 0])}
    edged = _with_edge(model, v_e, dq)
    die = nominal_die(1, 8)
    x = np.zeros((1, 8), int)
    w = np.zeros((1, 8), int)
    t_step = 1e-9
    flat = convert(model, design, x, w, np.zeros(1, int), die, 0.3e-9, t_step)
    bent = convert(edged, design, x, w, np.zeros(1, int), die, 0.3e-9, t_step)
    step_flat = -np.diff(flat.levels_l[0])
    step_bent = -np.diff(bent.levels_l[0])
    lo = bent.levels_l[0, :-1] < 0.41
    hi = bent.levels_l[0, :-1] > 0.42
    assert lo.any() and hi.any()  # the ramp spans both regions
    # above 0.42 V the edge is as before; below, every step is smaller
    assert np.allclose(step_bent[hi], step_flat[hi], rtol=0.02)
    assert np.all(step_bent[lo] < 0.98 * step_flat[lo])


@needs_ngspice
def test_edge_bench_in_ngspice(tmp_path):
    """FreePDK45 NOM read stacks: a pulse's edge charge saturates once the bitline is a
    few tenths of a volt up and falls to under half of it at 0.1 V, while the current
    hardly moves: a t_off of the current would miss it."""
    from charact.blocks import get_block
    from charact.blocks.base import JobContext
    from charact.column.cells import edge_charges, edge_terms, edge_volts
    from charact.deck import Point
    from charact.runner import NgspiceBatch
    from charact.tech import load_technology

    block = get_block("ima_cell_mc")
    opts = block.check_options({"n_dims": 16, "vdd_sram": 0.35})
    main = next(t for t in block.load_templates() if "dual10t" in t.subckts)
    ctx = JobContext(load_technology("freepdk45"), Point("NOM", 1.0, 27.0, None),
                     dict(main.subckt("dual10t").params), {}, opts, tmp_path, NgspiceBatch(),
                     block.load_templates())
    design = make_design(opts)
    volts = edge_volts(0.45)
    assert volts[-1] == pytest.approx(0.45) and np.all(np.diff(volts) > 0)
    edges = edge_charges(ctx, design, volts)
    for k, (slope, icpt) in edges.items():
        assert np.all(slope > 0) and np.all(icpt > 0), k
        assert slope[0] > 0.9 * slope[-1], k  # the current is nearly flat
        assert icpt[0] < 0.5 * icpt[-1], k  # the edge is not
        assert icpt[-2] > 0.9 * icpt[-1], k  # and saturates at the top
    dq = edge_terms(edges, volts)
    assert dq["mac"][-1] == 0 and dq["mac"][0] < 0
