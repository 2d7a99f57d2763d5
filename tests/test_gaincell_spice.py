"""Gain-cell circuits in real ngspice on FreePDK45: small sweeps whose physics could fail
(charge grows with pulse and stored level, retention decays and faster when hot, the
readout saturates, a write completes within its pulse), and the chain into lookup models.
About 20 s on one core."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from charact import cli
from charact.lookup.grid_table import GridTableModel
from charact.lookup.pvt_table import PVTTableModel
from charact.spec import parse_spec
from charact.sweep import run_sweep

pytestmark = pytest.mark.spice


def sweep(tmp_path_factory, name: str, block: str, conditions: dict, measure: dict,
          samples: int = 0):
    out = tmp_path_factory.mktemp(name)
    spec = parse_spec({"schema": "charact.sweep/1", "name": name, "block": block,
                       "technology": "freepdk45", "conditions": conditions,
                       "measure": measure, "montecarlo": {"samples": samples, "seed": 3}})
    res = run_sweep(spec, out, n_jobs=1, progress=False)
    assert res.failed == 0, res.table["reason"].tolist()
    return out, res.table


@pytest.fixture(scope="module")
def multiply(tmp_path_factory):
    return sweep(tmp_path_factory, "mult", "gc_multiply",
                 {"v_store": [0.3, 0.45, 0.675, 0.9]}, {"pulses": [2e-9, 5e-9, 10e-9]})


@pytest.fixture(scope="module")
def retention(tmp_path_factory):
    return sweep(tmp_path_factory, "ret", "gc_retention", {"v_store": [0.9], "temp": [27, 85]},
                 {"times": [1e-8, 1e-7, 1e-6, 1e-5]})


@pytest.fixture(scope="module")
def readout(tmp_path_factory):
    return sweep(tmp_path_factory, "ro", "gc_readout", {},
                 {"q_in": [-60e-15, 20e-15, 50e-15, 80e-15, 110e-15, 250e-15, 400e-15]},
                 samples=2)


def test_charge_grows_with_pulse_width_and_stored_voltage(multiply):
    _, t = multiply
    q_pos = t.pivot(index="v_store", columns="pulse", values="q_pos")
    assert (np.diff(q_pos.to_numpy(), axis=1) > 0).all()  # longer pulse, more charge
    assert (np.diff(q_pos.to_numpy(), axis=0) > 0).all()  # higher level, more charge
    q = t.pivot(index="v_store", columns="pulse", values="q")
    full = q.loc[0.9].to_numpy()
    # signed about v_offset: no weight at 0.45 V, negative below, positive above
    assert (np.abs(q.loc[0.45].to_numpy()) < 0.02 * full).all()
    assert (q.loc[0.3].to_numpy() < 0).all() and (full > 0).all()
    # the charge is the product: proportional to the pulse within 10 %
    per_ns = full / np.array([2.0, 5.0, 10.0])
    assert per_ns.max() / per_ns.min() < 1.1
    # the stored level is what was written, less the word line's feedthrough
    assert (t["v_sn_pos"] < t["v_store"] + 0.01).all()
    assert (t["v_sn_pos"] > t["v_store"] - 0.1).all()


def test_retention_decays_and_decays_faster_when_hot(retention):
    _, t = retention
    droop = t.pivot(index="t_hold", columns="temp", values="droop")
    assert (np.diff(droop.to_numpy(), axis=0) > 0).all()  # it decays
    assert (droop[85.0] > droop[27.0]).all()  # faster when hot
    jobs = t.groupby("temp").first()
    assert jobs.loc[85.0, "t_ret"] < jobs.loc[27.0, "t_ret"]
    # the write transistor's subthreshold channel is what heats up
    assert jobs.loc[85.0, "i_wr_channel"] > 2 * jobs.loc[27.0, "i_wr_channel"] > 0


def test_readout_pulse_grows_then_saturates(readout):
    _, t = readout
    opts = parse_spec({"schema": "charact.sweep/1", "name": "x", "block": "gc_readout",
                       "technology": "freepdk45"}).options
    t_max, i_ref = opts["t_max"], opts["i_ref"]
    for _, die in t.groupby("die"):
        w = die.sort_values("q_in")["width"].to_numpy()
        assert (np.diff(w) >= -0.01 * t_max).all()
        assert w[0] < 0.02 * t_max  # a negative charge gives no pulse
        # the two largest charges saturate at the window, T_max
        assert w[-1] == pytest.approx(t_max, rel=0.02)
        assert w[-2] == pytest.approx(w[-1], rel=0.01)
        assert 0.5 / i_ref < die["gain"].iloc[0] < 2 / i_ref
        assert die["q_sat"].iloc[0] == pytest.approx(die["q_offset"].iloc[0]
                                                     + t_max * i_ref, rel=0.3)
    # two dies, two offsets: the Monte-Carlo spread reaches the readout
    assert t.groupby("die")["q_offset"].first().nunique() == 2


def test_a_write_completes_within_its_pulse(tmp_path_factory):
    _, t = sweep(tmp_path_factory, "wr", "gc_write", {"v_store": [0.45, 0.9]}, {},
                 samples=1)
    t_wwl = parse_spec({"schema": "charact.sweep/1", "name": "x", "block": "gc_write",
                        "technology": "freepdk45"}).options["t_wwl"]
    assert ((t["t_write"] > 0) & (t["t_write"] < t_wwl)).all()
    assert ((t["e_write"] > 0) & (t["e_write"] < 1e-12)).all()
    assert (t["v_error"].abs() < 0.1).all()
    # writing a higher level costs more
    e = t.set_index("v_store")["e_write"]
    assert e[0.9] > e[0.45]


def test_fit_show_and_export_make_grid_tables_of_the_sweeps(multiply, readout, tmp_path,
                                                            capsys):
    out, t = multiply
    model_path = tmp_path / "mult.json"
    assert cli.main(["fit", str(out), "-o", str(model_path)]) == 0
    assert "grid_table model" in capsys.readouterr().out
    model = GridTableModel.load(model_path)
    assert model.axes == ["v_store", "pulse"]
    # between grid points the surface lies between its neighbours
    lo = model.value("q_pos", "NOM", 1.0, 27.0, v_store=0.675, pulse=5e-9)
    hi = model.value("q_pos", "NOM", 1.0, 27.0, v_store=0.9, pulse=5e-9)
    mid = model.value("q_pos", "NOM", 1.0, 27.0, v_store=0.8, pulse=5e-9)
    assert lo < mid < hi
    assert model.units["q"] == "C" and model.units["pulse"] == "s"
    assert cli.main(["show", str(model_path), "--plot", str(tmp_path / "m.png")]) == 0
    assert "axis pulse" in capsys.readouterr().out
    assert (tmp_path / "m.png").stat().st_size > 1000
    assert cli.main(["export", str(out), "--csv", "-o", str(tmp_path / "e")]) == 0
    frame = pd.read_csv(tmp_path / "e" / "grid_table.csv")
    assert set(frame["name"]) >= {"q", "q_pos", "q_neg"}

    out, _ = readout
    assert cli.main(["fit", str(out), "-o", str(tmp_path / "ro.json")]) == 0
    ro = GridTableModel.load(tmp_path / "ro.json")
    assert ro.axes_of("gain") == [] and ro.axes_of("width") == ["q_in"]
    assert ro.grids["NOM"].stats["gain"]["count"].item() == 2  # once per die
    assert ro.value("gain", "NOM", 1.0, 27.0, stat="sigma") > 0


def test_write_sweep_fits_a_pvt_table_per_level(tmp_path_factory, tmp_path, capsys):
    out, _ = sweep(tmp_path_factory, "wr2", "gc_write", {"v_store": [0.45, 0.9]}, {})
    assert cli.main(["fit", str(out), "-o", str(tmp_path / "w.json")]) == 0
    model = PVTTableModel.load(tmp_path / "w.json")
    assert "t_write@v_store=0.9" in model.names
    assert cli.main(["show", str(tmp_path / "w.json")]) == 0
    assert "e_write@v_store=0.45" in capsys.readouterr().out
