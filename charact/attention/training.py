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
from charact.attention.pipeline import AttentionConfig, bind_chip
from charact.attention.vit import TopkimaViT, ViTConfig

SCHEMES = ("tfcbp", "inference", "full")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and budget: ``epochs`` over the first ``n_train`` images.

    AdamW (``weight_decay`` on the weight matrices only, not on biases, norms, the CLS
    token and position embeddings), the learning rate warmed up linearly over the first
    ``warmup_frac`` of the steps and then decayed on a cosine to zero, gradients clipped to
    a global norm of ``grad_clip``. A TFCBP model trains with the full softmax for the
    first ``softmax_warmup_frac`` of the steps (see :func:`train_model`).
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    softmax_warmup_frac: float = 0.05
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


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and convolution kernels only (the usual ViT practice:
    decaying norms, biases and embeddings only fights the normalisation)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and name not in ("pos", "cls") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def train_model(
    data: ImageData, vit: ViTConfig, attn: AttentionConfig, train: TrainConfig, seed: int,
    log: bool = False,
) -> tuple[TopkimaViT, dict]:
    """Train a fresh ViT with ``attn`` in every layer; returns the model and a summary.

    Stability (TFCBP's forward and backward differ, and QAT adds straight-through
    gradients): a linear learning-rate warm-up then cosine decay, AdamW, and gradient-norm
    clipping. With top-k in ``attn``, the first ``softmax_warmup_frac`` of the steps use
    the full softmax (same quantization and ADC): at initialisation the scores are nearly
    flat, so which k keys the ramp keeps is decided by ties and noise, and the full-softmax
    gradient TFCBP back-propagates is far from the top-k forward; once attention has
    started to concentrate on a few keys the two agree and TFCBP takes over.
    The trained model is calibrated on its first training images
    (:meth:`~charact.attention.vit.TopkimaViT.calibrate`).

    Device: the data's. The initial weights are drawn on the CPU and the image order by a
    CPU generator, so every device starts from the same weights and sees the same batches
    (see :mod:`charact.attention.device`).
    """
    device = data.x_train.device
    torch.manual_seed(seed)
    model = TopkimaViT(vit).to(device)
    x, y = data.x_train, data.y_train
    if train.n_train is not None:
        x, y = x[: train.n_train], y[: train.n_train]
    n = len(y)
    steps_per_epoch = math.ceil(n / train.batch_size)
    total = max(1, steps_per_epoch * train.epochs)
    warm = max(1, int(train.warmup_frac * total))
    has_topk = attn.k is not None or attn.crossbar_cols is not None
    softmax_steps = int(train.softmax_warmup_frac * total) if has_topk else 0
    warm_attn = attn.with_(k=None, crossbar_cols=None)
    model.set_attention(warm_attn if softmax_steps else attn)
    opt = torch.optim.AdamW(_param_groups(model, train.weight_decay), lr=train.lr)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    step = 0
    epoch_loss: list[float] = []
    # loss and gradient norm stay on the device until an epoch ends (no host round trip
    # per step on a GPU); float64 sums give exactly the Python float sums they replace
    max_grad = torch.zeros((), dtype=torch.float64, device=device)
    for epoch in range(train.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        run_loss = torch.zeros((), dtype=torch.float64, device=device)
        for i in range(steps_per_epoch):
            if step == softmax_steps and softmax_steps:
                model.set_attention(attn)
            idx = perm[i * train.batch_size : (i + 1) * train.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            # fmax: a NaN norm leaves the maximum as it was, as Python max did
            torch.fmax(max_grad, norm.detach().to(torch.float64), out=max_grad)
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.detach().to(torch.float64)
        epoch_loss.append(float(run_loss) / steps_per_epoch)
        if log:
            print(f"  epoch {epoch + 1}/{train.epochs} mean loss {epoch_loss[-1]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model.set_attention(attn)
    model.calibrate(x)
    model.eval()
    return model, {**asdict(train), "train_seconds": time.perf_counter() - t0,
                   "final_loss": epoch_loss[-1] if epoch_loss else float("nan"),
                   "epoch_loss": epoch_loss, "max_grad_norm": float(max_grad),
                   "softmax_warmup_steps": softmax_steps, "n_train": n}


@torch.no_grad()
def evaluate(
    model: TopkimaViT, data: ImageData, attn: AttentionConfig, seed: int,
    batch_size: int = 500, n_test: int | None = None, stats_queries: int = 0,
    chip: int | None = None,
) -> tuple[float, pd.DataFrame]:
    """Test accuracy with ``attn`` in every layer, and the ramp statistics.

    Injected errors draw their per-conversion noise from a generator seeded with ``seed``
    on the model's device (the same seed draws other errors on a GPU than on the CPU).
    ``chip``: the simulated chip whose per-column static errors a structured error model
    injects (layer ``i`` gets array ``i`` of that chip, :func:`bind_chip`); it changes
    nothing for a model without them. Only the evaluation changes: the weights and the
    calibration are the model's. The statistics table has one row per (query, layer,
    head, crossbar) for the first ``stats_queries`` images' queries (none when 0 or when
    the run has no ramp top-k).
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    model.set_attention(attn, gen)
    if chip is not None:
        for i, layer in enumerate(model.attention_layers()):
            layer.config = bind_chip(attn, chip, i)
    x, y = data.x_test, data.y_test
    if n_test is not None:
        x, y = x[:n_test], y[:n_test]
    correct = torch.zeros((), dtype=torch.int64, device=device)  # summed on the device
    frames = []
    n_stat_images = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        want = min(len(yb), max(0, stats_queries - n_stat_images))
        model.set_record(want > 0)
        correct += (model(xb).argmax(-1) == yb).sum()
        if want > 0:
            frames.extend(_selection_frames(model, want))
            n_stat_images += want
    model.set_record(False)
    stats = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return int(correct) / max(1, len(y)), stats


def _selection_frames(model: TopkimaViT, n_images: int) -> list[pd.DataFrame]:
    out = []
    for layer, attn in enumerate(model.attention_layers()):
        sel = attn.last_selection
        if sel is None or sel.stop_cycle is None:
            continue
        stop = sel.stop_cycle[:n_images].cpu()  # (B, H, Lq, n_xb)
        tied = sel.n_tied[:n_images].cpu()
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
