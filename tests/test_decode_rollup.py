"""Decode roll-up: gain-cell attention and topkima per generated token against L."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from charact.cli import main
from charact.paths import models_dir
from charact.rollup.decode import (
    DecodeInputs,
    GainCellModels,
    gaincell_step,
    gather_decode_inputs,
    read_gaincell_models,
    run_decode,
    shipped_gaincell_models,
    split_k,
    topkima_step,
)
from charact.rollup.module import ArchParams, read_latency

LENGTHS = (16, 100, 256, 257, 700, 1024, 1500, 3000, 5000, 9000)


@pytest.fixture(scope="module")
def setup():
    return gather_decode_inputs()


def test_topkima_grows_with_length(setup):
    res = run_decode(setup, LENGTHS)
    t = [c.t_total for c in res.topkima]
    e = [c.e_total for c in res.topkima]
    assert all(b >= a for a, b in zip(t, t[1:], strict=False))
    assert all(b > a for a, b in zip(e, e[1:], strict=False))
    assert t[-1] > t[0]  # sub-top-k past k arrays and the A·V adder tree add time
    # one array per 256 keys, at least one selection per array
    by_len = {c.length: c for c in res.topkima}
    assert by_len[256].arrays == 1 and by_len[257].arrays == 2
    assert by_len[9000].arrays == math.ceil(9000 / 256) == by_len[9000].selected
    assert by_len[257].selected == by_len[256].selected == setup.topkima.macro.k


def test_gaincell_bounded_by_window(setup):
    dec = setup.decode
    arch = setup.topkima.arch
    w = dec.window
    costs = [gaincell_step(dec, arch, n) for n in (10, w // 2, w, 2 * w, 8 * w)]
    assert len({c.t_total for c in costs}) == 1  # columns in parallel: no L in the latency
    assert costs[0].e_total < costs[1].e_total < costs[2].e_total
    assert costs[2].e_total == costs[3].e_total == costs[4].e_total
    assert costs[4].attended == w
    small = gaincell_step(replace(dec, window=w // 4), arch, 8 * w)
    assert small.e_total < costs[4].e_total


def test_write_energy_scales_with_head_size_and_layers(setup):
    dec, top = setup.decode, setup.topkima
    base = gaincell_step(dec, top.arch, 500).energy["write"]
    assert gaincell_step(replace(dec, d_head=2 * dec.d_head), top.arch, 500) \
        .energy["write"] == pytest.approx(2 * base)
    assert gaincell_step(replace(dec, n_layers=3 * dec.n_layers), top.arch, 500) \
        .energy["write"] == pytest.approx(3 * base)
    tk = topkima_step(top, dec, 500).energy["write"]
    assert topkima_step(top, replace(dec, n_layers=2 * dec.n_layers), 500) \
        .energy["write"] == pytest.approx(2 * tk)
    wide = gather_decode_inputs({"d_head": (2 * dec.d_head, "test")})
    assert topkima_step(wide.topkima, wide.decode, 500).energy["write"] == pytest.approx(2 * tk)


def test_topkima_one_query_matches_the_macro_equation(setup):
    """With one crossbar, the Q·Kᵀ + softmax time per layer is eq. (4)'s per-query part."""
    top, dec = setup.topkima, setup.decode
    m = top.macro
    c = topkima_step(top, dec, 200)
    ima = max(m.alpha * m.t_ima + m.t_arb, m.t_clk_ima + m.k * m.t_arb)
    per_layer = {b: v / dec.n_layers for b, v in c.latency.items()}
    assert per_layer["softmax"] == pytest.approx(m.k * m.t_nl)
    assert per_layer["write"] == pytest.approx(m.t_wr)
    arch = top.arch
    av = read_latency(arch, 1)
    assert per_layer["mac"] + per_layer["readout_adc"] + per_layer["digital"] \
        == pytest.approx(m.t_pwm + ima + av)


def test_split_k():
    assert split_k(5, [256, 256]) == [3, 2]
    assert split_k(5, [256] * 8) == [1] * 8
    assert split_k(5, [256, 1]) == [4, 1]
    assert split_k(5, [2]) == [2]


def test_retention_limits_the_window(setup):
    res = run_decode(setup, (128,))
    hot, cold = sorted(res.retention, key=lambda r: r.temp, reverse=True)
    assert hot.temp == 85 and cold.temp == 27
    assert hot.t_ret < cold.t_ret and hot.w_max <= cold.w_max
    assert cold.w_max == int(cold.t_ret // cold.t_step)
    long_step = gather_decode_inputs({"t_step": (1e-12, "test")})
    ok = run_decode(long_step, (128,)).retention
    assert all(r.ok and r.refresh_writes == 0 for r in ok)


def _scaled_write_model(dst: Path, quantity: str, factor: float) -> Path:
    """The shipped write model with ``quantity`` scaled, saved as a valid model file."""
    from charact.lookup.pvt_table import PVTTableModel

    model = PVTTableModel.load(models_dir() / "gaincell_write_freepdk45.json")
    for grid in model.grids.values():
        for name, st in grid.stats.items():
            if name.startswith(quantity + "@"):
                st["mean"] = st["mean"] * factor
    model.save(dst)
    return dst


def test_model_values_change_the_result(tmp_path):
    shipped = shipped_gaincell_models()
    assert shipped.write and shipped.readout and shipped.multiply and shipped.retention
    base_vals, _ = read_gaincell_models(shipped)
    assert set(base_vals) >= {"gc_t_write", "gc_e_write_cell", "gc_t_max", "gc_e_mult",
                              "gc_t_ret_27", "gc_t_ret_85"}
    base = run_decode(gather_decode_inputs(models=shipped), (2048,))
    hot = _scaled_write_model(tmp_path / "w.json", "e_write", 3.0)
    res = run_decode(gather_decode_inputs(models=replace(shipped, write=str(hot))), (2048,))
    assert res.gaincell[0].energy["write"] == pytest.approx(3 * base.gaincell[0].energy["write"])
    # and the model's values differ from the defaults somewhere
    d = gather_decode_inputs(models=shipped)
    assert d.provenance["decode.gc_t_write"].startswith("measured:")
    explicit = gather_decode_inputs({"gc_t_write": (7e-9, "test")}, models=shipped)
    assert explicit.decode.gc_t_write == 7e-9
    assert any("overrides measured" in n for n in explicit.notes)


def test_wrong_model_for_a_slot():
    shipped = shipped_gaincell_models()
    from charact.errors import UserError

    with pytest.raises(UserError, match="gc_retention model, expected a gc_multiply"):
        read_gaincell_models(GainCellModels(multiply=shipped.retention))
    with pytest.raises(UserError, match="expected 'pvt_table'"):
        read_gaincell_models(GainCellModels(write=shipped.readout))


BAD = [
    (["--window", "0"], "decode.window must be a positive integer"),
    (["--lengths", "64,abc"], "context length 'abc' is not an integer"),
    (["--set", "decode.gc_t_max=-1"], "decode.gc_t_max must be a non-negative"),
    (["--set", "decode.nope=1"], "unknown decode input decode.nope"),
    (["--gc-write", "/nonexistent/w.json"], "not found"),
    (["--set", "macro.k=0"], "k must be in"),
]


@pytest.mark.parametrize(("argv", "text"), BAD)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, text):
    out = tmp_path / "out"
    assert main(["decode", *argv, "-o", str(out), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and text in err and err.startswith("charact: error:")
    assert not out.exists() or not any(out.iterdir())


def test_bad_config_section(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[decod]\nwindow = 3\n")
    assert main(["decode", "--config", str(cfg), "-o", str(tmp_path / "o")]) == 2
    assert "unknown section(s) decod" in capsys.readouterr().err


def test_command_writes_its_files(tmp_path, capsys):
    out = tmp_path / "dec"
    cfg = Path(__file__).resolve().parent.parent / "examples" / "decode_rollup.toml"
    assert main(["decode", "--config", str(cfg), "--lengths", "128,1024,4096",
                 "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"decode_per_token.csv", "decode_retention.csv", "decode_inputs.csv",
                     "report.md", "decode_vs_length.png", "provenance.json"}
    import pandas as pd

    df = pd.read_csv(out / "decode_per_token.csv", comment="#")
    assert sorted(set(df["length"])) == [128, 1024, 4096]
    assert set(df["arch"]) == {"gaincell", "topkima"}
    buckets = [c for c in df.columns if c.startswith("e_") and c != "e_total_J"]
    assert df[buckets].sum(axis=1).to_numpy() == pytest.approx(df["e_total_J"].to_numpy())
    text = (out / "decode_per_token.csv").read_text()
    assert text.startswith("# command: charact decode")
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["model_files"]) == {"write", "readout", "multiply", "retention"}
    assert all(len(v["sha256"]) == 64 for v in prov["model_files"].values())
    assert "Gain-cell retention" in (out / "report.md").read_text()
    # same inputs, same numbers
    out2 = tmp_path / "dec2"
    assert main(["decode", "--config", str(cfg), "--lengths", "128,1024,4096",
                 "-o", str(out2), "--no-figures"]) == 0
    df2 = pd.read_csv(out2 / "decode_per_token.csv", comment="#")
    pd.testing.assert_frame_equal(df, df2)


def test_defaults_are_the_shipped_models_rounded():
    """The gain-cell defaults name the shipped models: they agree within rounding."""
    vals, _ = read_gaincell_models(shipped_gaincell_models())
    d = DecodeInputs()
    for name in ("gc_t_write", "gc_e_write_cell", "gc_e_mult", "gc_t_ret_27", "gc_t_ret_85"):
        assert getattr(d, name) == pytest.approx(vals[name][0], rel=0.01), name
    assert ArchParams().xbar_cols == 256
