"""A small byte-level language model with gain-cell attention, trained on Debian's
``fortunes`` text, and the study behind ``charact lm``.

The model is a causal pre-norm transformer over bytes (vocabulary 256, learned position
embeddings). Its attention is :func:`charact.attention.gaincell.gaincell_attention` with a
:class:`GainCellConfig`: plain sliding-window softmax (``GainCellConfig.ideal``) or the
gain-cell hardware. Three ways to get a gain-cell model, after the seed paper (N. Leroux,
P.-P. Manea et al., arXiv 2409.19315: pre-trained weights adapted to the hardware with a
co-designed initialization and a short fine-tune):

* ``gaincell``: the ideal model's weights as they are, on the hardware (direct transfer);
* ``mapped``: the co-designed initialization alone (:func:`adapt_to_gaincell`): per head,
  Q, K and V rescaled so that a high quantile of each fills the cells' range (longest
  pulse, full stored swing), then a score gain chosen from a few so that the hard-sigmoid
  readout's output is closest to the softmax output, and an output gain that undoes the
  difference in scale (a softmax row sums to 1, a hard-sigmoid row does not);
* ``adapted``: ``mapped``, then fine-tuned with the gain-cell effects in the forward pass
  (a fresh simulated chip per step; straight-through gradients through the quantizers).

The rescalings are per-head gains applied to Q, K, V and the head's output (buffers of
:class:`Attention`), the same as scaling rows of W_Q, W_K, W_V and columns of W_O.

Metrics on the held-out entries (split by entry, :func:`charact.attention.text.fortune_corpus`):
mean negative log-likelihood per byte, bits per byte (= per character for this text,
almost all ASCII), perplexity, next-byte accuracy, each with its standard error over the
evaluated sequences.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from charact.attention.gaincell import (
    GainCellChip,
    GainCellConfig,
    chip_generator,
    draw_chip,
    gaincell_attention,
    load_hardware,
)
from charact.errors import UserError

VOCAB = 256
VARIANTS = ("ideal", "gaincell", "mapped", "adapted")


def _positive_int(obj: Any, *names: str) -> None:
    for name in names:
        val = getattr(obj, name)
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise UserError(f"{name} must be an integer >= 1, got {val!r}")


def _positive_float(obj: Any, *names: str) -> None:
    for name in names:
        val = getattr(obj, name)
        if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val) \
                or val <= 0:
            raise UserError(f"{name} must be a finite number > 0, got {val!r}")


@dataclass(frozen=True)
class LMConfig:
    """Shape of the language model: ``d_model`` wide, ``n_layers`` blocks of
    ``n_heads`` heads, ``context`` bytes, an MLP ``mlp_ratio`` times wider."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    context: int = 64
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        _positive_int(self, "d_model", "n_layers", "n_heads", "context", "mlp_ratio")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model {self.d_model} is not a multiple of n_heads "
                            f"{self.n_heads}")


@dataclass(frozen=True)
class LMTrainConfig:
    """Optimizer and budget: ``steps`` of AdamW on ``batch`` random windows of the
    training text, lr warmed up linearly over ``warmup`` steps then cosine-decayed to
    zero, gradients clipped to norm ``grad_clip``."""

    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        _positive_int(self, "steps", "batch")
        _positive_float(self, "lr", "grad_clip")
        if self.warmup < 0 or self.weight_decay < 0:
            raise UserError("warmup and weight_decay must be >= 0")


class Attention(nn.Module):
    """Multi-head causal attention whose kernel is a :class:`GainCellConfig`.

    ``q_gain``/``k_gain``/``v_gain``/``out_gain`` (per head, buffers): the mapping of
    :func:`adapt_to_gaincell`; q starts at 1/sqrt(d_head), the usual softmax scale, the
    others at 1.
    """

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.h, self.dh = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.wq = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wo = nn.Linear(cfg.d_model, cfg.d_model)
        self.register_buffer("q_gain", torch.full((self.h,), self.dh ** -0.5))
        self.register_buffer("k_gain", torch.ones(self.h))
        self.register_buffer("v_gain", torch.ones(self.h))
        self.register_buffer("out_gain", torch.ones(self.h))

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V as (B, H, L, d_head), gains applied."""
        b, n, _ = x.shape

        def split(t: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.h, self.dh).transpose(1, 2) * gain.view(1, -1, 1, 1)

        return (split(self.wq(x), self.q_gain), split(self.wk(x), self.k_gain),
                split(self.wv(x), self.v_gain))

    def forward(self, x: torch.Tensor, config: GainCellConfig, chip: GainCellChip | None,
                generator: torch.Generator | None) -> torch.Tensor:
        q, k, v = self.qkv(x)
        o = gaincell_attention(q, k, v, config, chip=chip, generator=generator).out
        o = o * self.out_gain.view(1, -1, 1, 1)
        b, _, n, _ = o.shape
        return self.wo(o.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model), nn.GELU(),
                                 nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model))

    def forward(self, x: torch.Tensor, config: GainCellConfig, chip: GainCellChip | None,
                generator: torch.Generator | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), config, chip, generator)
        return x + self.mlp(self.ln2(x))


class ByteLM(nn.Module):
    """Causal byte-level transformer; ``attention`` is the kernel every layer uses."""

    def __init__(self, cfg: LMConfig, attention: GainCellConfig) -> None:
        super().__init__()
        self.cfg, self.attention = cfg, attention
        self.tok = nn.Embedding(VOCAB, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, VOCAB)
        #: simulated chip whose deviations every layer uses (None: a fresh one per call)
        self.chip_seed: int | None = None
        self._chips: dict[tuple, GainCellChip] = {}

    def chip_for(self, layer: int, device: Any) -> GainCellChip | None:
        """Layer ``layer``'s deviations on chip :attr:`chip_seed` (cached)."""
        cfg = self.attention
        if self.chip_seed is None or not cfg.has_chip:
            return None
        dh = self.cfg.d_model // self.cfg.n_heads
        slots = cfg.window or self.cfg.context
        key = (self.chip_seed, layer, slots, cfg.multiply, cfg.cell_spread,
               cfg.retention, cfg.retention_spread, cfg.readout_spread)
        if key not in self._chips:
            self._chips[key] = draw_chip(cfg, self.cfg.n_heads, dh, dh, slots,
                                         chip_generator(self.chip_seed, layer), device)
        return self._chips[key]

    def forward(self, idx: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        n = idx.shape[1]
        if n > self.cfg.context:
            raise UserError(f"sequence of {n} bytes is longer than the context "
                            f"{self.cfg.context}")
        x = self.tok(idx) + self.pos(torch.arange(n, device=idx.device))
        for i, blk in enumerate(self.blocks):
            x = blk(x, self.attention, self.chip_for(i, idx.device), generator)
        return self.head(self.ln(x))


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as int64."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


def random_batch(data: torch.Tensor, batch: int, context: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows of ``context + 1`` bytes at random offsets: inputs and targets."""
    start = torch.randint(0, data.numel() - context - 1, (batch,), generator=generator)
    win = torch.stack([data[s:s + context + 1] for s in start.tolist()])
    return win[:, :-1], win[:, 1:]


def eval_windows(data: torch.Tensor, n_seqs: int, context: int) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """``n_seqs`` windows at evenly spaced offsets of the held-out text (fixed)."""
    if data.numel() < context + 2:
        raise UserError(f"held-out text of {data.numel()} bytes is shorter than the context")
    starts = np.linspace(0, data.numel() - context - 1, n_seqs).astype(np.int64)
    win = torch.stack([data[int(s):int(s) + context + 1] for s in starts])
    return win[:, :-1], win[:, 1:]


def train_lm(model: ByteLM, data: torch.Tensor, cfg: LMTrainConfig, seed: int,
             generator: torch.Generator | None = None) -> list[float]:
    """Train ``model`` in place (its :attr:`ByteLM.attention` in the loop); batches from
    ``seed``; ``generator`` drives the hardware's draws. Returns the loss per step."""
    batches = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=cfg.lr)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    for _ in range(cfg.steps):
        x, y = random_batch(data, cfg.batch, model.cfg.context, batches)
        logits = model(x, generator)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def evaluate_lm(model: ByteLM, x: torch.Tensor, y: torch.Tensor, batch: int = 32,
                generator: torch.Generator | None = None) -> dict[str, float]:
    """NLL per byte (nats), bits per byte, perplexity and next-byte accuracy on (x, y),
    each with the standard error over the sequences."""
    model.eval()
    nll, acc = [], []
    for i in range(0, x.shape[0], batch):
        logits = model(x[i:i + batch], generator)
        lp = torch.log_softmax(logits.double(), dim=-1)
        tgt = y[i:i + batch]
        nll.append(-lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).mean(dim=1))
        acc.append((logits.argmax(dim=-1) == tgt).double().mean(dim=1))
    n = torch.cat(nll).numpy()
    a = torch.cat(acc).numpy()

    def se(z: np.ndarray) -> float:
        return float(z.std(ddof=1) / math.sqrt(z.size)) if z.size > 1 else math.nan

    mean_nll = float(n.mean())
    return {"nll": mean_nll, "nll_se": se(n), "bpc": mean_nll / math.log(2),
            "bpc_se": se(n) / math.log(2), "ppl": math.exp(mean_nll),
            "ppl_se": math.exp(mean_nll) * se(n), "accuracy": float(a.mean()),
            "accuracy_se": se(a), "n_seqs": int(n.size), "n_tokens": int(y.numel())}


# -- co-designed initialization -------------------------------------------------------------

#: score gains tried per head by the mapping (powers of two around 1)
SCORE_GAINS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: quantile of |Q|, |K|, |V| per head that is mapped to the cells' full range
RANGE_QUANTILE = 0.999


@torch.no_grad()
def _layer_inputs(model: ByteLM, x: torch.Tensor) -> list[torch.Tensor]:
    """The normed input of every attention layer on ``x`` (ideal kernel as set)."""
    seen: list[torch.Tensor] = []
    hooks = [blk.attn.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
             for blk in model.blocks]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@torch.no_grad()
def adapt_to_gaincell(model: ByteLM, hardware: GainCellConfig, x: torch.Tensor
                      ) -> list[dict[str, Any]]:
    """Map an ideal model onto gain-cell ``hardware`` in place (its kernel becomes
    ``hardware``) from calibration inputs ``x``; returns the gains chosen per layer.

    Per layer and head, on the ideal model's own activations: Q, K and V gains so that the
    :data:`RANGE_QUANTILE` quantile of each fills its digital full range; then, for each
    score gain in :data:`SCORE_GAINS` (applied to Q, clipping where it goes beyond),
    the hardware attention without spread or droop, with the least-squares output gain
    against the ideal output; the score gain with the smallest relative error wins.
    """
    ideal_cfg = model.attention
    inputs = _layer_inputs(model, x)
    probe = hardware.with_(cell_spread=False, readout_spread=False, retention=False,
                           retention_spread=False, readout_noise=0.0)
    load_hardware(probe)  # a bad table is one line before any work
    chosen = []
    for blk, inp in zip(model.blocks, inputs, strict=True):
        att = blk.attn
        q, k, v = att.qkv(inp)
        ref = gaincell_attention(q, k, v, ideal_cfg).out
        fulls = (hardware.q_full, hardware.k_full, hardware.v_full)
        scale = []
        for t, full in zip((q, k, v), fulls, strict=True):
            a = t.abs().transpose(0, 1).reshape(att.h, -1)
            qs = torch.quantile(a[:, :: max(1, a.shape[1] // 100_000)], RANGE_QUANTILE, dim=1)
            scale.append(full / qs.clamp_min(1e-8))
        sq, sk, sv = scale
        best_err = torch.full((att.h,), float("inf"))
        best_gain = torch.ones(att.h)
        best_out = torch.ones(att.h)
        for g in SCORE_GAINS:
            qh = q * (sq * g).view(1, -1, 1, 1)
            out = gaincell_attention(qh, k * sk.view(1, -1, 1, 1), v * sv.view(1, -1, 1, 1),
                                     probe).out / sv.view(1, -1, 1, 1)
            # least-squares output gain per head, then the relative error it leaves
            num = (out * ref).sum(dim=(0, 2, 3))
            den = (out * out).sum(dim=(0, 2, 3)).clamp_min(1e-30)
            kappa = num / den
            err = ((out * kappa.view(1, -1, 1, 1) - ref) ** 2).sum(dim=(0, 2, 3)) \
                / (ref ** 2).sum(dim=(0, 2, 3)).clamp_min(1e-30)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_gain = torch.where(better, torch.tensor(g), best_gain)
            best_out = torch.where(better, kappa, best_out)
        att.q_gain.mul_(sq * best_gain)
        att.k_gain.mul_(sk)
        att.v_gain.mul_(sv)
        att.out_gain.mul_(best_out / sv)
        chosen.append({"score_gain": best_gain.tolist(), "output_gain": best_out.tolist(),
                       "rel_error": best_err.tolist()})
    model.attention = hardware
    model._chips.clear()
    return chosen


# -- the study ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retention:
    """A retention condition: ``t_token`` seconds per token at ``temp`` C; ``t_token``
    0 means no droop."""

    t_token: float
    temp: float = 27.0

    @property
    def label(self) -> str:
        return "none" if self.t_token == 0 else f"{self.t_token:g}s@{self.temp:g}C"


@dataclass(frozen=True)
class LMStudySpec:
    """What ``charact lm`` runs.

    ``windows``: sliding windows W swept (tokens, each <= ``model.context``);
    ``retentions``: conditions evaluated; ``adapt_retention``: the one fine-tuned with;
    ``seeds``: training seeds (initial weights and batch order); ``chips``: simulated chips
    per gain-cell evaluation (chip c of seed s is chip seed ``1000 s + c``);
    ``variants``: rows of the table (see :data:`VARIANTS`); ``finetune``: the adapted
    model's fine-tune; ``eval_seqs``: held-out windows evaluated; ``calib_seqs``: training
    windows the mapping looks at; ``categories``: fortunes categories (empty: all);
    ``hardware``: the gain-cell setting (window, t_token and temp are set per row);
    ``finetune_spread``: whether the fine-tune also draws the per-chip spreads (each step a
    new chip; off: the deterministic effects only, about three times faster).
    """

    model: LMConfig = field(default_factory=LMConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)
    finetune: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(
        steps=150, lr=1e-3, warmup=10))
    windows: tuple[int, ...] = (16, 64)
    retentions: tuple[Retention, ...] = (Retention(0.0), Retention(1e-7, 27.0),
                                         Retention(1e-7, 85.0), Retention(1e-6, 27.0))
    adapt_retention: Retention = Retention(1e-7, 27.0)
    seeds: tuple[int, ...] = (0,)
    chips: int = 3
    variants: tuple[str, ...] = VARIANTS
    eval_seqs: int = 128
    calib_seqs: int = 64
    categories: tuple[str, ...] = ()
    hardware: GainCellConfig = field(default_factory=GainCellConfig)
    finetune_spread: bool = False

    def __post_init__(self) -> None:
        _positive_int(self, "chips", "eval_seqs", "calib_seqs")
        if not self.windows or not self.seeds or not self.variants or not self.retentions:
            raise UserError("windows, seeds, variants and retentions must not be empty")
        for w in self.windows:
            if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= self.model.context:
                raise UserError(f"window {w!r} must be an integer in 1..context "
                                f"({self.model.context})")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise UserError(f"seeds must be integers >= 0, got {s!r}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise UserError(f"unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
        for r in (*self.retentions, self.adapt_retention):
            if not (math.isfinite(r.t_token) and r.t_token >= 0 and math.isfinite(r.temp)):
                raise UserError(f"retention t_token must be >= 0 and temp finite, got "
                                f"{r.t_token}, {r.temp}")
        if len(set(self.windows)) != len(self.windows) or len(set(self.seeds)) != len(self.seeds):
            raise UserError("windows and seeds must not repeat")

    def row_hardware(self, window: int, ret: Retention) -> GainCellConfig:
        """The gain-cell setting of one row."""
        return self.hardware.with_(window=window, retention=ret.t_token > 0,
                                   t_token=ret.t_token, temp=ret.temp)

    def check_tables(self) -> None:
        """Load the tables at every condition, so a temperature outside the retention
        table or a bad model file is one line before any training."""
        if any(v != "ideal" for v in self.variants):
            for ret in (*self.retentions, self.adapt_retention):
                load_hardware(self.row_hardware(self.windows[0], ret).with_(retention=True))

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for provenance)."""
        def plain(obj: Any) -> Any:
            if hasattr(obj, "__dataclass_fields__"):
                return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
            if isinstance(obj, tuple | list):
                return [plain(o) for o in obj]
            return obj
        return plain(self)


def _row(base: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    return {**base, **metrics}


def run_study(spec: LMStudySpec, log: Any = print) -> tuple[list[dict[str, Any]],
                                                           dict[str, Any]]:
    """Train, map, fine-tune and evaluate every row of ``spec``; returns the rows (one per
    variant, window, retention, seed and chip) and run facts (timings, chosen gains)."""
    from charact.attention.text import fortune_corpus

    spec.check_tables()
    train_text, test_text = fortune_corpus(list(spec.categories) or None, seed=0)
    train, test = encode(train_text), encode(test_text)
    ctx = spec.model.context
    xe, ye = eval_windows(test, spec.eval_seqs, ctx)
    rows: list[dict[str, Any]] = []
    facts: dict[str, Any] = {"train_bytes": int(train.numel()), "test_bytes": int(test.numel()),
                             "timings_s": {}, "mapping": {}}
    for seed in spec.seeds:
        for w in spec.windows:
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            ideal = ByteLM(spec.model, GainCellConfig.ideal(w))
            losses = train_lm(ideal, train, spec.train, seed)
            facts["timings_s"][f"train_w{w}_s{seed}"] = round(time.perf_counter() - t0, 1)
            base = {"seed": seed, "window": w}
            m = evaluate_lm(ideal, xe, ye)
            log(f"seed {seed} W {w}: ideal bpc {m['bpc']:.3f} (final train loss "
                f"{np.mean(losses[-50:]):.3f})")
            if "ideal" in spec.variants:
                rows.append(_row({**base, "variant": "ideal", "retention": "-", "t_token": 0.0,
                                  "temp": math.nan, "chip": -1}, m))
            state = {k: t.clone() for k, t in ideal.state_dict().items()}
            xc, _ = random_batch(train, spec.calib_seqs, ctx,
                                 torch.Generator().manual_seed(10_000 + seed))
            models: dict[str, ByteLM] = {}
            if "gaincell" in spec.variants:
                models["gaincell"] = ideal
            if "mapped" in spec.variants or "adapted" in spec.variants:
                mapped = ByteLM(spec.model, GainCellConfig.ideal(w))
                mapped.load_state_dict(state)
                gains = adapt_to_gaincell(mapped, spec.row_hardware(w, spec.adapt_retention), xc)
                facts["mapping"][f"w{w}_s{seed}"] = gains
                if "mapped" in spec.variants:
                    models["mapped"] = mapped
                if "adapted" in spec.variants:
                    t0 = time.perf_counter()
                    hw_ft = mapped.attention
                    if not spec.finetune_spread:
                        hw_ft = hw_ft.with_(cell_spread=False, readout_spread=False,
                                            retention_spread=False)
                    adapted = ByteLM(spec.model, hw_ft)
                    adapted.load_state_dict(mapped.state_dict())
                    adapted.chip_seed = None  # a fresh chip per step
                    ft = train_lm(adapted, train, spec.finetune, 20_000 + seed,
                                  torch.Generator().manual_seed(30_000 + seed))
                    facts["timings_s"][f"finetune_w{w}_s{seed}"] = round(
                        time.perf_counter() - t0, 1)
                    log(f"seed {seed} W {w}: fine-tune loss {ft[0]:.3f} -> "
                        f"{np.mean(ft[-20:]):.3f}")
                    models["adapted"] = adapted
            for variant, model in models.items():
                for ret in spec.retentions:
                    model.attention = spec.row_hardware(w, ret)
                    for c in range(spec.chips):
                        model.chip_seed = 1000 * seed + c
                        model._chips.clear()
                        noise = torch.Generator().manual_seed(40_000 + 1000 * seed + c)
                        m = evaluate_lm(model, xe, ye, generator=noise)
                        rows.append(_row({**base, "variant": variant, "retention": ret.label,
                                          "t_token": ret.t_token, "temp": ret.temp,
                                          "chip": model.chip_seed}, m))
                    last = [r["bpc"] for r in rows[-spec.chips:]]
                    log(f"seed {seed} W {w} {variant} {ret.label}: bpc "
                        f"{np.mean(last):.3f} over {spec.chips} chips")
    return rows, facts


def replace_spec(spec: LMStudySpec, **kw: Any) -> LMStudySpec:
    """A copy of ``spec`` with fields changed (validated again)."""
    return replace(spec, **kw)


__all__ = ["VARIANTS", "Attention", "ByteLM", "LMConfig", "LMStudySpec", "LMTrainConfig",
           "Retention", "adapt_to_gaincell", "encode", "eval_windows", "evaluate_lm",
           "random_batch", "replace_spec", "run_study", "train_lm"]
