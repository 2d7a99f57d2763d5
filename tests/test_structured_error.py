"""Structured code-error models: per-column static part (offset b, gain error g) as a
random effect plus per-conversion noise; fitting, file format (schema 2, schema 1 still
read), injection per simulated chip, and the ``charact accuracy --chips/--pvt`` flags.

Every synthetic sweep here is made by the model itself::

    code = clip(floor(c + b_j + g_j (c - 15.5) + u) + r, 0, 31),  u ~ U[0, 1), r in {-1, 0, 1}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charact.cli import main
from charact.errors import UserError
from charact.lookup import PVT, ErrorModel, error_model_from_samples
from charact.lookup import fileformat as ff
from charact.lookup.export import error_table_frame, load_model, summary
from charact.lookup.fit import fit_error_model
from charact.lookup.structured import ChipColumnErrors, PointErrorModel, StaticPart

REPO = Path(__file__).resolve().parent.parent
N_CODES = 32
CENTER = 15.5
MU = (0.3, 0.01)  # mean b (LSB), mean g (LSB per code)
SIGMA_B, SIGMA_G, RHO = 0.8, 0.03, 0.3
RESID = (0.1, 0.8, 0.1)  # P(r = -1, 0, 1)
MANIFEST = {"spec": {"block": "ima_column"}, "technology": {"name": "freepdk45",
                                                           "nominal_vdd": 1.0},
            "code_revision": "test", "seed": 3}


def column_sweep(n_cols: int = 300, per_col: int = 40, seed: int = 0,
                 points=(("NOM", 1.0, 27.0), ("SS", 1.0, 125.0)), sigma_b: float = SIGMA_B,
                 sigma_g: float = SIGMA_G, mu=MU, die=None) -> pd.DataFrame:
    """A column sweep table drawn from the structured model (codes 4..27: no clipping)."""
    rng = np.random.default_rng(seed)
    cov = np.array([[sigma_b**2, RHO * sigma_b * sigma_g], [RHO * sigma_b * sigma_g,
                                                             sigma_g**2]])
    frames = []
    for corner, vdd, temp in points:
        bg = rng.multivariate_normal(mu, cov, n_cols)
        col = np.repeat(np.arange(n_cols), per_col)
        c = rng.integers(4, 28, col.size)
        e = bg[col, 0] + bg[col, 1] * (c - CENTER)
        r = rng.choice([-1, 0, 1], size=col.size, p=RESID)
        code = np.clip(np.floor(c + e + rng.random(col.size)) + r, 0, N_CODES - 1)
        frames.append(pd.DataFrame({
            "corner": corner, "vdd": vdd, "temp": temp, "seed": 3,
            "die": col // 8 if die is None else die, "col": col % 8 if die is None else col,
            "code": code, "code_ideal": c, "mac_ideal": 4 * c, "status": "ok"}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> ErrorModel:
    return fit_error_model(column_sweep(), N_CODES, {"seed": 3})


def _within(est: float, true: float, se: float, k: float = 4.0) -> bool:
    return abs(est - true) <= k * se


# --- fit -------------------------------------------------------------------------------

def test_fit_recovers_the_column_spread_within_its_standard_error(fitted):
    assert fitted.structured and set(fitted.points) == {("NOM", 1.0, 27.0), ("SS", 1.0, 125.0)}
    for p in fitted.points:
        st = fitted.point(*p).static.stats
        assert st["n_columns"] == 300 and st["conversions"] == 300 * 40
        # the tolerance is 4 standard errors, and those are tight: an estimate 25 % off
        # (e.g. the raw spread of the per-column estimates) would fail
        for name, true in (("sigma_b", SIGMA_B), ("sigma_g", SIGMA_G), ("mean_b", MU[0]),
                           ("mean_g", MU[1])):
            assert _within(st[name], true, st[f"{name}_se"]), (p, name, st[name], true)
        assert 4 * st["sigma_b_se"] < 0.25 * SIGMA_B and 4 * st["sigma_g_se"] < 0.25 * SIGMA_G
        assert _within(st["cov_bg"], RHO * SIGMA_B * SIGMA_G, st["cov_bg_se"])
        # the per-conversion table: mostly no error, about symmetric, 1 LSB steps
        res = fitted.point(*p).residual
        inner = slice(6, 26)
        p0 = np.mean([res.prob[i, i] for i in range(32)][inner])
        assert abs(p0 - RESID[1]) < 0.08
        assert np.abs(res.mean_error()[inner]).mean() < 0.05
        assert res.count.sum() == 300 * 40


def test_naive_spread_of_the_column_estimates_is_not_what_is_reported():
    """With few conversions per column the estimates' own noise dominates; the method of
    moments removes it, and the raw spread lies far outside the reported tolerance."""
    table = column_sweep(n_cols=1000, per_col=6, points=(("NOM", 1.0, 27.0),), sigma_b=0.3,
                         sigma_g=0.01)
    st = fit_error_model(table, N_CODES, {}).point().static.stats
    assert _within(st["sigma_b"], 0.3, st["sigma_b_se"])
    naive = [np.polyfit(h["code_ideal"] - CENTER, h["code"] - h["code_ideal"], 1)[1]
             for _, h in table.groupby(["die", "col"])]
    assert len(naive) == 1000
    assert abs(np.std(naive, ddof=1) - 0.3) > 4 * st["sigma_b_se"]


def test_thin_sweeps_are_refused_unless_asked_to_fall_back():
    thin = column_sweep(n_cols=20, per_col=2, points=(("NOM", 1.0, 27.0),))
    with pytest.raises(UserError, match="fewer than 3 conversions") as exc:
        fit_error_model(thin, N_CODES, {})
    assert "\n" not in str(exc.value) and "--unstructured" in str(exc.value)
    one = column_sweep(n_cols=1, per_col=50, points=(("NOM", 1.0, 27.0),))
    with pytest.raises(UserError, match=r"1 column\(s\) with mismatch \(need >= 2\)"):
        fit_error_model(one, N_CODES, {})
    flat = thin.assign(code_ideal=10, code=11)
    flat = pd.concat([flat, flat.iloc[:20]], ignore_index=True)
    with pytest.raises(UserError):
        fit_error_model(flat, N_CODES, {}, structured=True)
    pooled = fit_error_model(thin, N_CODES, {}, structured=False)
    assert not pooled.structured and pooled.point().static is None
    fell = fit_error_model(thin, N_CODES, {}, fallback=True)
    assert not fell.structured and "NOM/1V/27C" in fell.provenance["static_skipped"]
    # the pooled table is the same as without the static fit
    assert np.array_equal(fell.table().prob, pooled.table().prob)
    with pytest.raises(UserError, match="needs the columns seed, die, col"):
        fit_error_model(thin.drop(columns=["die"]), N_CODES, {}, structured=True)


def test_nominal_devices_have_a_common_offset_and_no_spread():
    table = column_sweep(n_cols=40, per_col=30, points=(("NOM", 1.0, 27.0),), sigma_b=0.0,
                         sigma_g=0.0, mu=(0.7, -0.02), die=-1)
    static = fit_error_model(table, N_CODES, {}).point().static
    st = static.stats
    assert st["nominal_only"] and np.all(static.cov == 0)
    assert _within(st["mean_b"], 0.7, st["mean_b_se"]) and st["mean_b_se"] < 0.05
    assert _within(st["mean_g"], -0.02, st["mean_g_se"])
    # with mismatch rows at the same point, the nominal ones are left out and counted
    mixed = pd.concat([table, column_sweep(n_cols=50, per_col=10,
                                           points=(("NOM", 1.0, 27.0),))], ignore_index=True)
    st = fit_error_model(mixed, N_CODES, {}).point().static.stats
    assert st["nominal_rows_excluded"] == 40 * 30 and st["n_columns"] == 50


# --- file format -----------------------------------------------------------------------

SCHEMA_1_FILES = sorted(p for p in (REPO / "models").glob("*.json")
                        if json.loads(p.read_text()).get("schema") == "charact.lookup/1")


def test_the_shipped_column_and_sa_models_are_schema_1():
    # the files the next test reads: the reference set made before schema 2
    names = {p.name for p in SCHEMA_1_FILES}
    assert {"column_freepdk45.json", "sense_amp_freepdk45.json",
            "digital_freepdk45.json"} <= names


@pytest.mark.parametrize("path", SCHEMA_1_FILES, ids=lambda p: p.name)
def test_shipped_schema_1_files_still_load(path, tmp_path):
    doc = json.loads(path.read_text())
    assert doc["schema"] == ff.SCHEMA_V1
    model = load_model(path)
    assert model.schema == ff.SCHEMA_V1
    assert f"schema           {ff.SCHEMA_V1}" in summary(model, path)
    if doc["kind"] != "code_error":
        return
    assert not model.structured and model.point().static is None
    assert model.point().residual is model.table()
    # saved again, it is a schema 2 file with the same tables
    model.save(tmp_path / "again.json")
    back = ErrorModel.load(tmp_path / "again.json")
    assert back.schema == ff.SCHEMA and json.loads(
        (tmp_path / "again.json").read_text())["schema"] == "charact.lookup/2"
    for p in model.points:
        assert np.array_equal(back.table(*p).prob, model.table(*p).prob)
        assert back.structure(p) is None
    assert len(error_table_frame(model)) == 32 * len(model.points)


def test_structured_round_trip_and_damage(tmp_path, fitted):
    path = tmp_path / "m.json"
    fitted.save(path)
    back = ErrorModel.load(path)
    assert back.schema == ff.SCHEMA and back.structured and back.nominal == fitted.nominal
    for p in fitted.points:
        a, b = fitted.point(*p), back.point(*p)
        assert np.array_equal(a.static.mean, b.static.mean)
        assert np.array_equal(a.static.cov, b.static.cov)
        assert a.static.center == b.static.center == CENTER
        assert a.static.stats == b.static.stats
        assert np.array_equal(a.residual.prob, b.residual.prob)
        assert np.array_equal(a.table.prob, b.table.prob)
    entry = json.loads(path.read_text())["data"]["points"][0]["structure"]
    assert set(entry) == {"static", "residual"}
    assert set(entry["static"]) == {"mean", "cov", "center", "stats"}

    def rewrite(edit, name):
        doc = json.loads(path.read_text())
        edit(doc)
        doc["checksum"] = ff.checksum_of(doc)
        bad = tmp_path / name
        bad.write_text(json.dumps(doc))
        return bad

    not_psd = rewrite(lambda d: d["data"]["points"][0]["structure"]["static"].update(
        cov=[[1.0, 2.0], [2.0, 1.0]]), "psd.json")
    with pytest.raises(UserError, match=r"points\[0\].structure.static.*semi-definite"):
        ErrorModel.load(not_psd)
    old = rewrite(lambda d: d.update(schema="charact.lookup/1"), "old.json")
    with pytest.raises(UserError, match="'structure' needs schema 'charact.lookup/2'"):
        ErrorModel.load(old)
    # show and export carry the static part
    text = summary(back, path)
    assert "static part per column" in text and "300" in text
    frame = error_table_frame(back)
    assert frame["structured"].all() and frame["n_columns"].eq(300).all()
    nom = frame[frame.corner == "NOM"]
    st = back.point("NOM").static
    assert np.allclose(nom["static_mean_error"], st.mean_error(np.arange(32)))
    assert np.all(nom["static_sigma"] > 0.5)


# --- injection per chip ----------------------------------------------------------------

def _point(sigma_b=SIGMA_B, sigma_g=SIGMA_G, mean=MU) -> PointErrorModel:
    """A structured point with a symmetric zero-mean residual (r = -1, 0, 1)."""
    rng = np.random.default_rng(5)
    ideal = rng.integers(0, N_CODES, 100_000)
    noisy = np.clip(ideal + rng.choice([-1, 0, 1], ideal.size, p=RESID), 0, N_CODES - 1)
    residual = error_model_from_samples(ideal, noisy, N_CODES, smoothing=0.0).table()
    cov = np.array([[sigma_b**2, 0.0], [0.0, sigma_g**2]])
    return PointErrorModel(PVT("NOM", 1.0, 27.0), residual, residual,
                           StaticPart(np.array(mean), cov, CENTER))


def _ideal(shape, seed=0):
    return np.random.default_rng(seed).integers(4, 28, shape)  # no clipping at the ends


def _check_column_means(chip: ChipColumnErrors, ideal: np.ndarray, out: np.ndarray) -> None:
    """Per column (head h, column j) the mean code error over its conversions matches its
    static draw's b + g (c - 15.5) averaged over the same codes, within 4 standard errors
    (the residual is symmetric, so it adds no mean)."""
    h, n = ideal.shape[-3], ideal.shape[-1]
    err = (out - ideal).astype(np.float64).swapaxes(-3, 0).reshape(h, -1, n)
    want = chip.column_error(ideal).swapaxes(-3, 0).reshape(h, -1, n).mean(axis=1)
    got = err.mean(axis=1)
    se = err.std(axis=1, ddof=1) / np.sqrt(err.shape[1])
    assert np.all(np.abs(got - want) <= 4 * se + 1e-12), np.abs(got - want).max()
    b, _ = chip.static_for(h, n)
    assert b.std() > 0.4  # the columns really differ


def test_numpy_injection_per_column_mean_matches_its_static_draw():
    point = _point()
    chip = point.for_chip(7, layer=1, site="qk")
    ideal = _ideal((50, 2, 40, 12))  # (B, H, Lq, L): 2000 conversions per column
    out = chip.sample(ideal, np.random.default_rng(1))
    assert out.dtype == ideal.dtype and out.min() >= 0 and out.max() <= 31
    _check_column_means(chip, ideal, out)


def test_torch_injection_matches_static_draw_and_is_reproducible():
    torch = pytest.importorskip("torch")
    point = _point()
    chip = point.for_chip(3, layer=0, site="av")
    ideal = _ideal((50, 2, 40, 12), seed=2)
    levels = torch.as_tensor(ideal, dtype=torch.float32).contiguous()
    out = chip.sample_levels_(levels.clone(), torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and torch.equal(out, out.round())
    _check_column_means(chip, ideal, out.numpy().astype(np.int64))
    again = point.for_chip(3, layer=0, site="av").sample_levels_(
        levels.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # same chip, same generator seed: same numbers
    other_noise = chip.sample_levels_(levels.clone(), torch.Generator().manual_seed(1))
    assert not torch.equal(out, other_noise)
    ints = chip.sample(torch.as_tensor(ideal), torch.Generator().manual_seed(0))
    assert ints.dtype == torch.int64 and torch.equal(ints.float(), out)


def test_chips_layers_and_arrays_are_different_silicon():
    point = _point()
    b = {key: point.for_chip(*key).static_for(4, 65)[0]
         for key in [(0, 0, "qk"), (1, 0, "qk"), (0, 1, "qk"), (0, 0, "av")]}
    keys = list(b)
    for i, k1 in enumerate(keys):
        for k2 in keys[i + 1:]:
            assert not np.allclose(b[k1], b[k2]), (k1, k2)
    # the same chip seed is the same silicon, and a shorter sequence its prefix
    assert np.array_equal(point.for_chip(0).static_for(4, 65)[0], b[(0, 0, "qk")])
    assert np.array_equal(point.for_chip(0).static_for(4, 20)[0], b[(0, 0, "qk")][:, :20])
    # over many columns the draws have the model's spread (4 standard errors)
    bb, gg = point.for_chip(11).static_for(8, 2000)
    n = bb.size
    assert _within(bb.std(ddof=1), SIGMA_B, SIGMA_B / np.sqrt(2 * (n - 1)))
    assert _within(gg.std(ddof=1), SIGMA_G, SIGMA_G / np.sqrt(2 * (n - 1)))
    assert _within(bb.mean(), MU[0], SIGMA_B / np.sqrt(n))


def test_unbound_structured_model_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(UserError, match="bind it to a simulated chip"):
        _point().sample_levels_(torch.zeros(3, 4))
    with pytest.raises(UserError, match="bind it to a simulated chip"):
        _point().sample(np.zeros((3, 4), dtype=np.int64))


def test_static_error_is_added_before_the_top_k_selection():
    torch = pytest.importorskip("torch")
    from charact.attention.pipeline import AttentionCalibration, AttentionConfig, topkima_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    calib = AttentionCalibration(qk_lo=torch.tensor(-8.0), qk_hi=torch.tensor(8.0))
    point = _point(sigma_b=0.0, sigma_g=0.0, mean=(0.0, 0.0))
    b = np.zeros((2, 16))
    b[:, 3] = 40.0  # key 3 of both heads reads 40 LSB high on this chip
    chip = ChipColumnErrors(point.residual, point.static, fixed=(b, np.zeros((2, 16))))
    cfg = AttentionConfig.hardware(k=2)
    clean = topkima_attention(q, k, v, cfg, calib=calib, measure=True)
    hot = topkima_attention(q, k, v, cfg.with_(error_model=chip), calib=calib, measure=True,
                            generator=torch.Generator().manual_seed(0))
    assert clean.selection.selected[..., 3].float().mean() < 0.5
    assert hot.selection.selected[..., 3].all()
    assert torch.all(hot.codes[..., 3] == 31)


def test_unstructured_models_are_bit_identical_through_chips():
    torch = pytest.importorskip("torch")
    from charact.attention.pipeline import (
        AttentionCalibration,
        AttentionConfig,
        bind_chip,
        topkima_attention,
    )

    point = _point()
    table = point.table
    plain = PointErrorModel(PVT("NOM", 1.0, 27.0), table)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    calib = AttentionCalibration(qk_lo=torch.tensor(-8.0), qk_hi=torch.tensor(8.0))
    base = AttentionConfig.hardware(k=4, av_codes=32)
    outs = []
    for cfg in (base.with_(error_model=table, av_error=table),
                base.with_(error_model=plain, av_error=plain),
                bind_chip(base.with_(error_model=plain, av_error=plain), chip=5, layer=1)):
        res = topkima_attention(q, k, v, cfg, calib=calib,
                                generator=torch.Generator().manual_seed(42))
        outs.append((res.out, res.codes))
    for out, codes in outs[1:]:
        assert torch.equal(out, outs[0][0]) and torch.equal(codes, outs[0][1])


def test_evaluation_on_chips_keeps_unstructured_results_and_needs_no_training():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from charact.attention.data import load_dataset
    from charact.attention.pipeline import AttentionConfig
    from charact.attention.training import evaluate, vit_config_for
    from charact.attention.vit import TopkimaViT

    data = load_dataset("digits", 64, 40)
    torch.manual_seed(0)
    model = TopkimaViT(vit_config_for(data, 16, 1, 2))
    model.calibrate(data.x_train)
    point = _point()
    plain = PointErrorModel(PVT("NOM", 1.0, 27.0), point.table)
    hw = AttentionConfig.hardware(k=3)
    a, _ = evaluate(model, data, hw.with_(error_model=point.table, av_error=point.table), 9)
    b, _ = evaluate(model, data, hw.with_(error_model=plain, av_error=plain), 9, chip=4)
    assert a == b
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = hw.with_(error_model=point, av_error=point)
    accs = [evaluate(model, data, cfg, 9, chip=c)[0] for c in (0, 1, 0)]
    assert accs[0] == accs[2]
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


# --- commands --------------------------------------------------------------------------

def _sweep_folder(d: Path, table: pd.DataFrame) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    table.to_parquet(d / "table.parquet")
    (d / "manifest.json").write_text(json.dumps(MANIFEST))
    return d


def _one_line(capsys, *texts: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("charact: error:") and err.count("\n") == 1, err
    for t in texts:
        assert t in err, err


def test_fit_show_export_of_a_column_sweep(tmp_path, capsys):
    sweep = _sweep_folder(tmp_path / "col", column_sweep(n_cols=60, per_col=20))
    out = tmp_path / "m.json"
    assert main(["fit", str(sweep), "-o", str(out)]) == 0
    assert "per-column static part" in capsys.readouterr().out
    model = ErrorModel.load(out)
    assert model.structured and "NOM/1V/27C" in model.provenance["static_fit"]
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "charact.lookup/2" in text and "sigma b" in text and "±" in text
    assert main(["export", str(out), "--parquet", "-o", str(tmp_path / "exp")]) == 0
    frame = pd.read_parquet(tmp_path / "exp" / "m.error_table.parquet")
    assert {"static_mean_error", "static_sigma", "residual_sigma"} <= set(frame.columns)
    assert main(["export", str(sweep), "-o", str(tmp_path / "raw")]) == 0
    assert pd.read_csv(tmp_path / "raw" / "error_table.csv")["structured"].all()

    thin = _sweep_folder(tmp_path / "thin", column_sweep(n_cols=16, per_col=2))
    assert main(["fit", str(thin), "-o", str(tmp_path / "t.json")]) == 2
    _one_line(capsys, "fewer than 3 conversions", "--unstructured")
    assert not (tmp_path / "t.json").exists()
    assert main(["fit", str(thin), "-o", str(tmp_path / "t.json"), "--unstructured"]) == 0
    assert not ErrorModel.load(tmp_path / "t.json").structured
    # a thin sweep still exports its raw table
    assert main(["export", str(thin), "-o", str(tmp_path / "raw2")]) == 0


@pytest.fixture(scope="module")
def structured_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "colmodel.json"
    fit_error_model(column_sweep(n_cols=60, per_col=20), N_CODES, {}).save(path)
    return path


SMALL = ["accuracy", "--quick", "--k", "2", "--scheme", "tfcbp", "--crossbar", "none",
         "--epochs", "1", "--n-train", "200", "--n-test", "60", "--dim", "16", "--heads", "2",
         "--depth", "1", "--jobs", "1", "--error-k", "2", "--crossbar-k", "2",
         "--stats-queries", "2"]


def test_accuracy_chips_and_pvt_on_the_quick_path(tmp_path, capsys, monkeypatch,
                                                  structured_file):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import charact.attention.experiment as acc

    trained = []
    real = acc.train_model

    def counting(*args, **kwargs):
        trained.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(acc, "train_model", counting)
    assert main([*SMALL, "--error-model", str(structured_file), "--chips", "2",
                 "--pvt", "SS/1/125", "--run", "t", "--out", str(tmp_path / "acc")]) == 0
    run = tmp_path / "acc" / "t"
    table = pd.read_parquet(run / "accuracy.parquet")
    # one training per model (full softmax, TFCBP k=2), whatever the number of chips
    assert len(trained) == table["trained_as"].nunique() == 2
    assert len(table) == 3 and (table["error"] == "colmodel").sum() == 2
    err = table[(table["error"] == "colmodel") & (table["scheme"] == "tfcbp")].iloc[0]
    assert err["n_chips"] == 2 and err["pvt"] == "SS/1V/125C" and err["structured"]
    for col in ("accuracy_se", "accuracy_p05", "accuracy_p05_se", "accuracy_min",
                "accuracy_std"):
        assert col in table.columns
    chips = pd.read_parquet(run / "chip_accuracy.parquet")
    assert len(chips) == 4 and set(chips["pvt"]) == {"SS/1V/125C"}
    chips = chips[chips["run_id"] == err["run_id"]]
    assert sorted(chips["chip"]) == [0, 1]
    assert err["accuracy"] == pytest.approx(chips["accuracy"].mean())
    assert err["accuracy_min"] == chips["accuracy"].min()
    clean = table[table["error"] == "none"].iloc[0]
    assert clean["n_chips"] == 1 and clean["pvt"] == ""
    md = (run / "accuracy.md").read_text()
    assert "chip p5 %" in md and "SS/1V/125C" in md and "2 simulated chip(s)" in md
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["error_models"][0]["pvt"] == "SS/1V/125C"
    assert prov["chips"]["per_error_case"] == 2


@pytest.mark.parametrize("pvt,message", [
    ("FF/1/27", "unknown corner 'FF'"),
    ("SS/0.9/125", "no PVT point SS/0.9/125"),
    ("SS-1-125", "bad --pvt 'SS-1-125'; use CORNER/VDD/TEMP"),
    ("SS/x/125", "VDD and TEMP must be numbers"),
])
def test_accuracy_bad_pvt_is_one_line_before_training(tmp_path, capsys, monkeypatch,
                                                      structured_file, pvt, message):
    pytest.importorskip("torch")
    import charact.attention.experiment as acc

    def no_training(*args, **kwargs):
        raise AssertionError("training was planned")

    monkeypatch.setattr(acc, "plan_jobs", no_training)
    out = tmp_path / "acc"
    assert main([*SMALL, "--error-model", str(structured_file), "--pvt", pvt,
                 "--out", str(out)]) == 2
    _one_line(capsys, message)
    assert not out.exists()


def test_accuracy_chip_flags_are_checked(tmp_path, capsys, structured_file):
    pytest.importorskip("torch")
    model = ["--error-model", str(structured_file)]
    assert main([*SMALL, *model, "--chips", "0", "--out", str(tmp_path)]) == 2
    _one_line(capsys, "--chips must be >= 1, got 0")
    # no error model (an empty --error-model): nothing for the flags to act on
    assert main([*SMALL, "--error-model", "--pvt", "SS/1/125", "--out", str(tmp_path)]) == 2
    _one_line(capsys, "--pvt applies to injected errors")
    assert main([*SMALL, "--error-model", "--chips", "3", "--out", str(tmp_path)]) == 2
    _one_line(capsys, "--chips applies to injected errors")
    assert not any(tmp_path.iterdir())


# --- the sampler's law: static part per column plus the per-conversion residual ------------

def _pooled_residual():
    """A residual with a remainder (its cell split has q > 0), asymmetric, 1-2 LSB wide."""
    rng = np.random.default_rng(5)
    ideal = rng.integers(0, N_CODES, 200_000)
    noisy = np.clip(ideal + np.rint(rng.normal(0.2, 0.8, ideal.size)).astype(int), 0,
                    N_CODES - 1)
    return error_model_from_samples(ideal, noisy, N_CODES).table()


def _exact_law(residual, code: int, e: float) -> np.ndarray:
    """P(out | ideal code, static error e) of clip(floor(c + e + u) + r)."""
    e = min(max(e, -N_CODES), N_CODES)
    fl = np.floor(e)
    frac = e - fl
    p = np.zeros(N_CODES)
    for o1 in range(N_CODES):
        for shift, w in ((fl, 1.0 - frac), (fl + 1, frac)):
            p[int(np.clip(o1 + shift, 0, N_CODES - 1))] += residual.prob[code, o1] * w
    return p


def _chi2_p(counts: np.ndarray, prob: np.ndarray) -> float:
    from scipy import stats

    if np.any(counts[prob == 0]):
        return 0.0
    expected = prob * counts.sum()
    big = expected >= 20
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    if keep.sum() < 2:  # one possible outcome: the check above was all there is
        return 1.0
    return float(stats.chisquare(obs[keep], exp[keep]).pvalue)


# offsets chosen for the carry: none, tiny, nearly sure,
# a half, beyond the clip, negative, with gain errors
FIXED_B = np.array([[0.0, 0.0015, 0.999, 0.5, 40.0, -3.2, 0.3, -0.7]])
FIXED_G = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.01, -0.02]])


@pytest.fixture(scope="module")
def cpu_draws():
    torch = pytest.importorskip("torch")
    residual = _pooled_residual()
    chip = ChipColumnErrors(residual, StaticPart(np.zeros(2), np.zeros((2, 2)), CENTER),
                            fixed=(FIXED_B, FIXED_G))
    rows = 1_000_000
    pick = torch.randint(0, 2, (rows, FIXED_B.shape[1]),
                         generator=torch.Generator().manual_seed(0))
    codes = torch.tensor([5, 31])[pick]  # two codes per column, ~500 000 draws each
    out = chip.sample_levels_(codes.float().contiguous(), torch.Generator().manual_seed(1))
    return residual, chip, codes, out


def test_sampler_draws_the_exact_law_per_column_and_code(cpu_draws):
    """~5e5 draws per (column, code): chi-square and every bin within 6 binomial sigma of
    clip(floor(c + e + u) + r); the same statistic refuses the law without the static
    part."""
    residual, chip, codes, out = cpu_draws
    for j in range(FIXED_B.shape[1]):
        for c in (5, 31):
            sel = codes[:, j] == c
            counts = np.bincount(out[:, j][sel].long().numpy(), minlength=N_CODES)
            e = FIXED_B[0, j] + FIXED_G[0, j] * (c - CENTER)
            p = _exact_law(residual, c, e)
            total = counts.sum()
            assert _chi2_p(counts, p) > 1e-4, (j, c)
            assert np.all(np.abs(counts - total * p)
                          <= 6 * np.sqrt(total * p * (1 - p)) + 1), (j, c)
            if 0.1 < abs(e) < N_CODES - 1 and not (c == 31 and e > 0):
                assert _chi2_p(counts, _exact_law(residual, c, 0.0)) < 1e-9, (j, c)


def test_sampler_is_reproducible_in_every_float_dtype(cpu_draws):
    torch = pytest.importorskip("torch")
    _, chip, codes, out = cpu_draws
    small = codes[:20_000].float().contiguous()
    a = chip.sample_levels_(small.clone(), torch.Generator().manual_seed(1))
    b = chip.sample_levels_(small.clone(), torch.Generator().manual_seed(1))
    c = chip.sample_levels_(small.clone(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        got = chip.sample_levels_(small.to(dtype), torch.Generator().manual_seed(1))
        again = chip.sample_levels_(small.to(dtype), torch.Generator().manual_seed(1))
        assert got.dtype == dtype and torch.equal(got, again), dtype
        assert float(got.min()) >= 0 and float(got.max()) <= N_CODES - 1
        assert torch.equal(got, got.round()), dtype  # integer levels in every dtype
    ints = chip.sample(small.long(), torch.Generator().manual_seed(1))
    assert torch.equal(ints.float(), a)


def test_chips_drawn_through_the_sampler_have_the_model_spread():
    """Many chips: each column's mean code error is its own b + g (c - center), and over the
    chips those means spread as the static part says (sigma_b at mid-scale)."""
    torch = pytest.importorskip("torch")
    point = _point(sigma_b=0.6, sigma_g=0.0, mean=(0.25, 0.0))
    means, truth = [], []
    ideal = torch.full((1, 1, 400, 64), 15.0)
    for chip_id in range(40):
        chip = point.for_chip(chip_id)
        out = chip.sample_levels_(ideal.clone(), torch.Generator().manual_seed(chip_id))
        means.append((out - ideal).mean(dim=2).reshape(-1).numpy())
        truth.append(chip.column_error(np.full((1, 1, 1, 64), 15)).reshape(-1))
    means, truth = np.concatenate(means), np.concatenate(truth)
    # per column: 400 conversions, residual sigma ~0.45 plus the bin's 0.5 -> se < 0.04
    assert np.abs(means - truth).max() < 6 * 0.04
    n = means.size
    assert abs(means.mean() - 0.25) < 4 * 0.6 / np.sqrt(n) + 0.01
    assert abs(means.std(ddof=1) - 0.6) < 4 * 0.6 / np.sqrt(2 * (n - 1)) + 0.01
