"""IMA column: pattern generation, early-stop arbitration, netlist, error tables; and
two real-ngspice runs (random patterns at NOM/SS, an array with a tie at k = 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charact.column.bench import cross_cycles, early_stop, ramp_linearity
from charact.column.design import DESIGN_OPTIONS, draw_patterns, make_design, solve_weights
from charact.column.errortable import error_table, transfer_table
from charact.column.netlist import ColumnConfig, array_body, ternary_digits
from charact.errors import UserError
from charact.templates import load_template

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="no ngspice")


def test_ternary_digits_rebuild_every_weight():
    for w in range(-7, 8):
        t = ternary_digits(w)
        assert sum(d * s for d, s in zip(t, (1, 2, 4), strict=True)) == w
        assert all(d in (-1, 0, 1) for d in t)
    with pytest.raises(ValueError):
        ternary_digits(8)


def test_solve_weights_hits_targets():
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = rng.integers(-31, 32, 8)
        x[0] = 1
        target = int(rng.integers(-300, 300))
        w = solve_weights(x, target, rng)
        assert w.min() >= -7 and w.max() <= 7
        assert int(w @ x) == target


def test_stratified_patterns_cover_codes_and_repeat_with_seed():
    design = make_design({**DESIGN_OPTIONS, "n_dims": 8})
    a = draw_patterns(np.random.default_rng(7), design, "stratified", 8, 4)
    b = draw_patterns(np.random.default_rng(7), design, "stratified", 8, 4)
    codes = np.concatenate([design.code_ideal(w @ x) for x, w in a])
    assert len(set(codes.tolist())) >= 28  # 32 targets, a few may miss by a unit
    for (xa, wa), (xb, wb) in zip(a, b, strict=True):
        assert (xa == xb).all() and (wa == wb).all()


def test_code_ideal_is_the_floor_staircase():
    design = make_design({**DESIGN_OPTIONS, "n_dims": 4})
    lo, lsb = design.mac_lo, design.lsb
    assert design.code_ideal(lo) == 0 and design.code_ideal(lo - 1000) == 0
    assert design.code_ideal(lo + lsb) == 1
    assert design.code_ideal(design.mac_hi - 1) == 31 and design.code_ideal(10**6) == 31


def test_early_stop_keeps_lower_address_on_tie():
    cross = np.array([20, 5, 5, 0, -1])
    stop, sel = early_stop(cross, 2)
    assert stop == 5
    assert sel.tolist() == [False, True, False, True, False]
    stop, sel = early_stop(cross, 1)
    assert stop == 0 and sel.tolist() == [False, False, False, True, False]
    stop, sel = early_stop(np.array([-1, 3]), 2)  # never k crossings: full conversion
    assert stop == 31 and sel.tolist() == [False, True]


def test_cross_cycles_and_ramp_linearity():
    dec = np.zeros((2, 32), dtype=bool)
    dec[0, 7:] = True
    assert cross_cycles(dec).tolist() == [7, -1]
    levels = 0.4 - 0.004 * np.arange(33)
    levels[10:] -= 0.002  # one step 1.5x the others
    step, dnl, inl = ramp_linearity(levels)
    assert step == pytest.approx((0.004 * 32 + 0.002) / 32)
    assert dnl == pytest.approx(0.006 / step - 1)
    assert inl > 0.3


def test_netlist_routes_products_to_the_right_bitline():
    cell, sa = load_template("sram10t.sp"), load_template("sense_amp.sp")
    cfg = ColumnConfig(n_dims=2, storage="lean")
    x = np.array([3, -2])
    w = np.array([[1, 1]])  # +3 on RBL_L (scale 1 row of dim 0), -2 on RBL_R (dim 1)
    body, save = array_body(cfg, cell.subckt("dual10t").params, sa, {}, x, w, 1e-9, 1e-9)
    assert "Xc0_d0_b0l rbl_l0 rwlp_0_0 vsram mac_stack" in body
    assert "Xc0_d1_b0r rbl_r0 rwln_1_0 vsram mac_stack" in body
    assert "_b1" not in body.split("* ---- column 0")[1].split("Xc0_cal")[0]  # zero digits
    assert body.count("rep_stack\n") + body.count("rep_stack") >= 32
    assert "v(dout0)" in save
    full = array_body(ColumnConfig(n_dims=2, storage="6t"), cell.subckt("dual10t").params,
                      sa, {}, x, w, 1e-9, 1e-9)[0]
    assert ".ic v(xc0_d0_b0.x0.ql)=0.5" in full


def test_calibration_waveform_bench_loads_rbl_l_with_every_ramp_row():
    """The waveform bench fires ramp row 0 only, but the other 31 replica stacks (each
    rep_ratio cells wide) stay on RBL_L, so the bitline the calibration measures is the
    one the conversions see."""
    cell = load_template("sram10t.sp")
    sa = load_template("sense_amp.sp")
    cfg = ColumnConfig(n_dims=2, storage="lean", rep_ratio=20.0)
    x, w = np.array([3, -2]), np.array([[1, 1]])
    wave = array_body(cfg, cell.subckt("dual10t").params, sa, {}, x, w, 0.0, 0.0,
                      sa_clocked=False, cal_window=4e-9, ramp_window=40e-9)[0]
    conv = array_body(cfg, cell.subckt("dual10t").params, sa, {}, x, w, 1e-9, 1e-9)[0]
    ramp = [ln.split()[0] for ln in wave.splitlines() if "_ramp" in ln.split()[0]
            and ln.startswith("Xc0")]
    assert ramp == [ln.split()[0] for ln in conv.splitlines() if ln.startswith("Xc0_ramp")]
    assert len(ramp) == 32
    assert "Xc0_ramp0 rbl_l0 rwl_ramp0 vsram rep_stack" in wave
    assert "Xc0_ramp5 rbl_l0 0 vsram rep_stack" in wave  # placed, word line grounded


def test_bad_options_are_user_errors():
    from charact.blocks import get_block

    block = get_block("ima_column")
    with pytest.raises(UserError, match="storage"):
        block.check_options({"storage": "dram"})
    with pytest.raises(UserError, match="weights"):
        block.check_options({"patterns": "explicit", "n_dims": 2, "n_cols": 1,
                             "inputs": [1, 2], "weights": [[9, 0]]})
    with pytest.raises(UserError, match="calibration table not found"):
        block.check_options({"calibration": "/nonexistent/cal"})


def _fake_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for corner in ("NOM", "SS"):
        for _ in range(200):
            ci = int(rng.integers(0, 32))
            code = int(np.clip(ci + rng.normal(0.5 if corner == "SS" else 0, 1.0), 0, 31))
            rows.append({"corner": corner, "vdd": 1.0, "temp": 27.0, "status": "ok",
                         "mac_ideal": -112 + 7 * ci + 3, "code_ideal": ci, "code": code,
                         "v_mac": 5.7e-4 * (-112 + 7 * ci + 3), "lsb_mac": 7.0,
                         "mac_lo": -112, "mac_hi": 112})
    rows.append({**rows[0], "status": "failed", "code": None})
    return pd.DataFrame(rows)


def test_error_table_statistics():
    df = _fake_table()
    et = error_table(df)
    ok = df[df["status"] == "ok"]
    assert et["count"].sum() == len(ok)
    g = ok[(ok["corner"] == "SS") & (ok["code_ideal"] == 10)]
    row = et[(et["corner"] == "SS") & (et["code_ideal"] == 10)].iloc[0]
    err = g["code"] - g["code_ideal"]
    assert row["mean_error"] == pytest.approx(err.mean())
    assert row["sigma"] == pytest.approx(err.std(ddof=0))
    assert row["q50"] == pytest.approx(err.median())
    tr = transfer_table(df)
    assert tr["transfer_slope"].iloc[0] == pytest.approx(5.7e-4)
    assert tr["transfer_inl"].iloc[0] < 1e-6


def test_errortable_cli_writes_files(tmp_path):
    from charact.cli import main
    from charact.provenance import write_table

    write_table(_fake_table(), tmp_path / "table.parquet", {"sweep": "fake"})
    assert main(["errortable", str(tmp_path), "-o", str(tmp_path / "out")]) == 0
    et = pd.read_csv(tmp_path / "out" / "errortable.csv")
    assert len(et) == len(et.groupby(["corner", "code_ideal"]))
    assert (tmp_path / "out" / "errortable.png").stat().st_size > 1000
    assert main(["errortable", str(tmp_path / "missing")]) == 2


# -- real ngspice ---------------------------------------------------------------------------

@pytest.mark.spice
@pytest.mark.slow
@needs_ngspice
def test_random_patterns_small_column_nom_ss(tmp_path):
    """Random patterns on a 4-dimension column at NOM and SS (nominal devices): the code
    rises with the ideal MAC and the error table has one row per observed ideal code."""
    from charact.commands.engine import load_spec_with_overrides
    from charact.sweep import run_sweep

    class Args:
        spec = str(EXAMPLES / "column_small.toml")
        corner = "NOM,SS"
        samples = 0

    spec = load_spec_with_overrides(Args())
    spec.options.update(conversions=16, n_cols=8)
    res = run_sweep(spec, tmp_path, n_jobs=2, progress=False)
    df = res.table
    assert (df["status"] == "ok").all(), df["reason"].unique()
    assert len(df) == 32
    for _, g in df.groupby("corner"):
        rho = g["code"].rank().corr(g["mac_ideal"].rank())
        assert rho > 0.8
        # the mean code over the lower half of the MACs is below that of the upper half
        g = g.sort_values("mac_ideal")
        assert g["code"].iloc[:8].mean() < g["code"].iloc[8:].mean() - 5
    et = error_table(df)
    for corner, g in et.groupby("corner"):
        ideal = df[df["corner"] == corner]["code_ideal"]
        assert sorted(g["code_ideal"]) == sorted(ideal.unique())
        assert (g["count"] >= 1).all() and np.isfinite(g["sigma"]).all()


@pytest.mark.spice
@pytest.mark.slow
@needs_ngspice
def test_array_tie_stops_early_and_lower_address_wins(tmp_path):
    from charact.spec import load_spec
    from charact.sweep import run_sweep

    spec = load_spec(EXAMPLES / "column_array_tie.toml")
    df = run_sweep(spec, tmp_path, n_jobs=1, progress=False).table.sort_values("col")
    assert (df["status"] == "ok").all(), df["reason"].unique()
    cross = df["cross_cycle"].tolist()
    assert cross[1] == cross[2] >= 0  # a real tie in SPICE
    assert cross[3] < cross[1]  # the largest MAC crossed first
    assert cross[0] > cross[1] or cross[0] == -1
    stop = int(df["stop_cycle"].iloc[0])
    assert stop == cross[1] < 31  # stopped early, in the tie cycle
    assert df["alpha"].iloc[0] == pytest.approx((stop + 1) / 32)
    assert df["selected"].tolist() == [False, True, False, True]
