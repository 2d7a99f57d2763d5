"""Training (QAT, TFCBP) and evaluation of the small ViT.

Schemes (paper III-B, IV-A):

* ``tfcbp``: trained with top-k in the forward pass and the full softmax's gradient in the
  backward pass, evaluated with the same top-k;
* ``inference``: trained with the full softmax, evaluated with top-k (inference-only top-k);
* ``full``: trained and evaluated with the full softmax (the baseline).

All three train with quantization-aware Q, K, V, A and the ramp ADC in the forward pass
(straight-through gradients), and without injected errors; errors are an evaluation-time
condition, as in the paper's Fig. 4(b) experiment.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from charact.attention.data import ImageData
from charact.attention.pipeline import AttentionConfig
from charact.attention.vit import TopkimaViT, ViTConfig

SCHEMES = ("tfcbp", "inference", "full")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and budget: ``epochs`` over the first ``n_train`` images."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    n_train: int | None = None


def vit_config_for(data: ImageData, dim: int = 64, depth: int = 2, heads: int = 4) -> ViTConfig:
    """The ViT shape for a data set's image and patch size."""
    return ViTConfig(
        image_size=data.image_size, patch=data.patch, channels=data.x_train.shape[1],
        dim=dim, depth=depth, heads=heads, n_classes=data.n_classes,
    )


def train_config_for_scheme(scheme: str, eval_config: AttentionConfig) -> AttentionConfig:
    """The attention setting a scheme trains with (errors are never on while training)."""
    base = eval_config.with_(error_model=None, av_error=None)
    if scheme == "tfcbp":
        return base.with_(training_mode="tfcbp")
    # inference-only top-k and the baseline train with the full softmax
    return base.with_(k=None, crossbar_cols=None)


def train_model(
    data: ImageData, vit: ViTConfig, attn: AttentionConfig, train: TrainConfig, seed: int,
    log: bool = False,
) -> tuple[TopkimaViT, dict]:
    """Train a fresh ViT with ``attn`` in every layer; returns the model and a summary."""
    torch.manual_seed(seed)
    model = TopkimaViT(vit)
    model.set_attention(attn)
    x, y = data.x_train, data.y_train
    if train.n_train is not None:
        x, y = x[: train.n_train], y[: train.n_train]
    n = len(y)
    steps_per_epoch = math.ceil(n / train.batch_size)
    total = max(1, steps_per_epoch * train.epochs)
    warm = max(1, int(train.warmup_frac * total))
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    last = float("nan")
    for epoch in range(train.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * train.batch_size : (i + 1) * train.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = float(loss.detach())
        if log:
            print(f"  epoch {epoch + 1}/{train.epochs} loss {last:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval()
    return model, {**asdict(train), "train_seconds": time.perf_counter() - t0,
                   "final_loss": last, "n_train": n}


@torch.no_grad()
def evaluate(
    model: TopkimaViT, data: ImageData, attn: AttentionConfig, seed: int,
    batch_size: int = 500, n_test: int | None = None, stats_queries: int = 0,
) -> tuple[float, pd.DataFrame]:
    """Test accuracy with ``attn`` in every layer, and the ramp statistics.

    Injected errors draw from a generator seeded with ``seed``. The statistics table has
    one row per (query, layer, head, crossbar) for the first ``stats_queries`` images'
    queries (none when 0 or when the run has no ramp top-k).
    """
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    model.set_attention(attn, gen)
    x, y = data.x_test, data.y_test
    if n_test is not None:
        x, y = x[:n_test], y[:n_test]
    correct = 0
    frames = []
    n_stat_images = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        want = min(len(yb), max(0, stats_queries - n_stat_images))
        model.set_record(want > 0)
        correct += int((model(xb).argmax(-1) == yb).sum())
        if want > 0:
            frames.extend(_selection_frames(model, want))
            n_stat_images += want
    model.set_record(False)
    stats = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return correct / max(1, len(y)), stats


def _selection_frames(model: TopkimaViT, n_images: int) -> list[pd.DataFrame]:
    out = []
    for layer, attn in enumerate(model.attention_layers()):
        sel = attn.last_selection
        if sel is None or sel.stop_cycle is None:
            continue
        stop = sel.stop_cycle[:n_images]  # (B, H, Lq, n_xb)
        tied = sel.n_tied[:n_images]
        b, h, lq, n_xb = stop.shape
        grid = torch.stack(torch.meshgrid(
            torch.arange(b), torch.arange(h), torch.arange(lq), torch.arange(n_xb), indexing="ij"
        ), dim=-1).reshape(-1, 4)
        stop_f = stop.reshape(-1)
        k_i = torch.tensor(sel.k_per_crossbar)[grid[:, 3]]
        ok = stop_f >= 0
        out.append(pd.DataFrame({
            "layer": layer,
            "image": grid[ok, 0].numpy(),
            "head": grid[ok, 1].numpy(),
            "query": grid[ok, 2].numpy(),
            "crossbar": grid[ok, 3].numpy(),
            "k": k_i[ok].numpy(),
            "stop_cycle": stop_f[ok].numpy(),
            "alpha": ((stop_f[ok].double() + 1) / sel.n_codes).numpy(),
            "n_tied": tied.reshape(-1)[ok].numpy(),
        }))
    return out
