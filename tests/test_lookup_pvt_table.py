"""PVT tables: grid statistics, interpolation against an analytic function, range checks,
and column-sweep fitting (failed rows, unobserved codes, nominal point)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from charact.errors import UserError
from charact.lookup import fileformat as ff
from charact.lookup.fit import fit_error_model, fit_pvt_table, load_sweep
from charact.lookup.pvt_table import PVTTableModel

VDDS = [0.8, 0.9, 1.0, 1.1, 1.2]
TEMPS = [-40.0, 27.0, 125.0]


def t_arb(vdd, temp):
    """A smooth made-up delay (s): not bilinear, so interpolation error is measurable."""
    return 1e-9 * (0.5 + 0.3 / (np.asarray(vdd) - 0.4)) * (1 + 0.002 * np.asarray(temp))


def analytic_table(samples: int = 3, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for corner, scale in (("NOM", 1.0), ("SS", 1.3)):
        for vdd in VDDS:
            for temp in TEMPS:
                for s in range(samples):
                    rows.append({"corner": corner, "vdd": vdd, "temp": temp, "sample": s,
                                 "seed": 10 + s, "status": "ok",
                                 "t_arb": scale * t_arb(vdd, temp) * (1 + noise * rng.normal()),
                                 "energy": 1e-15 * vdd**2})
    rows.append({"corner": "NOM", "vdd": 1.0, "temp": 27.0, "sample": 99, "seed": 1,
                 "status": "failed", "t_arb": np.nan, "energy": np.nan})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def model() -> PVTTableModel:
    return fit_pvt_table(analytic_table(), ["t_arb", "energy"], {"seed": 0})


def test_grid_statistics(model):
    g = model.grids["NOM"]
    assert np.allclose(g.vdd, VDDS) and np.allclose(g.temp, TEMPS)
    assert np.all(g.stats["t_arb"]["count"] == 3)  # the failed row is not counted
    assert np.allclose(g.stats["t_arb"]["mean"], t_arb(g.vdd[:, None], g.temp[None, :]))
    assert np.allclose(g.stats["t_arb"]["sigma"], 0.0, atol=1e-24)
    assert model.provenance["rows_failed"] == 1
    noisy = fit_pvt_table(analytic_table(samples=400, noise=0.05, seed=1), ["t_arb"], {})
    sd = noisy.grids["SS"].stats["t_arb"]["sigma"]
    expect = 1.3 * t_arb(np.array(VDDS)[:, None], np.array(TEMPS)[None, :]) * 0.05
    # the sample sigma of 400 draws is within ~4/sqrt(2*400) = 14 % of the truth
    assert np.all(np.abs(sd / expect - 1) < 0.14)


def test_interpolation_against_the_analytic_function(model):
    assert model.value("t_arb", "NOM", 0.9, 27.0) == pytest.approx(t_arb(0.9, 27.0), rel=1e-12)
    v = np.linspace(0.8, 1.2, 17)
    temp = np.linspace(-40, 125, 17)
    got = model.values("t_arb", "SS", v[:, None], temp[None, :])
    want = 1.3 * t_arb(v[:, None], temp[None, :])
    assert got.shape == (17, 17)
    # linear interpolation of 1/(v-0.4) on a 0.1 V grid: error <= h^2/8 * max|f''|
    h = 0.1
    bound = 1.3e-9 * 0.3 * 2 / (0.8 - 0.4) ** 3 * h**2 / 8 * (1 + 0.002 * 125)
    assert np.max(np.abs(got - want)) <= bound
    assert np.max(np.abs(got - want)) > 0  # it really interpolates
    assert model.value("energy", "nom", 0.95, 0.0) == pytest.approx(
        1e-15 * (0.9**2 + 1.0**2) / 2)
    assert model.value("t_arb", "NOM", 1.0, 27.0, stat="sigma") == pytest.approx(0.0, abs=1e-24)


def test_out_of_range_and_unknown_names(model):
    with pytest.raises(UserError, match=r"vdd=1\.3 is outside .* 0\.8\.\.1\.2"):
        model.value("t_arb", "NOM", 1.3, 27.0)
    with pytest.raises(UserError, match="temp=150 is outside"):
        model.values("t_arb", "NOM", [1.0, 1.0], [27.0, 150.0])
    with pytest.raises(UserError, match=r"unknown corner 'FF'; this table has: NOM, SS"):
        model.value("t_arb", "FF", 1.0, 27.0)
    with pytest.raises(UserError, match=r"unknown value 'delay'.*t_arb, energy"):
        model.value("delay", "NOM", 1.0, 27.0)
    # extrapolation is linear along the vdd axis
    x = model.value("energy", "NOM", 1.3, 27.0, extrapolate=True)
    assert x == pytest.approx(1e-15 * (1.2**2 + (1.2**2 - 1.1**2)))


def test_single_temperature_uses_a_1d_table(tmp_path):
    table = analytic_table()
    table = table[table["temp"] == 27.0]
    m = fit_pvt_table(table, None, {})
    assert m.names == ["t_arb", "energy"]  # sample/seed are bookkeeping, not values
    assert m.value("t_arb", "NOM", 0.85, 27.0) == pytest.approx(
        (t_arb(0.8, 27.0) + t_arb(0.9, 27.0)) / 2)
    with pytest.raises(UserError, match="temp=60 is outside the characterized temp range 27"):
        m.value("t_arb", "NOM", 0.85, 60.0)
    assert m.value("t_arb", "NOM", 0.85, 60.0, extrapolate=True) == pytest.approx(
        m.value("t_arb", "NOM", 0.85, 27.0))
    path = tmp_path / "p.json"
    m.save(path)
    back = PVTTableModel.load(path)
    assert back.value("t_arb", "SS", 1.05, 27.0) == m.value("t_arb", "SS", 1.05, 27.0)


def test_missing_grid_points_are_named():
    table = analytic_table()
    table = table[~((table["corner"] == "SS") & (table["vdd"] == 1.2) & (table["temp"] == 125))]
    m = fit_pvt_table(table, ["t_arb"], {})
    assert m.value("t_arb", "SS", 0.8, -40.0) > 0
    with pytest.raises(UserError, match="no mean of 't_arb' at corner SS, vdd=1.15"):
        m.value("t_arb", "SS", 1.15, 100.0)


def test_condition_columns_split_values():
    table = pd.concat([analytic_table().assign(vcm=v, t_arb=lambda d, v=v: d.t_arb * (1 + v))
                       for v in (0.2, 0.5)])
    m = fit_pvt_table(table, ["t_arb"], {}, by=["vcm"])
    assert m.names == ["t_arb@vcm=0.2", "t_arb@vcm=0.5"]
    assert m.value("t_arb@vcm=0.5", "NOM", 1.0, 27.0) == pytest.approx(1.5 * t_arb(1.0, 27.0))
    with pytest.raises(UserError, match="not a numeric measurement column: corner"):
        fit_pvt_table(table, ["corner"], {})


def test_pvt_file_is_validated(tmp_path, model):
    path = tmp_path / "p.json"
    model.save(path)
    doc = json.loads(path.read_text())
    doc["data"]["corners"]["NOM"]["vdd"] = [0.8, 0.9]
    doc["checksum"] = ff.checksum_of(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"t_arb.mean: shape \(5, 3\) does not match .* 2x3"):
        PVTTableModel.load(path)
    model.save(path)
    text = path.read_text().replace('"energy"', '"energy2"', 1)
    path.write_text(text)
    with pytest.raises(UserError, match="checksum mismatch"):
        PVTTableModel.load(path)


def column_table(seed: int = 0, per_point: int = 3000) -> pd.DataFrame:
    """A column sweep in the column characterization's format: code = ideal + error with a
    per-corner offset; ideal code 20 never occurs; 3 % of conversions failed."""
    rng = np.random.default_rng(seed)
    frames = []
    for corner, mu in (("NOM", 0.0), ("SS", -0.6)):
        for vdd in (0.9, 1.0, 1.1):
            mac = rng.integers(0, 320, per_point)
            mac = mac[(mac // 10) != 20]
            ideal = mac // 10
            code = np.clip(ideal + np.round(rng.normal(mu, 0.7, mac.size)), 0, 31)
            failed = rng.random(mac.size) < 0.03
            frames.append(pd.DataFrame({
                "corner": corner, "vdd": vdd, "temp": 27.0,
                "sample": np.arange(mac.size) % 20, "seed": 5, "mac_ideal": mac,
                "code_ideal": ideal, "code": np.where(failed, np.nan, code),
                "status": np.where(failed, "failed", "ok")}))
    return pd.concat(frames, ignore_index=True)


def test_fit_error_model_from_a_column_sweep():
    table = column_table()
    model = fit_error_model(table, 32, {"seed": 5})
    assert len(model.points) == 6
    assert model.nominal == ("NOM", 1.0, 27.0)
    prov = model.provenance
    assert prov["rows_failed"] == int((table["status"] == "failed").sum()) > 0
    assert prov["interpolated_codes"]["SS/0.9V/27C"] == [20]
    ss = model.table("SS", 0.9, 27)
    assert ss.interpolated[20] and ss.count[20] == 0
    seen = np.arange(2, 30) != 20  # away from the saturating ends
    codes = np.arange(2, 30)[seen]
    # about 90 conversions per code: the mean is within 4 * 0.75 / sqrt(90) = 0.32 LSB
    assert np.all(np.abs(ss.mean_error()[codes] + 0.6) < 0.32)
    assert abs(model.table("NOM", 1.0).mean_error()[codes].mean()) < 0.06
    assert ss.mac_lo[5] == 50 and ss.mac_hi[5] == 59
    assert np.isnan(ss.mac_lo[20])
    assert "fit_quality" in prov and prov["fit_quality"]["NOM/1V/27C"]["ks_max"] < 0.3


def test_fit_error_model_refuses_bad_tables():
    table = column_table(per_point=200)
    with pytest.raises(UserError, match="missing column.*code_ideal"):
        fit_error_model(table.drop(columns="code_ideal"), 32, {})
    with pytest.raises(UserError, match="outside 0..15"):
        fit_error_model(table, 16, {})
    bad = table.copy()
    bad.loc[bad["vdd"] == 0.9, "status"] = "failed"
    with pytest.raises(UserError, match="no successful conversion at NOM/0.9V/27C"):
        fit_error_model(bad, 32, {})


def test_load_sweep_errors(tmp_path):
    with pytest.raises(UserError, match="sweep folder not found"):
        load_sweep(tmp_path / "nope")
    with pytest.raises(UserError, match="no table.parquet"):
        load_sweep(tmp_path)
    (tmp_path / "table.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="unreadable Parquet"):
        load_sweep(tmp_path)
    column_table(per_point=10).to_parquet(tmp_path / "table.parquet")
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="unreadable manifest"):
        load_sweep(tmp_path)
