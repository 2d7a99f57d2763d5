"""Per-column offset trim: the calibration rows each column fires, the half-LSB trim
conversion and the rule that turns its crossing cycle into rows; and one real-ngspice
Monte-Carlo die trimmed and converted."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from charact.blocks import get_block
from charact.column import calibration as cal_mod
from charact.column.bench import Conversion
from charact.column.calibration import Calibration, offset_trim, trim_pattern
from charact.column.design import DESIGN_OPTIONS, make_design
from charact.column.netlist import ColumnConfig, array_body
from charact.errors import UserError
from charact.templates import load_template

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="no ngspice")


def _body(cfg: ColumnConfig, cal_rows=None) -> str:
    cell, sa = load_template("sram10t.sp"), load_template("sense_amp.sp")
    x = np.array([3, -2])
    w = np.array([[1, 1], [2, -1]])
    return array_body(cfg, cell.subckt("dual10t").params, sa, {}, x, w, 1e-9, 1e-9,
                      cal_rows=cal_rows)[0]


def test_untrimmed_lean_column_keeps_one_merged_calibration_stack():
    body = _body(ColumnConfig(n_dims=2))
    assert body.count("rwl_cal vsram cal_stack") == 2
    assert "Xc0_cal0 " not in body


def test_trim_fires_exactly_the_chosen_rows_per_column():
    body = _body(ColumnConfig(n_dims=2, cal_rows=16), cal_rows=[3, 20])
    col0 = body.split("* ---- column 0")[1].split("* ---- column 1")[0]
    col1 = body.split("* ---- column 1")[1]
    assert col0.count("rwl_cal vsram rep_stack") == 3
    assert col1.count("rwl_cal vsram rep_stack") == 20
    # the rows storing 0 stay on the bitline (their junctions and inner nodes load it),
    # gate grounded: a trim changes what rows store, not the bitline
    assert col0.count("rwl_cal 0 rep_stack") == 29
    assert col1.count("rwl_cal 0 rep_stack") == 12
    assert "Xc0_cal3 rbl_r0 rwl_cal 0 rep_stack" in col0
    # row j is the same instance whichever rows a trim selects (same device, same die)
    assert "Xc1_cal19 rbl_r1 rwl_cal vsram rep_stack" in col1
    nominal = _body(ColumnConfig(n_dims=2, cal_rows=16))
    assert nominal.count("rwl_cal vsram rep_stack") == 32
    # 6T storage: rows beyond the trim store 0 (both storage nodes low)
    full = _body(ColumnConfig(n_dims=2, storage="6t", cal_rows=16), cal_rows=[1, 2])
    assert ".ic v(xc0_cal0.x0.ql)=0 v(xc0_cal0.x0.qlb)=0.5 v(xc0_cal0.x0.qr)=0.5" in full
    assert ".ic v(xc0_cal1.x0.ql)=0 v(xc0_cal1.x0.qlb)=0.5 v(xc0_cal1.x0.qr)=0 " in full


@pytest.mark.parametrize("n_dims", [1, 4, 16, 64])
def test_trim_pattern_is_half_an_lsb(n_dims):
    d = make_design({**DESIGN_OPTIONS, "n_dims": n_dims, "cal_rows": 16})
    x, w = trim_pattern(d)
    target = max(1, round(d.lsb / 2))
    assert abs(int(x @ w) - target) <= max(1, target // 20)
    assert d.code_ideal(int(x @ w)) == 16


@pytest.mark.parametrize("n_dims", [4, 16, 64])
def test_typical_trim_pattern_is_half_an_lsb_with_a_conversions_load(n_dims):
    """The typical pattern has the few-cell pattern's MAC, but the bitlines carry as much
    charge as a random pattern's: most dimensions pulse, both signs, a large |x|·|w|."""
    d = make_design({**DESIGN_OPTIONS, "n_dims": n_dims, "cal_rows": 16})
    x, w = trim_pattern(d, "typical")
    target = max(1, round(d.lsb / 2))
    assert int(x @ w) == target and d.code_ideal(int(x @ w)) == 16
    few_x, few_w = trim_pattern(d, "few")
    load = int(np.abs(x * w).sum())
    assert load > 4 * int(np.abs(few_x * few_w).sum())
    assert (x * w > 0).any() and (x * w < 0).any()
    assert np.array_equal(trim_pattern(d, "typical")[1], w)  # fixed by the design


def _fake_run(cycles):
    def run(ctx, name, design, x, w, t_cal, t_step, cal_rows=None):
        dec = np.zeros((w.shape[0], 32), dtype=bool)
        for c, j in enumerate(cycles):
            if j >= 0:
                dec[c, j:] = True
        z = np.zeros(w.shape[0])
        return Conversion(dec, np.zeros((w.shape[0], 33)), np.zeros((w.shape[0], 33)), z, z)
    return run


@pytest.mark.parametrize(("cal_rows", "t_cal", "per_lsb"),
                         [(16, 1e-9, 1.0), (8, 2e-9, 0.5), (16, 0.25e-9, 4.0)])
def test_offset_trim_rule(monkeypatch, cal_rows, t_cal, per_lsb):
    """A column crossing at cycle j has an offset in (j - 15.5, j - 14.5] LSB; the trim
    removes (j - 15) LSB worth of rows, clipped to 0..32. A row held for t_cal moves the
    ramp start by t_cal / t_step LSB: cal_rows / 16 rows per LSB when the nominal rows
    span 16 LSB (t_cal = 16 t_step / cal_rows), more when t_cal is short."""
    cycles = [15, 16, 12, 30, -1, 0]
    monkeypatch.setattr(cal_mod, "run_array", _fake_run(cycles))
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4, "cal_rows": cal_rows})

    ctx = SimpleNamespace(point=SimpleNamespace(temp=27.0), options={})  # all it reads
    trim = offset_trim(ctx, d, Calibration(t_cal, 1e-9, 1e-3, 1e-3), len(cycles))
    want = [int(np.clip(cal_rows - round(((j if j >= 0 else 32) - 15) * per_lsb), 0, 32))
            for j in cycles]
    assert trim.rows == want
    assert trim.offsets == [(j if j >= 0 else 32) - 15.0 for j in cycles]
    assert trim.cycles == cycles and trim.temp == 27.0


def test_offset_trim_uses_the_measured_row_worth(monkeypatch):
    cycles = [15, 18, 11]
    monkeypatch.setattr(cal_mod, "run_array", _fake_run(cycles))
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4, "cal_rows": 16})
    ctx = SimpleNamespace(point=SimpleNamespace(temp=27.0), options={"trim_steps": 1})
    # t_step / t_cal would say 4 rows per LSB; the measured worth says 2
    cal = Calibration(0.25e-9, 1e-9, 1e-3, 1e-3, lsb_per_row=0.5)
    assert cal_mod.rows_per_lsb(d, cal) == 2.0
    assert offset_trim(ctx, d, cal, 3).rows == [16, 10, 24]


def _die_run(offsets, worth, r0, calls):
    """A die whose column c has offset offsets[c] LSB at the nominal rows and whose
    rows move the ramp start by ``worth`` LSB each (the trim's estimate may differ)."""
    def run(ctx, name, design, x, w, t_cal, t_step, cal_rows=None):
        rows = np.array(cal_rows if cal_rows is not None else [r0] * w.shape[0])
        calls.append(rows.tolist())
        u = np.asarray(offsets) - (r0 - rows) * worth
        j = np.ceil(14.5 + u).astype(int)
        dec = np.zeros((w.shape[0], 32), dtype=bool)
        for c, jc in enumerate(j):
            if jc <= 31:
                dec[c, max(jc, 0):] = True
        z = np.zeros(w.shape[0])
        return Conversion(dec, np.zeros((w.shape[0], 33)), np.zeros((w.shape[0], 33)), z, z)
    return run


@pytest.mark.parametrize("true_worth", [0.6, 0.75, 0.9])
def test_iterated_trim_converges_where_one_step_misses(monkeypatch, true_worth):
    """The row worth the calibration measured (0.6 LSB) is off by up to 50 % at a
    die's operating point: one step leaves up to half the offset, further steps
    correct what the new rows still miss."""
    offsets = [-9.3, -4.2, 0.3, 2.6, 7.7, 10.4]
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4, "cal_rows": 16})
    cal = Calibration(1e-9, 1e-9, 1e-3, 1e-3, lsb_per_row=0.6)

    def residual(steps):
        calls: list = []
        monkeypatch.setattr(cal_mod, "run_array", _die_run(offsets, true_worth, 16, calls))
        ctx = SimpleNamespace(point=SimpleNamespace(temp=27.0),
                              options={"trim_steps": steps})
        trim = offset_trim(ctx, d, cal, len(offsets))
        assert trim.offsets == [float(np.ceil(14.5 + o) - 15) for o in offsets]
        assert len(calls) <= steps and calls[0] == [16] * len(offsets)
        return np.abs(np.asarray(offsets) - (16 - np.array(trim.rows)) * true_worth)

    many = residual(4)
    assert many.max() <= 0.5 + true_worth / 2 + 1e-9  # within half a row of the cycle
    if true_worth != 0.6:
        assert residual(1).max() > many.max()


def test_trim_options_are_checked():
    block = get_block("ima_column")
    with pytest.raises(UserError, match="cal_rows < 32"):
        block.check_options({"trim": "offset"})
    with pytest.raises(UserError, match="trim_temp"):
        block.check_options({"trim": "offset", "cal_rows": 16, "trim_temp": "hot"})
    opts = block.check_options({"trim": "offset", "cal_rows": 16, "trim_temp": "27"})
    assert opts["trim_temp"] == "27"
    # the composed column trims at the job's point only (its cell models are there)
    with pytest.raises(UserError, match="trim_temp must be 'point' for the composed"):
        get_block("ima_column_composed").check_options({"trim": "offset", "cal_rows": 16,
                                                        "trim_temp": "27"})


def test_bitline_capacitance_from_rows():
    d = make_design({**DESIGN_OPTIONS, "n_dims": 64, "c_rbl_per_row": 0.25e-15})
    assert d.cfg.c_rbl == pytest.approx(256 * 0.25e-15)
    d = make_design({**DESIGN_OPTIONS, "n_dims": 16})
    assert d.cfg.c_rbl == pytest.approx(16 * 70e-15)


@pytest.mark.spice
@needs_ngspice
def test_trimmed_die_converts_the_trim_pattern_near_code_16(tmp_path):
    """One Monte-Carlo die of a 2-dimension column, trimmed: explicit patterns repeat the
    trim pattern, so each trimmed column must convert it within one code of 16, and the
    trim must have moved at least one column off the nominal rows (the die's offsets
    are several LSB)."""
    from charact.spec import load_spec
    from charact.sweep import run_sweep

    d = make_design({**DESIGN_OPTIONS, "n_dims": 2, "cal_rows": 16})
    x, w = trim_pattern(d)
    n_cols = 4
    spec_path = tmp_path / "trim.toml"
    spec_path.write_text(f"""
schema = "charact.sweep/1"
name = "trim_test"
block = "ima_column"
technology = "freepdk45"
[conditions]
corner = ["NOM"]
[montecarlo]
samples = 1
seed = 7
[measure]
n_dims = 2
n_cols = {n_cols}
cal_rows = 16
trim = "offset"
patterns = "explicit"
inputs = {[int(v) for v in x]}
weights = {[[int(v) for v in w]] * n_cols}
[run]
timeout = 1800
""")
    df = run_sweep(load_spec(spec_path), tmp_path / "out", n_jobs=1, progress=False).table
    assert (df["status"] == "ok").all(), df["reason"].unique()
    assert (df["code_ideal"] == 16).all()
    assert (df["code"] - 16).abs().max() <= 1, df[["col", "code", "cal_rows", "trim_offset"]]
    assert (df["cal_rows"] != 16).any()
    assert df["trim_offset"].notna().all()


def test_at_temperature_moves_only_the_temperature(tmp_path):
    from charact.blocks.base import JobContext
    from charact.column.calibration import at_temperature
    from charact.deck import Point

    ctx = JobContext(tech=None, point=Point("SS", 1.0, 125.0, 3, 2), params={},
                     conditions={}, options={}, workdir=tmp_path / "work" / "k.1", sim=None,
                     templates=())
    with at_temperature(ctx, 125.0) as same:
        assert same is ctx
    with at_temperature(ctx, 27.0) as cold:
        assert (cold.point.corner, cold.point.vdd, cold.point.temp) == ("SS", 1.0, 27.0)
        assert (cold.point.seed, cold.point.die) == (3, 2)  # the same die
        assert cold.workdir.parent == ctx.workdir
        cold.elapsed += 2.0
        cold.decks.append("abc")
    assert ctx.elapsed == 2.0 and ctx.decks == ["abc"] and ctx.point.temp == 125.0


def test_row_worth_converts_the_mac_hi_pattern_either_side_of_the_nominal_rows(monkeypatch):
    """The calibration's row worth: two columns of the mac_hi pattern at cal_rows -+ 8
    rows; the worth is their ramp-start differentials' difference per row."""
    seen = {}

    def run(ctx, name, design, x, w, t_cal, t_step, cal_rows=None):
        seen.update(name=name, rows=cal_rows, w=w)
        lv = np.zeros((2, 33))
        lv[:, 0] = [0.010 + 0.004 * r for r in cal_rows]  # 4 mV per row on RBL_L - RBL_R
        z = np.zeros(2)
        return Conversion(np.zeros((2, 32), dtype=bool), lv, np.zeros((2, 33)), z, z)

    monkeypatch.setattr(cal_mod, "run_array", run)
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4, "cal_rows": 12})
    x, w = cal_mod.calibration_patterns(d)
    worth = cal_mod._row_worth(None, d, x, w[0], 1e-9, 1e-9)
    assert worth == pytest.approx(0.004)
    assert seen["rows"] == [4, 20] and np.array_equal(seen["w"], np.stack([w[0], w[0]]))
    # near the ends of the 32 rows the span shrinks; no room at all: NaN
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4, "cal_rows": 30})
    assert cal_mod._row_worth(None, d, x, w[0], 1e-9, 1e-9) == pytest.approx(0.004)
    assert seen["rows"] == [28, 32]
    d = make_design({**DESIGN_OPTIONS, "n_dims": 4})
    assert np.isnan(cal_mod._row_worth(None, d, x, w[0], 1e-9, 1e-9))


@pytest.mark.parametrize("missing", [None, float("nan"), "absent"])
def test_calibration_record_without_a_row_worth_reads_as_nan(missing):
    """A point without trim room (cal_rows = 32) has no row worth: the table stores it
    as null/NaN, older tables lack the column; every form loads, as NaN."""
    rec = {"t_cal": 1e-9, "t_step": 2e-9, "volts_per_mac": 1e-4, "lsb_v": 4e-3,
           "resid_hi": 0.01, "resid_lo": -0.02, "iterations": 3, "lsb_per_row": missing}
    if missing == "absent":
        del rec["lsb_per_row"]
    cal = cal_mod.calibration_from_record(rec)
    assert np.isnan(cal.lsb_per_row) and cal.t_step == 2e-9 and cal.iterations == 3
    rec["lsb_per_row"] = 0.62
    assert cal_mod.calibration_from_record(rec).lsb_per_row == 0.62


def _affine_column(q_step: float, rate_step: float, q_cal: float, rate_cal: float):
    """A column whose replica pulses swing ``q + rate x width`` (V): the inner-node charge
    ``q`` does not grow with the width."""
    d0, d1 = -0.05, 0.10  # ramp-start differentials before the calibration pulse

    def verify(it, t_cal, t_step):
        up = q_cal + rate_cal * t_cal
        return d0 + up, d1 + up, d1 + up - 32 * (q_step + rate_step * t_step)
    return verify


def test_refine_pulses_meets_both_targets_when_a_pulse_is_mostly_edge_charge():
    """70 % of a ramp step's swing is inner-node charge: scaling the width by the swing
    ratio converges by 0.7 per verification (1.6 LSB left of a 20-LSB miss after 8,
    as a 4x read driver's calibration did); the secant lands within the tolerance."""
    from charact.column.calibration import TOLERANCE_LSB, refine_pulses

    lsb_v = 8e-3
    # the ramp must span 32 LSB: a step of 8 mV, 5.6 mV of it edge charge
    verify = _affine_column(q_step=5.6e-3, rate_step=2.4e-3 / 0.5e-9, q_cal=0.02,
                            rate_cal=0.1 / 1e-9)
    target_hi, target_lo = 0.1, 0.10 + 0.1 - 0.02 - 32 * lsb_v + 0.07
    t_cal, t_step, r_hi, r_lo, used = refine_pulses(
        verify, 0.4e-9, 1.2e-9, target_hi, target_lo, lsb_v, 0.1 / 1e-9, 8, 30e-12, 1.8e-9)
    assert max(abs(r_hi), abs(r_lo)) < TOLERANCE_LSB
    assert used <= 5
    dc0, _, d1_end = verify(0, t_cal, t_step)
    assert dc0 == pytest.approx(target_hi, abs=TOLERANCE_LSB * lsb_v)
    assert d1_end == pytest.approx(target_lo, abs=TOLERANCE_LSB * lsb_v)
    # the width stays inside what a conversion accepts
    _, t_step, *_ = refine_pulses(verify, 0.4e-9, 1.2e-9, target_hi, target_lo - 1.0,
                                  lsb_v, 0.1 / 1e-9, 8, 30e-12, 1.8e-9)
    assert t_step <= 1.8e-9
