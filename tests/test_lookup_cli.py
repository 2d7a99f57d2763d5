"""``charact fit``, ``show`` and ``export`` end to end on small synthetic sweep folders
written in the column and sense-amplifier table formats."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from charact.cli import main
from charact.lookup import ErrorModel

MANIFEST = {"spec": {"block": "column", "corners": ["NOM", "SS"]},
            "technology": {"name": "freepdk45", "nominal_vdd": 1.0},
            "ngspice_version": "39", "code_revision": "test", "seed": 7,
            "timings": {"job0": 1.25, "job1": 1.5}}


def write_column_sweep(d, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = []
    for corner, mu in (("NOM", 0.2), ("SS", -0.7)):
        for temp in (27.0, 125.0):
            mac = rng.integers(-64, 64, 1500)
            ideal = (mac + 64) // 4
            code = np.clip(ideal + np.round(rng.normal(mu, 0.8, mac.size)), 0, 31)
            failed = rng.random(mac.size) < 0.02
            frames.append(pd.DataFrame({
                "corner": corner, "vdd": 1.0, "temp": temp, "sample": np.arange(mac.size) % 8,
                "seed": 7 + np.arange(mac.size) % 8, "status": np.where(failed, "failed", "ok"),
                "mac_ideal": mac, "code_ideal": ideal, "code": np.where(failed, np.nan, code)}))
    table = pd.concat(frames, ignore_index=True)
    d.mkdir(parents=True, exist_ok=True)
    table.to_parquet(d / "table.parquet")
    (d / "manifest.json").write_text(json.dumps(MANIFEST))
    return table


def test_fit_show_export_column_sweep(tmp_path, capsys):
    sweep = tmp_path / "results" / "col"
    table = write_column_sweep(sweep)
    model_path = tmp_path / "models" / "col.json"
    assert main(["fit", str(sweep), "-o", str(model_path)]) == 0
    assert "code_error model, 4 PVT point(s)" in capsys.readouterr().out
    model = ErrorModel.load(model_path)
    prov = model.provenance
    assert prov["code_revision"] == "test" and prov["seed"] == 7
    assert prov["technology"]["name"] == "freepdk45"
    assert prov["command"].startswith(f"charact fit {sweep}")
    assert prov["rows_failed"] == int((table["status"] != "ok").sum())
    assert model.nominal == ("NOM", 1.0, 27.0)

    png = tmp_path / "fig.png"
    assert main(["show", str(model_path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for text in ("code_error", "charact.lookup/2", "NOM/1V/27C *", "SS/1V/125C", "freepdk45"):
        assert text in out
    assert png.stat().st_size > 10_000

    assert main(["export", str(model_path), "--csv", "--parquet"]) == 0
    csv = tmp_path / "models" / "col.error_table.csv"
    df = pd.read_csv(csv)
    assert len(df) == 4 * 32  # one row per ideal code per PVT point
    assert {"corner", "vdd", "temp", "code_ideal", "mac_lo", "mac_hi", "count", "mean_error",
            "sigma", "q01", "q05", "q25", "q50", "q75", "q95", "q99"} <= set(df.columns)
    ss = df[(df.corner == "SS") & (df.temp == 27.0) & df.code_ideal.between(3, 28)]
    assert abs(ss.mean_error.mean() + 0.7) < 0.1
    assert np.all(ss.q05 <= ss.q50) and np.all(ss.q50 <= ss.q95)
    side = json.loads((tmp_path / "models" / "col.error_table.provenance.json").read_text())
    assert side["source"] == str(model_path) and side["model_provenance"]["seed"] == 7
    meta = pq.read_schema(tmp_path / "models" / "col.error_table.parquet").metadata
    assert json.loads(meta[b"charact.provenance"])["source"] == str(model_path)

    # exporting the sweep itself gives the raw empirical table of the observed codes
    assert main(["export", str(sweep), "-o", str(tmp_path / "out")]) == 0
    raw = pd.read_csv(tmp_path / "out" / "error_table.csv")
    ok = table[table.status == "ok"]
    n_obs = ok.groupby(["corner", "temp"])["code_ideal"].nunique().sum()
    assert len(raw) == n_obs and raw["count"].min() >= 1
    grp = ok.assign(err=ok.code - ok.code_ideal).groupby(["corner", "temp", "code_ideal"])
    want = grp["err"].agg(["mean", "count"]).reset_index()
    merged = raw.merge(want, on=["corner", "temp", "code_ideal"])
    assert np.allclose(merged["mean_error"], merged["mean"])
    assert np.array_equal(merged["count_x"], merged["count_y"])


def test_fit_pvt_table_sweep(tmp_path, capsys):
    sweep = tmp_path / "sa"
    sweep.mkdir()
    rows = [{"corner": c, "vdd": v, "temp": t, "vcm": vcm, "sample": s, "seed": s,
             "status": "ok", "offset": 0.001 * s, "delay": 1e-10 / v, "energy": 1e-15 * v * v}
            for c in ("NOM", "FF") for v in (0.8, 1.0, 1.2) for t in (-40.0, 125.0)
            for vcm in (0.3, 0.4) for s in range(3)]
    pd.DataFrame(rows).to_parquet(sweep / "table.parquet")
    (sweep / "manifest.json").write_text(json.dumps(
        {**MANIFEST, "spec": {"block": "sense_amp", "conditions": {
            "corner": ["NOM", "FF"], "vdd": [0.8, 1.0, 1.2], "vcm": [0.3, 0.4]}}}))
    out = tmp_path / "sa.json"
    assert main(["fit", str(sweep), "-o", str(out), "--values", "delay,energy"]) == 0
    assert "delay@vcm=0.3" in capsys.readouterr().out
    assert main(["show", str(out)]) == 0
    assert "corner FF: vdd 0.8, 1, 1.2 V" in capsys.readouterr().out
    assert main(["export", str(out)]) == 0
    df = pd.read_csv(tmp_path / "sa.pvt_table.csv")
    assert len(df) == 2 * 3 * 2 * 4  # corners x vdd x temp x (2 values x 2 vcm)
    row = df[(df.corner == "FF") & (df.vdd == 0.8) & (df.name == "delay@vcm=0.4")]
    assert row["mean"].iloc[0] == pytest.approx(1.25e-10)
    # the sweep folder itself exports the same grid, split by the spec's vcm condition
    assert main(["export", str(sweep)]) == 0
    raw = pd.read_csv(sweep / "pvt_table.csv")
    assert "offset@vcm=0.3" in set(raw.name) and "vcm" not in set(raw.name)


def _one_line_error(capsys, text: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("charact: error:") and text in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    sweep = tmp_path / "col"
    write_column_sweep(sweep)
    model_path = tmp_path / "m.json"
    assert main(["fit", str(sweep), "-o", str(model_path)]) == 0
    capsys.readouterr()
    text = model_path.read_text()

    bad = tmp_path / "bad.json"
    bad.write_text(text[:-200])
    assert main(["show", str(bad)]) == 2
    _one_line_error(capsys, "truncated")
    assert main(["export", str(bad), "--csv"]) == 2
    _one_line_error(capsys, "truncated")
    assert not list(tmp_path.glob("bad.error_table*"))

    doc = json.loads(text)
    doc["data"]["points"][0]["prob"][5][5] = 0.5
    bad.write_text(json.dumps(doc))
    assert main(["show", str(bad), "--plot", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "checksum mismatch")
    assert not (tmp_path / "x.png").exists()

    doc = json.loads(text)
    doc["schema"] = "charact.lookup/9"
    bad.write_text(json.dumps(doc))
    assert main(["show", str(bad)]) == 2
    _one_line_error(capsys, "unsupported schema version 'charact.lookup/9'")

    out = tmp_path / "new.json"
    assert main(["fit", str(tmp_path / "absent"), "-o", str(out)]) == 2
    _one_line_error(capsys, "sweep folder not found")
    (sweep / "table.parquet").write_bytes((sweep / "table.parquet").read_bytes()[:300])
    assert main(["fit", str(sweep), "-o", str(out)]) == 2
    _one_line_error(capsys, "unreadable Parquet")
    assert main(["fit", str(sweep), "-o", str(tmp_path / "m.txt")]) == 2
    _one_line_error(capsys, "must end in .json")
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
