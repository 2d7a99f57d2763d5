"""The inference path of the topkima pipeline (no gradient, no statistics: buffers reused in
place, the ramp's selection applied as float offsets) gives bit for bit what the measured
path gives, and the offsets select exactly the keys :func:`ramp_topk` selects."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from charact.attention.pipeline import (  # noqa: E402
    AttentionCalibration,
    AttentionConfig,
    bind_chip,
    topkima_attention,
)
from charact.attention.topk import ramp_drop_offsets, ramp_topk  # noqa: E402
from charact.lookup import (  # noqa: E402
    PVT,
    PointErrorModel,
    StaticPart,
    error_model_from_samples,
)


def _models():
    rng = np.random.default_rng(0)
    ideal = rng.integers(0, 32, 50_000)
    noisy = np.clip(ideal + np.rint(rng.normal(0.2, 1.5, ideal.size)).astype(int), 0, 31)
    table = error_model_from_samples(ideal, noisy, 32).table()
    static = StaticPart(np.array([0.1, 0.0]), np.diag([0.5, 0.001]), 15.5)
    return table, PointErrorModel(PVT("NOM", 1.0, 27.0), table, table, static)


TABLE, POINT = _models()
CONFIGS = {
    "hw5": AttentionConfig.hardware(k=5),
    "hw1_av": AttentionConfig.hardware(k=1, av_codes=32),
    "all": AttentionConfig.hardware(k=None, av_codes=32),
    "xb": AttentionConfig.hardware(k=5, crossbar_cols=7),
    "xb_even": AttentionConfig.hardware(k=4, crossbar_cols=12),
    "errors": AttentionConfig.hardware(k=3, error_model=TABLE, av_error=TABLE),
    "chip": bind_chip(AttentionConfig.hardware(k=5, crossbar_cols=9, error_model=POINT,
                                               av_error=POINT), chip=2, layer=1),
    "coarse": AttentionConfig.hardware(k=5, n_codes=4),  # many ties at the stopping code
}


def _mask(kind: str, b: int, lq: int, lk: int, dtype):
    g = torch.Generator().manual_seed(3)
    if kind == "none":
        return None
    lens = torch.tensor([lk, 1, max(1, lk // 3)][:b])
    pad = (torch.arange(lk)[None, :] < lens[:, None])[:, None, None, :]
    if kind == "pad":
        return pad
    if kind == "causal":
        return torch.ones(lq, lk, dtype=torch.bool).tril()
    # additive (Hugging Face style): a bias on the valid keys, the dtype's minimum elsewhere
    bias = 0.2 * torch.randn(b, 1, 1, lk, generator=g).to(dtype)
    return torch.where(pad, bias, torch.finfo(dtype).min)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mask_kind", ["none", "pad", "causal", "additive"])
@pytest.mark.parametrize("calibrated", [False, True])
def test_inference_path_is_bit_identical_to_the_measured_path(dtype, mask_kind, calibrated):
    g = torch.Generator().manual_seed(1)
    b, h, lq, lk, d = 3, 2, 24, 24, 8
    q, k, v = (torch.randn(b, h, lq, d, generator=g).to(dtype) for _ in range(3))
    mask = _mask(mask_kind, b, lq, lk, dtype)
    calib = None
    if calibrated:
        calib = AttentionCalibration(qk_lo=torch.tensor(-1.0, dtype=dtype),
                                     qk_hi=torch.linspace(1, 3, h, dtype=dtype).view(h, 1, 1),
                                     av_lo=torch.tensor(-0.7, dtype=dtype),
                                     av_hi=torch.tensor(0.7, dtype=dtype))
    for name, cfg in CONFIGS.items():
        ref = topkima_attention(q, k, v, cfg, mask=mask, calib=calib, measure=True,
                                generator=torch.Generator().manual_seed(9))
        fast = topkima_attention(q, k, v, cfg, mask=mask, calib=calib,
                                 generator=torch.Generator().manual_seed(9))
        for part in ("out", "probs", "levels"):
            a, f = getattr(ref, part), getattr(fast, part)
            assert a.dtype == f.dtype and torch.equal(a, f), (name, part)
        if cfg.k is not None:
            # the kept keys get all the probability mass, the dropped ones exactly 0
            dropped = ~ref.selection.selected & (ref.probs > 0)
            assert not dropped.any(), name


def test_inference_path_under_no_grad_matches_the_gradient_path():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 40, 8, generator=g, requires_grad=True) for _ in range(3))
    cfg = AttentionConfig.hardware(k=5, crossbar_cols=16, av_codes=32)
    ref = topkima_attention(q, k, v, cfg)
    with torch.no_grad():
        fast = topkima_attention(q, k, v, cfg)
    assert ref.out.requires_grad and not fast.out.requires_grad
    assert torch.equal(ref.out.detach(), fast.out) and torch.equal(ref.probs.detach(), fast.probs)


@pytest.mark.parametrize("cols", [None, 1, 3, 7, 16, 64])
@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_drop_offsets_select_what_the_ramp_selects(cols, k):
    g = torch.Generator().manual_seed(k * 100 + (cols or 0))
    codes = torch.randint(0, 3, (2, 3, 5, 40), generator=g).float()  # ties everywhere
    valid = torch.rand(2, 1, 5, 40, generator=g) > 0.3
    valid[0, :, 0] = False  # a query that may attend to nothing
    for vv in (None, valid):
        sel = ramp_topk(codes, k, 3, vv, cols).selected
        off = ramp_drop_offsets(codes, k, 3, vv, cols)
        assert off.shape == codes.shape
        assert set(off.unique().tolist()) <= {0.0, -1.0}
        assert torch.equal(off == 0, sel)


@pytest.mark.parametrize("cols", [None, 4])
def test_masked_keys_are_never_kept_when_fewer_than_k_are_valid(cols):
    codes = torch.tensor([[5.0, 1.0, 7.0, 0.0, 2.0, 3.0, 7.0, 4.0]])
    valid = torch.tensor([[True, False, False, True, False, True, False, False]])
    sel = ramp_topk(codes, 5, 8, valid, cols)
    off = ramp_drop_offsets(codes, 5, 8, valid, cols)
    assert torch.equal(sel.selected, valid) and torch.equal(off == 0, valid)
    # every valid key kept, the ramp ran to its end on the short crossbars
    assert (sel.stop_cycle == 7).all()
