"""Tests of the topkima attention pipeline: quantizers, ramp top-k, sub-top-k, TFCBP,
error injection, selection statistics, data loading and the accuracy command."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from charact.attention.pipeline import (  # noqa: E402
    AttentionCalibration,
    AttentionConfig,
    reference_attention,
    topkima_attention,
)
from charact.attention.quant import (  # noqa: E402
    adc_codes,
    q_max_level,
    quantize_symmetric,
    quantize_unsigned,
)
from charact.attention.topk import crossbar_k_split, ramp_topk, score_topk  # noqa: E402
from charact.errors import UserError  # noqa: E402

pytestmark = pytest.mark.torch


def _qkv(b=2, h=3, lq=9, lk=9, d=8, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, requires_grad=grad) for n in (lq, lk, lk)]


def _pad_mask(b, lk, lengths):
    m = torch.zeros(b, 1, 1, lk, dtype=torch.bool)
    for i, n in enumerate(lengths):
        m[i, ..., :n] = True
    return m


# --- equivalence with plain softmax attention ------------------------------------------

def test_everything_off_equals_softmax_attention():
    q, k, v = _qkv()
    out = topkima_attention(q, k, v, AttentionConfig()).out
    # torch's own kernel, unscaled (the scale lives in W_Q)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("as_float", [False, True])
def test_everything_off_equals_softmax_attention_padded(as_float):
    q, k, v = _qkv(b=3, lq=10, lk=10)
    m = _pad_mask(3, 10, [10, 6, 3])
    mask = m
    if as_float:  # additive mask as Hugging Face's eager path builds it
        mask = torch.zeros(m.shape).masked_fill(~m, torch.finfo(torch.float32).min)
    out = topkima_attention(q, k, v, AttentionConfig(), mask=mask).out
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=1.0)
    assert torch.allclose(out, ref, atol=1e-5)
    # and the padded sample equals itself alone
    alone = topkima_attention(q[2:, :, :3], k[2:, :, :3], v[2:, :, :3], AttentionConfig()).out
    assert torch.allclose(out[2, :, :3], alone[0], atol=1e-5)


def test_k_covering_all_keys_is_plain_softmax():
    q, k, v = _qkv()
    out = topkima_attention(q, k, v, AttentionConfig(k=9)).out
    assert torch.allclose(out, reference_attention(q, k, v), atol=1e-5)


def test_hardware_padded_sample_matches_alone():
    q, k, v = _qkv(b=2, lq=12, lk=12, d=16, seed=3)
    m = _pad_mask(2, 12, [12, 7])
    cfg = AttentionConfig.hardware(k=3)
    out = topkima_attention(q, k, v, cfg, mask=m).out
    alone = topkima_attention(q[1:, :, :7], k[1:, :, :7], v[1:, :, :7], cfg).out
    assert torch.allclose(out[1, :, :7], alone[0], atol=1e-5)


# --- quantizers -----------------------------------------------------------------------

def test_q_levels_are_5bit_magnitude_plus_sign():
    x = torch.linspace(-2, 2, 5001)
    lv = q_max_level(5)
    scale = torch.tensor(1.5 / lv)
    levels = torch.unique(torch.round(quantize_symmetric(x, lv, scale) / scale)).long()
    assert levels.tolist() == list(range(-31, 32))


@pytest.mark.parametrize(("rows", "cells", "n_levels"), [(None, 3, 15), (256, 3, 15), (128, 1, 3)])
def test_k_levels_follow_crossbar_rows(rows, cells, n_levels):
    cfg = AttentionConfig(crossbar_rows=rows, crossbar_cols=rows)
    assert cfg.k_cells(64) == cells
    lv = cfg.k_max_level(64)
    x = torch.linspace(-3, 3, 4001)
    levels = torch.unique(torch.round(quantize_symmetric(x, lv, torch.tensor(1 / lv)) * lv))
    assert len(levels) == n_levels
    assert int(levels.min()) == -lv and int(levels.max()) == lv


def test_quantizer_straight_through_gradient():
    x = torch.tensor([-3.0, -0.4, 0.2, 0.9, 5.0], requires_grad=True)
    quantize_symmetric(x, 7, torch.tensor(1 / 7)).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    a = torch.tensor([0.0, 0.5, 1.0])
    assert quantize_unsigned(a, 31, torch.tensor(1 / 31)).mul(31).round().tolist() == [0, 16, 31]


def test_adc_codes_cover_range():
    x = torch.linspace(-1, 1, 1000)
    c = adc_codes(x, torch.tensor(-0.5), torch.tensor(0.5), 32)
    assert int(c.min()) == 0 and int(c.max()) == 31
    assert torch.all(c[1:] >= c[:-1])  # monotonic
    assert len(torch.unique(c)) == 32


# --- ramp top-k and sub-top-k -----------------------------------------------------------

def test_sub_topk_paper_example():
    assert crossbar_k_split(384, 5, 128) == [2, 2, 1]
    assert crossbar_k_split(384, 5, 256) == [3, 2]
    scores = torch.arange(1, 385)  # key j has score j
    sub = ramp_topk(scores, 5, n_codes=512, crossbar_cols=128).selected
    assert (torch.nonzero(sub).flatten() + 1).tolist() == [127, 128, 255, 256, 384]
    glob = ramp_topk(scores, 5, n_codes=512).selected
    assert (torch.nonzero(glob).flatten() + 1).tolist() == [380, 381, 382, 383, 384]
    # the float path (no ADC) makes the same choice
    fsub = score_topk(scores.float(), 5, crossbar_cols=128)
    assert torch.equal(fsub, sub)


def test_k_split_sums_to_k_and_respects_sizes():
    for n_keys, cols in [(65, 32), (384, 128), (17, 8), (100, 7)]:
        for k in (1, 2, 5, 10):
            k_i = crossbar_k_split(n_keys, k, cols)
            sizes = [min(cols, n_keys - s) for s in range(0, n_keys, cols)]
            assert sum(k_i) == min(k, n_keys)
            assert all(0 <= a <= s for a, s in zip(k_i, sizes, strict=True))


def test_tie_rule_smaller_addresses_win_stopping_cycle():
    codes = torch.tensor([3, 5, 5, 5, 1, 5, 2])
    sel = ramp_topk(codes, 2, 8)
    assert torch.nonzero(sel.selected).flatten().tolist() == [1, 2]
    assert sel.n_tied.item() == 4  # four keys crossed in the stopping cycle
    # earlier crossings are always kept: 7 and 6 cross before the tied 4s
    codes = torch.tensor([4, 4, 7, 4, 6, 4])
    sel = ramp_topk(codes, 3, 8)
    assert torch.nonzero(sel.selected).flatten().tolist() == [0, 2, 4]
    assert sel.stop_cycle.item() == 7 - 4


def test_ramp_topk_matches_brute_force_order():
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 8, (40, 23), generator=g)  # few codes: many ties
    valid = torch.rand(40, 23, generator=g) > 0.2
    for k in (1, 3, 5, 12):
        sel = ramp_topk(codes, k, 8, valid=valid).selected
        for r in range(40):
            order = sorted((-int(codes[r, j]), j) for j in range(23) if valid[r, j])
            want = sorted(j for _, j in order[:k])
            assert torch.nonzero(sel[r]).flatten().tolist() == want


def test_selection_statistics():
    q, k, v = _qkv(b=2, h=2, lq=20, lk=20, d=16, seed=5)
    res = topkima_attention(q, k, v, AttentionConfig.hardware(k=5), measure=True)
    alpha = res.selection.alpha()
    assert alpha.shape == (2, 2, 20, 1)
    assert bool(((alpha > 0) & (alpha <= 1)).all())
    # the stopping cycle is the crossing cycle of the 5th key in ramp order
    codes = res.codes
    kth_code = torch.sort(codes, dim=-1, descending=True).values[..., 4]
    assert torch.equal(res.selection.stop_cycle[..., 0], 31 - kth_code)
    n_tied = (codes == kth_code.unsqueeze(-1)).sum(-1)
    assert torch.equal(res.selection.n_tied[..., 0], n_tied)
    assert bool(((res.probs > 0).sum(-1) <= 5).all())


# --- TFCBP ----------------------------------------------------------------------------

def test_tfcbp_forward_is_topk_backward_is_full_softmax():
    q, k, v = _qkv(lq=12, lk=12, seed=7, grad=True)
    w = torch.randn(2, 3, 12, 8, generator=torch.Generator().manual_seed(8))
    res = topkima_attention(q, k, v, AttentionConfig(k=3, training_mode="tfcbp"))
    assert bool(((res.probs > 0).sum(-1) == 3).all())
    (res.out * w).sum().backward()
    g_tf = (q.grad.clone(), k.grad.clone())

    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    (reference_attention(q2, k2, v2) * w).sum().backward()
    assert torch.allclose(g_tf[0], q2.grad, atol=1e-6)
    assert torch.allclose(g_tf[1], k2.grad, atol=1e-6)

    # the gradient through the top-k softmax itself is a different thing
    q3, k3, v3 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out3 = topkima_attention(q3, k3, v3, AttentionConfig(k=3, training_mode="topk")).out
    (out3 * w).sum().backward()
    assert not torch.allclose(q3.grad, q2.grad, atol=1e-4)


# --- error injection through the lookup API ------------------------------------------

def _synthetic_model(n_codes=32, seed=0):
    from charact.lookup import error_model_from_samples

    rng = np.random.default_rng(seed)
    ideal = rng.integers(0, n_codes, 200_000)
    step = rng.choice([-1, 0, 1, 2], size=ideal.size, p=[0.2, 0.5, 0.2, 0.1])
    noisy = np.clip(ideal + step, 0, n_codes - 1)
    return error_model_from_samples(ideal, noisy, n_codes, smoothing=0.0)


def test_error_injection_follows_model_statistics(tmp_path):
    from charact.lookup import ErrorModel

    path = tmp_path / "synthetic.json"
    _synthetic_model().save(path)
    table = ErrorModel.load(path).table()
    q, k, v = _qkv(b=4, h=4, lq=64, lk=64, d=16, seed=2)
    calib = AttentionCalibration(qk_lo=torch.tensor(-20.0), qk_hi=torch.tensor(20.0))
    clean = topkima_attention(q, k, v, AttentionConfig.hardware(k=None), calib=calib)
    cfg = AttentionConfig.hardware(k=None, error_model=table)
    noisy = topkima_attention(q, k, v, cfg, calib=calib, generator=torch.Generator().manual_seed(0))
    ideal, got = clean.codes, noisy.codes
    inner = (ideal >= 1) & (ideal <= 29)  # away from the clipped ends
    err = (got - ideal)[inner].double()
    # mean error predicted by the model's table for these ideal codes; E[step] = 0.2
    want = torch.as_tensor(table.mean_error())[ideal[inner]].mean().item()
    assert abs(want - 0.2) < 0.01
    assert abs(err.mean().item() - want) < 0.02
    assert abs((err == 0).double().mean().item() - 0.5) < 0.02
    assert abs((err == 2).double().mean().item() - 0.1) < 0.01
    assert not torch.allclose(clean.out, noisy.out)
    # same generator seed, same numbers
    again = topkima_attention(q, k, v, cfg, calib=calib, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.codes, noisy.codes)


def test_av_error_changes_output_only_through_av():
    table = _synthetic_model().table()
    q, k, v = _qkv(b=2, h=2, lq=16, lk=16, d=8, seed=4)
    base = AttentionConfig.hardware(k=4, av_codes=32)
    a = topkima_attention(q, k, v, base)
    gen = torch.Generator().manual_seed(1)
    b = topkima_attention(q, k, v, base.with_(av_error=table), generator=gen)
    assert torch.equal(a.codes, b.codes)  # Q.K^T untouched
    assert not torch.allclose(a.out, b.out)


def test_config_rejects_bad_values():
    table = _synthetic_model().table()
    with pytest.raises(UserError):
        AttentionConfig(k=0)
    with pytest.raises(UserError, match="adc"):
        AttentionConfig(error_model=table)
    with pytest.raises(UserError, match="codes"):
        AttentionConfig.hardware(n_codes=16, error_model=table)
    with pytest.raises(UserError, match="replica"):
        AttentionConfig(crossbar_rows=64)
    with pytest.raises(UserError, match="training_mode"):
        AttentionConfig(training_mode="sometimes")
    with pytest.raises(UserError, match="d_k"):
        AttentionConfig(crossbar_rows=128).k_cells(128)


# --- data -----------------------------------------------------------------------------

def test_missing_fashion_mnist_names_the_package(tmp_path):
    from charact.attention.data import load_fashion_mnist

    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_digits_shapes():
    pytest.importorskip("sklearn")
    from charact.attention.data import load_dataset

    d = load_dataset("digits", n_train=100, n_test=50)
    assert d.x_train.shape == (100, 1, 8, 8) and d.x_test.shape == (50, 1, 8, 8)
    with pytest.raises(UserError):
        load_dataset("cifar")


# --- model and command ----------------------------------------------------------------

def test_vit_scale_free_and_token_count():
    from charact.attention.vit import TopkimaViT, ViTConfig

    cfg = ViTConfig()
    assert cfg.n_tokens == 65
    torch.manual_seed(0)
    model = TopkimaViT(cfg)
    attn = model.attention_layers()[0]
    w = attn.qkv.weight
    # W_Q starts 1/sqrt(d_k) = 1/4 smaller than W_K (same default init otherwise)
    ratio = (w[:64].std() / w[64:128].std()).detach()
    assert 0.2 < float(ratio) < 0.3
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10)


@pytest.mark.slow
def test_accuracy_command_end_to_end(tmp_path):
    pytest.importorskip("sklearn")
    import pandas as pd

    from charact.cli import main

    err = tmp_path / "err.json"
    _synthetic_model().save(err)
    rc = main(["accuracy", "--dataset", "digits", "--epochs", "1", "--n-train", "300",
               "--n-test", "60", "--k", "2", "all", "--seeds", "0", "--crossbar", "none",
               "128x8", "--dim", "16", "--heads", "2", "--depth", "1", "--jobs", "1",
               "--error-model", str(err), "--error-k", "2", "--stats-queries", "4",
               "--run", "t", "--out", str(tmp_path / "acc")])
    assert rc == 0
    run = tmp_path / "acc" / "t"
    table = pd.read_parquet(run / "accuracy.parquet")
    assert {"scheme", "k", "crossbar", "error", "seed", "accuracy"} <= set(table.columns)
    assert set(table["scheme"]) == {"tfcbp", "inference", "full"}
    assert set(table["error"]) == {"none", "err"}
    stats = pd.read_parquet(run / "selection_stats.parquet")
    assert {"alpha", "n_tied", "k", "layer", "run_id"} <= set(stats.columns)
    assert ((stats["alpha"] > 0) & (stats["alpha"] <= 1)).all()
    for name in ("accuracy.md", "provenance.json", "fig3_accuracy_vs_k.png",
                 "fig4c_subtopk.png", "fig4b_error.png"):
        assert (run / name).is_file(), name
    assert not table["reused"].any()
    # a second run reuses the saved models: no training, the same clean accuracies
    rc = main(["accuracy", "--dataset", "digits", "--epochs", "1", "--n-train", "300",
               "--n-test", "60", "--k", "2", "all", "--seeds", "0", "--crossbar", "none",
               "--dim", "16", "--heads", "2", "--depth", "1", "--jobs", "1",
               "--scheme", "tfcbp", "full", "--reuse", str(run),
               "--run", "t2", "--out", str(tmp_path / "acc")])
    assert rc == 0
    again = pd.read_parquet(tmp_path / "acc" / "t2" / "accuracy.parquet")
    assert again["reused"].all()
    both = again.merge(table, on="run_id", suffixes=("", "_first"))
    assert len(both) == len(again) >= 2
    assert (both["accuracy"] == both["accuracy_first"]).all()


def test_accuracy_command_bad_input(tmp_path, capsys):
    from charact.cli import main

    assert main(["accuracy", "--crossbar", "12x", "--out", str(tmp_path)]) == 2
    assert "crossbar" in capsys.readouterr().err
    assert main(["accuracy", "--k", "0", "--out", str(tmp_path)]) == 2
    assert main(["accuracy", "--error-model", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path)]) == 2
    assert main(["accuracy", "--dataset", "fashion-mnist", "--data-root", str(tmp_path),
                 "--out", str(tmp_path)]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# --- crossbars scaled from the paper, calibration, training ----------------------------

def test_paper_crossbars_scale_to_the_vit():
    from charact.attention.settings import Crossbar, parse_crossbar, resolve_crossbar

    p128 = resolve_crossbar(parse_crossbar("paper128"), d_k=16, n_keys=65)
    p256 = resolve_crossbar(parse_crossbar("paper256"), d_k=16, n_keys=65)
    assert (p128.rows, p128.cols, p128.label) == (80, 22, "paper128=80x22")
    assert (p256.rows, p256.cols) == (112, 44)
    # the paper's own geometry (d_k 64, 384 keys) comes back as 128x128 and 256x256
    b128 = resolve_crossbar(Crossbar(paper=128), 64, 384)
    b256 = resolve_crossbar(Crossbar(paper=256), 64, 384)
    assert (b128.rows, b128.cols, b256.rows, b256.cols) == (128, 128, 256, 256)
    # same K precision and the same k_i split as the paper's crossbars
    cfg128 = AttentionConfig.hardware(k=5, crossbar_rows=p128.rows, crossbar_cols=p128.cols)
    cfg256 = AttentionConfig.hardware(k=5, crossbar_rows=p256.rows, crossbar_cols=p256.cols)
    assert cfg128.k_cells(16) == 1 and cfg256.k_cells(16) == 3
    assert crossbar_k_split(65, 5, p128.cols) == [2, 2, 1]
    assert crossbar_k_split(65, 5, p256.cols) == [3, 2]
    with pytest.raises(UserError, match="paper"):
        parse_crossbar("paper512")


def test_ramp_topk_long_rows_match_brute_force():
    # rows of >= 128 keys take torch.topk, short rows the max-below loop: same rule
    g = torch.Generator().manual_seed(11)
    for n in (23, 130):
        codes = torch.randint(0, 6, (6, n), generator=g)
        sel = ramp_topk(codes, 7, 8).selected
        for r in range(6):
            order = sorted((-int(codes[r, j]), j) for j in range(n))
            assert torch.nonzero(sel[r]).flatten().tolist() == sorted(j for _, j in order[:7])


def test_ramp_window_is_per_head_and_from_quantiles():
    from charact.attention.pipeline import RAMP_START_QUANTILE, batch_ranges

    q, k, v = _qkv(b=8, h=3, lq=40, lk=40, d=8, seed=9)
    q = q * torch.tensor([0.5, 1.0, 3.0]).view(1, 3, 1, 1)  # heads of different spread
    scores = q @ k.transpose(-2, -1)
    r = batch_ranges(scores, None, q, k, v, None)
    assert r["qk_hi"].shape == (3, 1, 1) and r["qk_lo"].shape == (3, 1, 1)
    hi = r["qk_hi"].flatten()
    assert hi[0] < hi[1] < hi[2]
    row_max = scores.amax(-1)  # (B, H, Lq)
    above = (row_max > r["qk_hi"].view(1, 3, 1)).double().mean(dim=(0, 2))
    assert bool((above <= 1 - RAMP_START_QUANTILE + 0.01).all())
    lo_frac = (scores < r["qk_lo"]).double().mean(dim=(0, 2, 3))
    assert bool((lo_frac < 0.02).all())


def _tiny_images(n=96, seed=0):
    from charact.attention.data import ImageData

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    x[:, 0, :4, :4] += y.view(-1, 1, 1).float()  # learnable signal
    return ImageData("tiny", x, y, x[:32], y[:32], 8, 2, 3)


def test_training_calibrates_like_evaluation_and_warms_up_with_softmax():
    from charact.attention.training import TrainConfig, train_model, vit_config_for

    data = _tiny_images()
    vit = vit_config_for(data, dim=16, depth=1, heads=2)
    cfg = AttentionConfig.hardware(k=3)
    train = TrainConfig(epochs=2, batch_size=32, softmax_warmup_frac=0.5)
    model, info = train_model(data, vit, cfg, train, seed=0)
    assert info["softmax_warmup_steps"] == 3 and len(info["epoch_loss"]) == 2
    assert info["max_grad_norm"] > 0
    attn = model.attention_layers()[0]
    assert attn.config.k == 3  # TFCBP after the warm-up, and at evaluation
    assert attn.qk_hi.shape == (2, 1, 1) and bool((attn.qk_hi > attn.qk_lo).all())
    # "running": a training-mode forward quantizes with the same calibration as evaluation;
    # "sample" (the default) with each sample's own ranges
    xb = data.x_test[:8]
    with torch.no_grad():
        out_eval = model(xb)
        model.train()
        model.set_train_calibration("running")
        out_running = model(xb)  # (a training forward updates the calibration after use)
        model.set_train_calibration("sample")
        out_sample = model(xb)
        model.eval()
    assert torch.allclose(out_eval, out_running, atol=1e-6)
    assert not torch.allclose(out_eval, out_sample, atol=1e-4)
    # a TFCBP model whose k covers nothing to select never switches
    _, info_full = train_model(data, vit, AttentionConfig.hardware(k=None), train, seed=0)
    assert info_full["softmax_warmup_steps"] == 0


def test_scale_statistics_are_per_head_means_of_each_samples_maximum():
    from charact.attention.pipeline import batch_ranges

    q, k, v = _qkv(b=6, h=3, lq=10, lk=10, d=4, seed=2)
    k = k * torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)
    k[0, 1, 0, 0] = 50.0  # one outlier token must not set the scale of the whole batch
    r = batch_ranges(q @ k.transpose(-2, -1), None, q, k, v, v[..., :10, :])
    for name, x in (("q_absmax", q), ("k_absmax", k), ("v_absmax", v)):
        assert r[name].shape == (3, 1, 1)
        assert torch.allclose(r[name].flatten(), x.abs().amax(dim=(-2, -1)).mean(dim=0))
    assert float(r["k_absmax"][1]) < 50.0 / 6 + 2 * float(k[1:, 1].abs().max())
    assert r["av_absmax"].shape == (3, 1, 1)


def test_calibration_pass_is_an_exact_deterministic_average_and_old_files_load():
    from charact.attention.training import vit_config_for
    from charact.attention.vit import TopkimaViT

    data = _tiny_images()
    torch.manual_seed(0)
    model = TopkimaViT(vit_config_for(data, dim=16, depth=2, heads=2))
    model.set_attention(AttentionConfig.hardware(k=3))
    model.eval()
    x = data.x_train
    model.calibrate(x, batch_size=16, n_batches=3)
    names = ("q_absmax", "k_absmax", "v_absmax", "av_absmax")
    three = [getattr(a, n).clone() for a in model.attention_layers() for n in names]
    model.calibrate(x, batch_size=48, n_batches=1)
    one = [getattr(a, n).clone() for a in model.attention_layers() for n in names]
    # equal batches: the mean of batch means is the mean over the 48 images
    assert all(torch.allclose(a, b, rtol=1e-5) for a, b in zip(three, one, strict=True))
    model.calibrate(x, batch_size=16, n_batches=3)
    again = [getattr(a, n).clone() for a in model.attention_layers() for n in names]
    assert all(torch.equal(a, b) for a, b in zip(three, again, strict=True))
    assert not model.training and model.attention_layers()[0].n_averaged == 0
    # a file from before the per-head calibration (scalar scales) loads, then calibrates
    state = model.state_dict()
    old = {k: (v.amax() if k.endswith("_absmax") else v) for k, v in state.items()}
    fresh = TopkimaViT(vit_config_for(data, dim=16, depth=2, heads=2))
    fresh.load_weights(old)
    fresh.set_attention(AttentionConfig.hardware(k=3))
    fresh.eval()
    fresh.calibrate(x, batch_size=16, n_batches=3)
    with torch.no_grad():
        assert torch.allclose(fresh(data.x_test), model(data.x_test), atol=1e-6)
    with pytest.raises(RuntimeError, match="does not fit"):
        fresh.load_weights({k: v for k, v in state.items() if not k.startswith("head.")})
