"""Tests of gain-cell attention: the ideal mode against plain attention, causality, the
window, droop with age, the readout's saturation, the lookup tables behind it, chips and
generators, and bad settings."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from charact.attention.gaincell import (  # noqa: E402
    GainCellConfig,
    chip_generator,
    draw_chip,
    gaincell_attention,
    load_hardware,
    window_ages,
)
from charact.errors import UserError  # noqa: E402
from charact.lookup.grid_table import GridTableModel  # noqa: E402
from charact.paths import models_dir  # noqa: E402

pytestmark = pytest.mark.torch

torch.set_num_threads(1)


def _qkv(b=2, h=2, n=12, d=8, seed=0, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(b, h, n, d, generator=g) for _ in range(3)]


def _chip(cfg, h=2, d=8, seed=3):
    return draw_chip(cfg, h, d, d, cfg.window, chip_generator(seed, 0))


@pytest.mark.parametrize("window", [1, 4, None])
def test_ideal_mode_equals_plain_window_attention(window):
    q, k, v = _qkv()
    out = gaincell_attention(q, k, v, GainCellConfig.ideal(window)).out
    _, valid = window_ages(12, 12, window)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=valid, scale=1.0)
    assert torch.allclose(out, ref, atol=1e-6)


def test_quantize_only_is_plain_attention_on_the_quantized_values():
    q, k, v = _qkv()
    cfg = GainCellConfig.ideal(5).with_(quantize=True)
    out = gaincell_attention(q, k, v, cfg).out
    lq, lkv = 2**cfg.n_bits_q - 1, 2 ** (cfg.n_bits_kv - 1) - 1

    def qz(x, n):
        return torch.round(x.clamp(-1, 1) * n) / n

    ref = gaincell_attention(qz(q, lq), qz(k, lkv), qz(v, lkv), GainCellConfig.ideal(5)).out
    assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out, gaincell_attention(q, k, v, GainCellConfig.ideal(5)).out,
                              atol=1e-4)


def test_causal_in_hardware_mode():
    cfg = GainCellConfig(window=6, t_token=1e-6)
    q, k, v = _qkv()
    chip = _chip(cfg)
    out = gaincell_attention(q, k, v, cfg, chip=chip).out
    k2, v2 = k.clone(), v.clone()
    k2[..., 8:, :] += 1.0
    v2[..., 8:, :] -= 1.0
    out2 = gaincell_attention(q, k2, v2, cfg, chip=chip).out
    assert torch.equal(out[..., :8, :], out2[..., :8, :])
    assert not torch.allclose(out[..., 8:, :], out2[..., 8:, :])


def test_window_hides_older_keys():
    cfg = GainCellConfig(window=3, t_token=1e-7)
    q, k, v = _qkv()
    chip = _chip(cfg)
    res = gaincell_attention(q, k, v, cfg, chip=chip)
    age, _ = window_ages(12, 12, None)
    assert torch.all(res.attn[..., age >= 3] == 0)
    assert torch.all(res.attn[..., age < 0] == 0)
    # the last query does not see keys 0..8: changing them changes nothing there
    k2, v2 = k.clone(), v.clone()
    k2[..., :9, :] = 0.9
    v2[..., :9, :] = -0.9
    out2 = gaincell_attention(q, k2, v2, cfg, chip=chip).out
    assert torch.equal(res.out[..., -1, :], out2[..., -1, :])
    assert not torch.allclose(res.out[..., 9, :], out2[..., 9, :])


def test_droop_grows_with_age_and_score_falls():
    hw = load_hardware(GainCellConfig())
    ages = np.array([0.0, 1e-8, 1e-7, 1e-6, 1e-5, 5e-5])
    d = np.array([float(hw.droop(0.9, t)) for t in ages])
    assert np.all(np.diff(d) > 0) and d[0] == 0.0
    # a full-weight key seen by one query at every age: its score falls with the age
    cfg = GainCellConfig(window=None, t_token=3e-6, quantize=False, readout=False,
                         cell_spread=False, readout_spread=False, retention_spread=False)
    n = 8
    q = torch.ones(1, 1, n, 4)
    k = torch.ones(1, 1, n, 4)
    v = torch.ones(1, 1, n, 4)
    cfg_probe = cfg.with_(readout=True)
    attn = gaincell_attention(q * 0.05, k, v, cfg_probe).attn[0, 0, -1]  # linear region
    assert torch.all(attn[1:] > attn[:-1])  # newest key (age 0) last: largest
    hot = gaincell_attention(q * 0.05, k, v, cfg_probe.with_(temp=85.0)).attn[0, 0, -1]
    assert torch.all(hot[:-1] < attn[:-1]) and torch.isclose(hot[-1], attn[-1])


def test_readout_saturates_like_a_hard_sigmoid():
    cfg = GainCellConfig(window=None, quantize=False, retention=False, cell_spread=False,
                         readout_spread=False)
    hw = load_hardware(cfg)
    q = torch.ones(1, 1, 1, 8)
    k = torch.ones(1, 1, 4, 8) * torch.tensor([1.0, 0.3, -0.3, -1.0]).view(1, 1, 4, 1)
    v = torch.zeros(1, 1, 4, 8)
    a = gaincell_attention(q, k, v, cfg).attn[0, 0, 0]
    assert a[0] == 1.0 and a[3] == 0.0  # 8 full products: far beyond 137 fC; negative
    # in the linear region: gain x (charge - offset) / t_sat
    small = gaincell_attention(q * 0.1, k, v, cfg).attn[0, 0, 0]
    charge = hw.pair_charge(1.0, 0.1 * hw.t_in) * 8
    expect = hw.gain * (charge - hw.q_offset) / hw.t_sat
    assert 0 < float(small[0]) < 1
    assert abs(float(small[0]) - expect) < 0.02 * expect


def test_multiply_follows_the_lookup_table():
    hw = load_hardware(GainCellConfig())
    model = GridTableModel.load(models_dir() / "gaincell_multiply_freepdk45.json")
    full = model.value("q", "NOM", 1.0, 27.0, v_store=0.9, pulse=15e-9)
    for x, tau in [(1.0, 15e-9), (0.5, 4e-9), (-1.0, 8e-9), (-0.5, 2e-9)]:
        table = model.value("q", "NOM", 1.0, 27.0, v_store=0.45 + 0.45 * x, pulse=tau)
        assert abs(hw.pair_charge(x, tau) - table) < 0.01 * abs(full)
    assert hw.rank_residual < 0.01


def test_same_generator_same_numbers_and_chips_differ():
    cfg = GainCellConfig(window=4, readout_noise=0.02)
    q, k, v = _qkv()
    a = gaincell_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(5)).out
    b = gaincell_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(5)).out
    c = gaincell_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(6)).out
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    c1 = gaincell_attention(q, k, v, cfg.with_(readout_noise=0.0), chip=_chip(cfg, seed=1)).out
    c2 = gaincell_attention(q, k, v, cfg.with_(readout_noise=0.0), chip=_chip(cfg, seed=1)).out
    assert torch.equal(c1, c2)


def test_no_spread_is_deterministic():
    cfg = GainCellConfig(window=4, cell_spread=False, readout_spread=False,
                         retention_spread=False)
    assert not cfg.has_chip
    q, k, v = _qkv()
    a = gaincell_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(1)).out
    b = gaincell_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(2)).out
    assert torch.equal(a, b)
    spread = gaincell_attention(q, k, v, GainCellConfig(window=4),
                                generator=torch.Generator().manual_seed(1)).out
    assert not torch.allclose(a, spread)


def test_gradients_reach_q_k_v():
    cfg = GainCellConfig(window=4, t_token=1e-6)
    q, k, v = (t.requires_grad_() for t in _qkv())
    gaincell_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(0)).out.sum() \
        .backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [
    {"window": 0}, {"t_token": -1e-9}, {"t_token": float("nan")}, {"n_bits_kv": 1},
    {"q_full": 0.0}, {"pulse_rank": 9}, {"readout_noise": -0.1},
])
def test_bad_config_is_a_user_error(kw):
    with pytest.raises(UserError):
        GainCellConfig(**kw)


def test_bad_tables_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="temp"):
        load_hardware(GainCellConfig(temp=125.0))
    with pytest.raises(UserError, match="not found"):
        load_hardware(GainCellConfig(multiply_model=str(tmp_path / "none.json")))
    q, k, v = _qkv()
    with pytest.raises(UserError, match="array slots"):
        gaincell_attention(q, k, v, GainCellConfig(window=4),
                           chip=_chip(GainCellConfig(window=5)))


def test_attention_side_reads_only_lookup_files():
    import subprocess
    import sys

    code = ("import sys, charact.attention.gaincell, charact.attention.lm; "
            "print([m for m in sys.modules if m.split('.')[:2] in (['charact', 'gaincell'], "
            "['charact', 'column'], ['charact', 'blocks'], ['charact', 'runner'])])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_window_uses_the_chips_columns():
    cfg = GainCellConfig(window=None, t_token=1e-7)
    chip = draw_chip(cfg, 2, 8, 8, 16, chip_generator(0, 0))
    q, k, v = _qkv()
    a = gaincell_attention(q, k, v, cfg, chip=chip).out
    b = gaincell_attention(q[..., :6, :], k[..., :6, :], v[..., :6, :], cfg, chip=chip).out
    assert torch.allclose(a[..., :6, :], b, atol=1e-6)  # a prefix sees the same silicon
