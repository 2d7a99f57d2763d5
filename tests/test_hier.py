"""Hierarchical characterization: the composed column's physics on synthetic cell models,
the composed sweep's table against the ima_column format and the lookup fit, the
validation report, and one small real-ngspice cell Monte-Carlo run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charact.column.blocks import ImaColumn
from charact.column.cells import PointModel, SAModel, StackModel
from charact.column.composed import calibrate_model, convert, draw_die, nominal_die
from charact.column.design import DESIGN_OPTIONS, draw_patterns, make_design
from charact.errors import UserError

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="no ngspice")
N_DIMS = 8


def _stack(name: str, ratio: float, sigma: float) -> StackModel:
    v = np.arange(0.02, 0.551, 0.005)
    # a saturating read current of 0.32 uA per unit width, falling below ~0.15 V
    i_on = ratio * 0.32e-6 * (1 - np.exp(-v / 0.04)) * (1 + 0.02 * v)
    return StackModel(name, ratio, v, i_on, ratio * 4e-11 * np.ones_like(v), gain=1.0,
                      t_off=0.1e-9, mu_ln=0.0, sigma_ln=sigma, dln_dvg=10.0,
                      c_drain=0.1e-15, n_mc=100)


def synthetic_model(design, sigma_cell: float = 0.1, sigma_sa: float = 5e-3) -> PointModel:
    r = design.cfg.rep_ratio
    stacks = {"mac": _stack("mac", 1.0, sigma_cell),
              "rep": _stack("rep", r, sigma_cell / np.sqrt(r)),
              "cal": _stack("cal", 32 * r, sigma_cell / np.sqrt(32 * r))}
    sa = SAModel([0.4], [0.0], [sigma_sa], [0.0], 100)
    return PointModel("NOM", 1.0, 27.0, "synthetic", design.cfg.v_pre, stacks, 40e-15,
                      40e-15, sa)


@pytest.fixture(scope="module")
def design():
    return make_design({**DESIGN_OPTIONS, "n_dims": N_DIMS})


@pytest.fixture(scope="module")
def model(design):
    return synthetic_model(design)


@pytest.fixture(scope="module")
def patterns(design):
    decks = draw_patterns(np.random.default_rng(5), design, "stratified", 8, 16)
    x = np.concatenate([np.repeat(xd[None, :], wd.shape[0], 0) for xd, wd in decks])
    w = np.concatenate([wd for _, wd in decks])
    return x, w, np.tile(np.arange(8), len(decks))


def test_stack_discharge_is_the_integral_of_the_current(model):
    """psi inversion against a direct Euler integration of C dV/dt = -I(V)."""
    m = model.stacks["mac"]
    c, t_total = 40e-15, 50e-9  # deep enough to reach the falling part of I(V)
    v = 0.5
    dt = 1e-12
    for _ in range(int(t_total / dt)):
        v -= np.interp(v, m.v, m.i_on) * dt / c
    got = m.discharge(np.array([0.5]), np.array([t_total]), np.array([c]))[0]
    assert got == pytest.approx(v, abs=2e-4)
    assert 0.03 < v < 0.2  # the test reached the non-linear region


def test_zero_weight_draws_no_current(model, design):
    x = np.full((1, N_DIMS), 31)
    w = np.zeros((1, N_DIMS), dtype=int)
    r = convert(model, design, x, w, np.array([0]), nominal_die(1, N_DIMS), 1e-9, 1e-9)
    # both lines lose only the (equal, tiny) leakage of their replica devices
    assert r.v_l_mac[0] == pytest.approx(r.v_r_mac[0], abs=1e-4)
    assert model.v_pre - r.v_l_mac[0] < 2e-3
    w[0, 0] = 1
    r1 = convert(model, design, x, w, np.array([0]), nominal_die(1, N_DIMS), 1e-9, 1e-9)
    assert r.v_l_mac[0] - r1.v_l_mac[0] > 5e-3  # one cell, 31 units: a real drop


def test_code_is_monotonic_in_mac_and_follows_the_ideal(model, design, patterns):
    x, w, col = patterns
    cal = calibrate_model(model, design)
    r = convert(model, design, x, w, col, nominal_die(8, N_DIMS), cal.t_cal, cal.t_step)
    mac = (x * w).sum(axis=1)
    order = np.argsort(mac, kind="stable")
    codes = r.code[order]
    m_sorted = mac[order]
    # nominal circuit, no SA offset: a larger MAC never gets a smaller code
    for i in range(1, codes.size):
        if m_sorted[i] > m_sorted[i - 1]:
            assert codes[i] >= codes[i - 1], (m_sorted[i - 1], m_sorted[i])
    err = r.code - design.code_ideal(mac)
    assert np.abs(err).max() <= 1 and abs(err.mean()) < 0.5
    # the calibration puts mac_hi at the ramp start, so a MAC at mac_hi reads code 31
    assert r.code[mac >= design.mac_hi].min(initial=31) == 31


def test_larger_mismatch_gives_larger_spread(model, design, patterns):
    x, w, col = patterns
    cal = calibrate_model(model, design)
    mac = (x * w).sum(axis=1)
    ideal = design.code_ideal(mac)
    central = (ideal > 5) & (ideal < 26)
    sig = []
    for scale in (0.5, 1.0, 3.0):
        errs = []
        for s in range(20):
            die = draw_die(np.random.default_rng(s), 8, N_DIMS, scale)
            r = convert(model, design, x, w, col, die, cal.t_cal, cal.t_step)
            errs.append((r.code - ideal)[central])
        sig.append(np.concatenate(errs).std())
    assert sig[0] < sig[1] < sig[2]


def test_deterministic_for_a_seed(model, design, patterns):
    x, w, col = patterns
    runs = [convert(model, design, x, w, col, draw_die(np.random.default_rng(9), 8, N_DIMS),
                    1e-9, 0.8e-9) for _ in range(2)]
    assert np.array_equal(runs[0].code, runs[1].code)
    assert np.array_equal(runs[0].levels_l, runs[1].levels_l)
    other = convert(model, design, x, w, col, draw_die(np.random.default_rng(10), 8, N_DIMS),
                    1e-9, 0.8e-9)
    assert not np.array_equal(runs[0].levels_l, other.levels_l)


def test_point_model_json_round_trip(model):
    back = PointModel.from_json(json.loads(json.dumps(model.to_json())))
    assert np.allclose(back.stacks["rep"].i_on, model.stacks["rep"].i_on)
    assert back.sa.sigma == model.sa.sigma
    with pytest.raises(UserError):
        PointModel.from_json({"corner": "NOM"})


# -- the sweep: same table as ima_column, fits with the lookup fit -----------------------------

def _composed_spec(tmp_path: Path, design_digest: str, samples: int = 2) -> Path:
    from charact.column.design import make_design as md

    d = md({**DESIGN_OPTIONS, "n_dims": 4})
    m = synthetic_model(d).to_json()
    m["design"] = design_digest
    recs = []
    for corner in ("NOM", "SS"):
        recs.append({**m, "corner": corner})
    (tmp_path / "cells.json").write_text(json.dumps(recs))
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
schema = "charact.sweep/1"
name = "composed_test"
block = "ima_column_composed"
technology = "freepdk45"
[conditions]
corner = ["NOM", "SS"]
[montecarlo]
samples = {samples}
seed = 4
[measure]
n_dims = 4
n_cols = 8
conversions = 32
cell_models = "{tmp_path / 'cells.json'}"
""")
    return spec


def _digest() -> str:
    from charact.blocks import get_block

    block = get_block("ima_column")
    main = next(t for t in block.load_templates() if "dual10t" in t.subckts)
    params = main.subckt("dual10t").params
    return make_design({**DESIGN_OPTIONS, "n_dims": 4}).digest(params)


def test_composed_sweep_table_has_the_column_format_and_fits(tmp_path):
    from charact.lookup.fit import fit_error_model
    from charact.spec import load_spec
    from charact.sweep import run_sweep

    spec = load_spec(_composed_spec(tmp_path, _digest()))
    res = run_sweep(spec, tmp_path / "out", n_jobs=1, progress=False)
    df = res.table
    assert (df["status"] == "ok").all(), df["reason"].unique()
    assert len(df) == 2 * 2 * 32
    base = ["job", "key", "corner", "vdd", "temp", "sample", "seed", "die", "status", "reason",
            "item"]
    assert list(df.columns) == base + list(ImaColumn.columns)
    model = fit_error_model(df, 32, {"sweep": "composed_test"})
    assert sorted(p.corner for p, _ in model.items()) == ["NOM", "SS"]
    nom = model.table("NOM")
    assert np.isfinite(nom.sigma()).all() and nom.count.sum() == 2 * 32
    # the same seeds give the same patterns as the SPICE block would convert
    from charact.column.design import pattern_string

    row = df[(df["sample"] == 0) & (df["corner"] == "NOM")].iloc[0]
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4})
    x, w = draw_patterns(np.random.default_rng(int(row["pattern_seed"])), d, "stratified", 8,
                         4)[0]
    assert row["pattern"] == pattern_string(x, w[0])


def test_composed_refuses_models_of_another_design(tmp_path):
    from charact.spec import load_spec
    from charact.sweep import run_sweep

    spec = load_spec(_composed_spec(tmp_path, "not-this-design", samples=1))
    res = run_sweep(spec, tmp_path / "out", n_jobs=1, progress=False)
    assert (res.table["status"] == "failed").all()
    assert "another array design" in res.table["reason"].iloc[0]


def test_bad_composed_options_are_user_errors():
    from charact.blocks import get_block

    block = get_block("ima_column_composed")
    with pytest.raises(UserError, match="cell models not found"):
        block.check_options({"cell_models": "/nonexistent/cells"})
    with pytest.raises(UserError, match="mismatch_scale"):
        block.check_options({"mismatch_scale": -1, "cell_models": "inline"})
    with pytest.raises(UserError, match="wiring"):
        block.check_options({"wiring": "qb"})
    with pytest.raises(UserError, match="sa_samples"):
        block.check_options({"sa_samples": 1})


# -- validation report --------------------------------------------------------------------------

def _table(rng: np.random.Generator, shift: float, sigma: float, n: int) -> pd.DataFrame:
    ideal = rng.integers(0, 32, n)
    code = np.clip(np.rint(ideal + shift + rng.normal(0, sigma, n)), 0, 31).astype(int)
    return pd.DataFrame({"corner": "NOM", "vdd": 1.0, "temp": 27.0, "status": "ok",
                         "mac_ideal": ideal * 7, "code_ideal": ideal, "code": code})


def test_validation_flags_agreement_and_disagreement(tmp_path):
    from charact.column.validate import compare
    from charact.provenance import write_table

    rng = np.random.default_rng(0)
    spice = _table(rng, 0.0, 1.0, 4000)
    same = _table(rng, 0.0, 1.0, 4000)
    shifted = _table(rng, 1.5, 1.0, 4000)
    _, pooled = compare(spice, same)
    assert (pooled["verdict"] == "agrees").all()
    per_code, pooled = compare(spice, shifted)
    assert (pooled["verdict"] == "disagrees").all()
    assert (per_code["verdict"] == "disagrees").mean() > 0.7
    for name, df in (("s", spice), ("c", shifted)):
        (tmp_path / name).mkdir()
        write_table(df, tmp_path / name / "table.parquet", {"sweep": name})
    from charact.cli import main

    out = tmp_path / "report.md"
    assert main(["hier-validate", "--spice", str(tmp_path / "s"), "--composed",
                 str(tmp_path / "c"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "Disagrees at ideal codes:" in text and "| NOM |" in text
    assert main(["hier-validate", "--spice", str(tmp_path / "missing"), "--composed",
                 str(tmp_path / "c"), "-o", str(out)]) == 2


# -- real ngspice -----------------------------------------------------------------------------

@pytest.mark.spice
@pytest.mark.slow
@needs_ngspice
def test_cell_monte_carlo_in_ngspice(tmp_path):
    """Read stacks in FreePDK45 at NOM: a sub-microamp read current nearly flat in the
    bitline voltage above 0.2 V, leakage four orders below it, a per-device spread that
    shrinks as 1/sqrt(width) for the wider replica stacks, and a finite SA offset spread."""
    import dataclasses

    from charact.blocks import get_block
    from charact.blocks.base import JobContext
    from charact.column.cells import (
        CELL_OPTIONS,
        mc_stacks,
        nominal_stacks,
        pulse_charges,
        sa_offsets,
        stack_models,
    )
    from charact.deck import Point
    from charact.runner import NgspiceBatch
    from charact.tech import load_technology

    block = get_block("ima_cell_mc")
    opts = block.check_options({"n_dims": 16, "cell_samples": 40, "sa_samples": 6})
    main = next(t for t in block.load_templates() if "dual10t" in t.subckts)
    ctx = JobContext(load_technology("freepdk45"), Point("NOM", 1.0, 27.0, None),
                     dict(main.subckt("dual10t").params), {}, opts, tmp_path, NgspiceBatch(),
                     block.load_templates())
    design = make_design(opts)
    mctx = dataclasses.replace(ctx, point=Point("NOM", 1.0, 27.0, 3))
    stacks = stack_models(nominal_stacks(ctx, design), mc_stacks(mctx, design, 40),
                          pulse_charges(ctx, design, 0.45), design, 0.45)
    mac, rep = stacks["mac"], stacks["rep"]
    i45 = np.interp(0.45, mac.v, mac.i_on)
    assert 0.1e-6 < i45 < 1e-6
    assert np.interp(0.25, mac.v, mac.i_on) > 0.9 * i45
    assert np.interp(0.45, mac.v, mac.i_off) < 1e-3 * i45
    assert 0.03 < mac.sigma_ln < 0.3 and mac.corr_v > 0.95
    assert rep.sigma_ln < mac.sigma_ln / 2  # 13.5x the width
    assert abs(mac.gain - 1) < 0.05 and 0 <= mac.t_off < 0.3e-9
    offs = sa_offsets(mctx, design, 0.4, 6, CELL_OPTIONS["sa_range"], 4e-3, "t")
    assert np.all(np.abs(offs) < 0.09) and offs.std() > 1e-3


def test_sa_offset_follows_the_common_mode():
    sa = SAModel([0.3, 0.4, 0.5], [1e-3, 0.0, -1e-3], [20e-3, 15e-3, 12e-3], [0.0] * 3, 50)
    z = np.array([1.0, -2.0])
    off = sa.offset_at(np.array([0.35, 0.5]), z)
    assert off[0] == pytest.approx(0.5e-3 + 17.5e-3)
    assert off[1] == pytest.approx(-1e-3 - 24e-3)
    # below the characterized range the spread keeps growing (linear extension)
    assert sa.offset_at(np.array([0.2]), np.array([1.0]))[0] == pytest.approx(2e-3 + 25e-3)


def test_validation_reads_a_sweep_still_running(tmp_path):
    from charact.column.validate import load_table

    rows = [{"job": 0, "item": i, "corner": "NOM", "vdd": 1.0, "temp": 27.0, "status": "ok",
             "code_ideal": i, "code": i + 1, "mac_ideal": 7 * i} for i in range(3)]
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.json").write_text(json.dumps({"row": rows[0], "rows": rows,
                                                          "timing": {"wall": 3.0}}))
    df, _, source = load_table(tmp_path)
    assert len(df) == 3 and "finished jobs" in source
    with pytest.raises(UserError):
        load_table(tmp_path / "nothing")
