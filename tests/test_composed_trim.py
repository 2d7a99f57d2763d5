"""The composed column with trim room and the per-column offset trim: calibration rows one
by one (keyed to the SPICE deck's rows), their worth, the trim loop shared with full
SPICE, and the composed block's trimmed table."""

from __future__ import annotations

import numpy as np
import pytest
from test_composed_paired import _deck, deck_stack_z, fitted_model
from test_hier import _composed_spec, synthetic_model

from charact.column.calibration import trim_rows
from charact.column.composed import (
    cal_row_instance,
    calibrate_model,
    convert,
    device_paths,
    draw_die,
    keyed_die,
    nominal_die,
    stacks_used,
)
from charact.column.design import DESIGN_OPTIONS, draw_patterns, make_design
from charact.column.netlist import N_CAL
from charact.errors import UserError

N_DIMS = 4


@pytest.fixture(scope="module")
def design():
    return make_design({**DESIGN_OPTIONS, "n_dims": N_DIMS, "cal_rows": 16})


def test_keyed_die_reads_each_calibration_row_of_the_deck(design):
    """A design with trim room places its 32 calibration rows one by one; the composed die
    scores each row from the deck's own devices through the replica stack's fit."""
    x, w = draw_patterns(np.random.default_rng(3), design, "stratified", 4, 1)[0]
    deck = _deck(design, x, w, 11, 2)
    in_deck = {d.path: d for d in deck.devices}
    sa_devs = sorted({p.split(".", 1)[1] for p in in_deck if p.startswith("xsa0.")})
    model = fitted_model(design, sa_devs)
    cols = np.arange(4)
    need = stacks_used(np.repeat(x[None, :], 4, 0), w, cols, 4)
    expect = device_paths(4, N_DIMS, model, need, split_cal=True)
    assert expect == {p for p in in_deck if not p.startswith("xpre_")}
    die = keyed_die(11, 2, 4, N_DIMS, model, need=need, split_cal=True)
    rep = model.stacks["rep"]
    for c in range(4):
        for j in (0, 15, 16, 31):  # rows storing -1 and rows storing 0 alike
            z = deck_stack_z(in_deck, cal_row_instance(c, j), rep)
            assert die.z_cal_rows[c, j] == pytest.approx(z, abs=1e-12)
    assert np.std(die.z_cal_rows) > 0.3  # the rows differ: each is its own device


def test_rows_move_the_ramp_start_by_the_measured_worth(design):
    model = synthetic_model(design)
    cal = calibrate_model(model, design)
    assert 0.2 < cal.lsb_per_row < 3  # 16 rows are about half the ramp's 32 LSB
    x, w = draw_patterns(np.random.default_rng(1), design, "stratified", 5, 1)[0]
    rows = np.array([8, 12, 16, 20, 24])
    r = convert(model, design, np.repeat(x[None, :], 5, 0), np.repeat(w[:1], 5, 0),
                np.arange(5), nominal_die(5, N_DIMS), cal.t_cal, cal.t_step, cal_rows=rows)
    d = (r.levels_l[:, 0] - r.levels_r[:, 0]) / cal.lsb_v
    assert np.all(np.diff(d) > 0)  # more rows, a lower ramp start on RBL_R
    assert (d[3] - d[1]) / 8 == pytest.approx(cal.lsb_per_row, rel=0.1)
    with pytest.raises(ValueError, match="cal_rows"):
        convert(model, design, x[None, :], w[:1], np.array([0]), nominal_die(5, N_DIMS),
                cal.t_cal, cal.t_step, cal_rows=[16, 16])


def _mean_code_errors(model, design, cal, die, n_cols, rows):
    """Each column's mean code error over 64 stratified patterns (LSB)."""
    decks = draw_patterns(np.random.default_rng(9), design, "stratified", n_cols, 64)
    err = np.zeros(n_cols)
    for x, w in decks:
        r = convert(model, design, np.repeat(x[None, :], n_cols, 0), w, np.arange(n_cols),
                    die, cal.t_cal, cal.t_step, cal_rows=rows)
        err += r.code - design.code_ideal(w @ x)
    return err / len(decks)


def test_the_composed_trim_removes_the_static_offsets(design):
    """Large SA offsets (3 LSB), small cell mismatch: the trim, run by the loop SPICE uses,
    takes each column's mean error near zero on patterns it never saw."""
    model0 = synthetic_model(design, sigma_cell=0.01)
    cal = calibrate_model(model0, design)
    model = synthetic_model(design, sigma_cell=0.01, sigma_sa=3 * cal.lsb_v)
    n_cols = 16
    die = draw_die(np.random.default_rng(4), n_cols, N_DIMS)
    cols = np.arange(n_cols)
    seen = []

    def decide(step, x, w, rows):
        seen.append(rows)
        return convert(model, design, np.repeat(x[None, :], n_cols, 0), w, cols, die,
                       cal.t_cal, cal.t_step, cal_rows=rows).decisions

    trim = trim_rows(design, cal, n_cols, decide, steps=2)
    assert seen[0] is None and len(seen) == 2  # the first conversion at the nominal rows
    assert len(trim.rows) == n_cols and len(set(trim.rows)) > 3
    before = _mean_code_errors(model, design, cal, die, n_cols, None)
    after = _mean_code_errors(model, design, cal, die, n_cols, trim.rows)
    assert np.std(before) > 1.5
    assert np.sqrt(np.mean(after ** 2)) < 0.5 * np.sqrt(np.mean(before ** 2))
    # the offsets the trim measured are the columns' own (positive: crosses late, a code
    # too low)
    assert np.corrcoef(trim.offsets, -before)[0, 1] > 0.8


def test_the_composed_block_trims_each_die(tmp_path):
    from charact.blocks import get_block
    from charact.spec import load_spec
    from charact.sweep import run_sweep

    spec_path = _composed_spec(tmp_path, "", samples=2)
    text = spec_path.read_text().replace('n_dims = 4', 'n_dims = 4\ncal_rows = 16\n'
                                         'trim = "offset"')
    # the models name the design they were made for: this one, with trim room
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4, "cal_rows": 16})
    main = next(t for t in get_block("ima_column").load_templates() if "dual10t" in t.subckts)
    digest = d.digest(main.subckt("dual10t").params)
    cells = (tmp_path / "cells.json")
    cells.write_text(cells.read_text().replace('"design": ""', f'"design": "{digest}"'))
    spec_path.write_text(text)
    res = run_sweep(load_spec(spec_path), tmp_path / "out", n_jobs=1, progress=False)
    df = res.table
    assert (df["status"] == "ok").all(), df["reason"].unique()
    mc = df[df["sample"] >= 0]
    assert mc["trim_offset"].notna().all()
    # one trim per die: every conversion of a die's column carries that column's rows
    per = mc.groupby(["corner", "die", "col"])["cal_rows"].nunique()
    assert (per == 1).all() and mc["cal_rows"].nunique() > 1


def test_a_composed_trim_at_another_temperature_is_refused():
    from charact.blocks import get_block

    block = get_block("ima_column_composed")
    with pytest.raises(UserError, match="trim_temp must be 'point' for the composed"):
        block.check_options({"cal_rows": 16, "trim": "offset", "trim_temp": "27",
                             "cell_models": "inline"})
    opts = block.check_options({"cal_rows": 16, "trim": "offset", "cell_models": "inline"})
    assert opts["cal_rows"] == 16 and N_CAL == 32
