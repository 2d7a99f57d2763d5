"""The attention function of the topkima hardware, step by step.

``topkima_attention(q, k, v, config)`` runs, for each head::

    Q, K, V quantized (QAT)  ->  S = Q . K^T (the SRAM MAC)
    -> ramp-ADC codes (+ injected code error)  ->  top-k by the decreasing ramp
    -> softmax over the k kept keys (dequantized codes)  ->  A quantized
    -> A . V (+ its own ADC and injected code error)

Scale-free (paper III-C): the pipeline never divides the scores by sqrt(d_k). The model
carries the factor in W_Q: :class:`charact.attention.vit.TopkimaViT` computes
``q = x W_Q`` with no scale and initialises W_Q 1/sqrt(d_k) smaller; the Hugging Face
patch (:mod:`charact.attention.hf`) folds ``scaling`` into the query projection's weight
and bias once, at conversion.

ADC calibration: the ramp maps a score window ``[qk_lo, qk_hi]`` onto the ``n_codes``
codes (ramp start = top, one ramp step = one LSB); in the circuit the 32 replica rows
fired together set the start and the 32 fired one per cycle set the step. A model keeps
the window per head (each head's keys sit on their own crossbars with their own replica
rows) as averages over calibration batches (:func:`batch_ranges`): the start at the
99 % quantile of the per-query largest score, so the first cycle is not wasted on a start
far above almost every query's top key yet only ~1 % of queries have their top key above
it (it still crosses first), and the end at the 1 % quantile of all scores, so the full
softmax (k = all) still sees the whole useful range. The ViT evaluates with it (and trains
with it or with per-sample ranges, see :mod:`charact.attention.vit`). Without a
calibration the window is taken per (sample, head) from that sample's own valid scores.
Q, K, V and A.V scales are, per head, the average of each sample's absolute maximum, or
per (sample, head) when no calibration is given.

Why this start: a few queries per image (about 1-2 %, e.g. the CLS token's) score several
times higher than the rest (first ViT layer: 90 % of row maxima below ~8, the 99 %
quantile 30-60). Evaluating one TFCBP k = 5 Fashion-MNIST model with other starts, a
lower one (90-97 % quantile) saturates exactly those queries' keys in the first cycle (accuracy
-16 to -32 points), the per-layer batch maximum makes the ramp step twice as coarse and
doubles the ties at the stopping code (-5 points).

What alpha (the fraction of the ramp run before k keys have crossed) then measures is where
each query's k-th largest score sits in that static window: it grows with the window's
width against the spread of the top scores, with k / L (5 of 65 ViT tokens is the top 8 %,
5 of BERT's 384 the top 1.3 %), and with how much the queries, heads and inputs differ
(the window must cover all of them).

With ``k=None``, ``quantize=False``, ``adc=False`` and no error models the function is
plain softmax attention (no scaling): ``softmax(q k^T + mask) v``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from charact.attention.quant import (
    ForwardValue,
    adc_dequantize,
    adc_levels,
    k_max_level_from_cells,
    q_max_level,
    quantize_probs_,
    quantize_symmetric,
    quantize_unsigned,
    signed_max_level,
)
from charact.attention.topk import RampSelection, ramp_drop_offsets, ramp_topk, score_topk
from charact.errors import UserError

TRAINING_MODES = ("tfcbp", "topk")


@dataclass(frozen=True)
class AttentionConfig:
    """What the hardware does to one attention call.

    ``k``: keys kept per query (None = all). ``n_bits_q``: Q magnitude bits (sign apart);
    ``n_bits_k``: K signed bits incl. sign (4 -> 15 levels, three ternary cells);
    ``n_bits_v``: V signed bits incl. sign; ``n_bits_a``: A unsigned bits.
    ``n_codes``: ramp-ADC codes of a score (2**n_b). ``crossbar_rows``/``crossbar_cols``:
    crossbar size (None = unlimited); ``replica_rows`` of every column go to the ramp and
    calibration, the rest hold K. ``error_model``/``av_error``: a ``CodeErrorTable`` or
    ``PointErrorModel`` (from :mod:`charact.lookup`) injected on the Q.K^T codes / the A.V
    codes; a structured model (a static error per physical column) is bound to one
    simulated chip and layer by :func:`bind_chip` first. ``av_codes``: ADC codes of the
    A.V output (None = no ADC there unless ``av_error`` sets it).
    ``training_mode``: gradient of the top-k softmax: "tfcbp" (the full softmax's, paper
    III-B) or "topk" (through the top-k softmax itself).
    """

    k: int | None = None
    quantize: bool = False
    adc: bool = False
    n_bits_q: int = 5
    n_bits_k: int = 4
    n_bits_v: int = 5
    n_bits_a: int = 5
    n_codes: int = 32
    crossbar_rows: int | None = None
    crossbar_cols: int | None = None
    replica_rows: int = 64
    error_model: Any = None
    av_error: Any = None
    av_codes: int | None = None
    training_mode: str = "tfcbp"

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise UserError(f"k must be >= 1 or None (all keys), got {self.k}")
        for name in ("n_bits_q", "n_bits_a"):
            if not 1 <= getattr(self, name) <= 16:
                raise UserError(f"{name} must be in 1..16, got {getattr(self, name)}")
        for name in ("n_bits_k", "n_bits_v"):
            if not 2 <= getattr(self, name) <= 16:
                raise UserError(
                    f"{name} must be in 2..16 (sign included), got {getattr(self, name)}"
                )
        if self.n_codes < 2:
            raise UserError(f"n_codes must be >= 2, got {self.n_codes}")
        if self.training_mode not in TRAINING_MODES:
            raise UserError(
                f"unknown training_mode {self.training_mode!r}; "
                f"choose from {', '.join(TRAINING_MODES)}"
            )
        if self.crossbar_cols is not None and self.crossbar_cols < 1:
            raise UserError(f"crossbar_cols must be >= 1, got {self.crossbar_cols}")
        if self.crossbar_rows is not None and self.crossbar_rows <= self.replica_rows:
            raise UserError(
                f"a crossbar of {self.crossbar_rows} rows leaves no rows for the MAC after "
                f"{self.replica_rows} replica rows"
            )
        if self.error_model is not None:
            if not self.adc:
                raise UserError("an error model on Q.K^T needs adc=True (it acts on ADC codes)")
            if int(self.error_model.n_codes) != self.n_codes:
                raise UserError(
                    f"error model has {self.error_model.n_codes} codes but the ADC has "
                    f"{self.n_codes}"
                )
        av = self.av_error
        if av is not None and self.av_codes is not None and int(av.n_codes) != self.av_codes:
            raise UserError(
                f"A.V error model has {av.n_codes} codes but av_codes={self.av_codes}"
            )

    @classmethod
    def hardware(cls, k: int | None = 5, **kw: Any) -> AttentionConfig:
        """The topkima setting: QAT on Q, K, V, A, 5-bit ramp ADC, top-``k``."""
        return cls(k=k, quantize=True, adc=True, **kw)

    def with_(self, **kw: Any) -> AttentionConfig:
        """A copy with some fields changed."""
        return replace(self, **kw)

    def k_cells(self, d_k: int) -> int:
        """Ternary cells per K weight: ``(rows - replica_rows) // d_k``, at most ``n_bits_k - 1``.

        A 256-row crossbar with d_k = 64 leaves 192 rows -> 3 cells (-7..7); a 128-row one
        leaves 64 -> 1 cell (ternary), as in paper IV-B.
        """
        cells = self.n_bits_k - 1
        if self.crossbar_rows is not None:
            cells = min(cells, (self.crossbar_rows - self.replica_rows) // d_k)
        if cells < 1:
            raise UserError(
                f"a {self.crossbar_rows}-row crossbar cannot hold d_k={d_k} weights "
                f"({self.crossbar_rows - self.replica_rows} MAC rows)"
            )
        return cells

    def k_max_level(self, d_k: int) -> int:
        """Largest |K| integer level for head size ``d_k`` on this crossbar."""
        return k_max_level_from_cells(self.k_cells(d_k))

    def av_n_codes(self) -> int | None:
        """ADC codes on the A.V output, or None when it is not converted."""
        if self.av_codes is not None:
            return self.av_codes
        if self.av_error is not None:
            return int(self.av_error.n_codes)
        return None


@dataclass
class AttentionCalibration:
    """Fixed scales and ADC windows of one layer; a None entry is taken from the data."""

    q_scale: torch.Tensor | None = None
    k_scale: torch.Tensor | None = None
    v_scale: torch.Tensor | None = None
    qk_lo: torch.Tensor | None = None
    qk_hi: torch.Tensor | None = None
    av_lo: torch.Tensor | None = None
    av_hi: torch.Tensor | None = None


@dataclass
class AttentionResult:
    """Output (B, H, Lq, Dv), probabilities (B, H, Lq, Lk), and what was measured.

    ``levels``: the Q.K^T codes as converted (after any injected error), exact integers in
    the scores' float dtype; :attr:`codes` gives them as int32.
    """

    out: torch.Tensor
    probs: torch.Tensor
    ranges: dict[str, torch.Tensor]
    selection: RampSelection | None = None
    levels: torch.Tensor | None = None

    @property
    def codes(self) -> torch.Tensor | None:
        """The Q.K^T ADC codes (int32), or None without the ADC."""
        return None if self.levels is None else self.levels.to(torch.int32)


def mask_parts(
    mask: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Split a mask into ``valid`` (bool, True = attend) and an additive ``bias`` (or None).

    Accepts a bool mask (True = attend) or an additive float mask (0 / very negative, as
    Hugging Face's eager masks), each broadcastable to ``shape`` (B, H, Lq, Lk).
    """
    if mask is None:
        return None, None
    if mask.dtype == torch.bool:
        return mask, None
    valid = mask > torch.finfo(mask.dtype).min / 2
    bias = mask.to(dtype).masked_fill(~valid, 0.0)
    if not bool(bias.ne(0).any()):
        bias = None
    return valid, bias


def _amax_per_head(x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """|x| maximum per (sample, head), over the valid token rows only."""
    a = x.detach().abs()
    if rows is not None:
        a = a.masked_fill(~rows.unsqueeze(-1), 0.0)
    return a.amax(dim=(-2, -1), keepdim=True)


def _token_rows(
    valid: torch.Tensor | None, shape: torch.Size
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Valid key rows (B, H, Lk) and, for self-attention, valid query rows (B, H, Lq).

    A key column masked for every query is padding; in self-attention (Lq == Lk) the
    query at a padded position is padding too. Data-driven scales and ADC windows skip
    them, so a padded sample gets exactly the numbers it gets alone.
    """
    if valid is None:
        return None, None
    full = valid.expand(shape)
    key_rows = full.any(dim=-2)
    q_rows = key_rows if shape[-1] == shape[-2] else None
    return key_rows, q_rows


RAMP_START_QUANTILE = 0.99
RAMP_END_QUANTILE = 0.01
_QUANTILE_SAMPLES = 16384


def _per_head_quantile(x: torch.Tensor, keep: torch.Tensor | None, q: float) -> torch.Tensor:
    """The ``q`` quantile of ``x`` (B, H, ...) per head over the entries ``keep`` marks,
    shape (H, 1, 1); a strided subsample of at most ~16k entries per head keeps it cheap.
    A head with no kept entry gets 0."""
    h = x.shape[1]
    xs = x.detach().transpose(0, 1).reshape(h, -1)
    ks = None if keep is None else keep.expand_as(x).transpose(0, 1).reshape(h, -1)
    out = torch.zeros(h, dtype=x.dtype, device=x.device)
    rows = [xs] if ks is None else [xs[i][ks[i]] for i in range(h)]
    for i, vals in enumerate(rows):
        if vals.numel() == 0:
            continue
        sub = vals[..., :: max(1, vals.shape[-1] // _QUANTILE_SAMPLES)].float()
        kth = min(sub.shape[-1], max(1, round(q * sub.shape[-1])))
        val = torch.kthvalue(sub, kth, dim=-1).values.to(x.dtype)
        if ks is None:
            out = val
            break
        out[i] = val
    return out.view(h, 1, 1)


def batch_ranges(
    scores: torch.Tensor, valid: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor,
    v: torch.Tensor, out: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Per-batch statistics a model averages into its calibration (detached), per head
    (shape (H, 1, 1)).

    Q/K/V/A.V scales: the mean over the batch's samples of each (sample, head)'s absolute
    maximum over its valid tokens, i.e. the average of the scales that per-sample
    quantization (how the models train) uses. Not the batch maximum: one outlier token in
    a batch sets that, and a static scale far above a typical sample's range rounds most
    of its values to zero; on a ternary K (paper128) it cost 40 points of accuracy
    (Fashion-MNIST TFCBP k = 5, 43.9 % against 83.2 %). The ramp-ADC window (shape
    (H, 1, 1); each head's keys sit on their own crossbars, whose replica rows set their own
    ramp): ``qk_hi`` (ramp start) = the :data:`RAMP_START_QUANTILE` quantile of the per-query
    largest score, so about 1 % of queries have their top key above the start (it still
    crosses first); ``qk_lo`` (ramp end) = the :data:`RAMP_END_QUANTILE` quantile of all
    valid scores. Quantiles, unlike a batch maximum, do not grow with the batch size.
    """
    s = scores.detach()
    neg = float("-inf")
    row_max = (s if valid is None else s.masked_fill(~valid, neg)).amax(dim=-1)
    rows_ok = torch.isfinite(row_max)
    key_rows, q_rows = _token_rows(valid, s.shape)
    ranges = {
        "q_absmax": _amax_per_head(q, q_rows).mean(dim=0),
        "k_absmax": _amax_per_head(k, key_rows).mean(dim=0),
        "v_absmax": _amax_per_head(v, key_rows).mean(dim=0),
        "qk_hi": _per_head_quantile(row_max, None if valid is None else rows_ok,
                                    RAMP_START_QUANTILE),
        "qk_lo": _per_head_quantile(s, valid, RAMP_END_QUANTILE),
    }
    if out is not None:
        ranges["av_absmax"] = _amax_per_head(out, q_rows).mean(dim=0)
    return ranges


def _pick(value: torch.Tensor | None, fallback: torch.Tensor) -> torch.Tensor:
    return fallback if value is None else value


def _data_window(
    s: torch.Tensor, valid: torch.Tensor | None, q_rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ADC window ``(lo, hi)`` per (sample, head) from that sample's own valid scores."""
    if valid is None:
        return s.amin(dim=(-2, -1), keepdim=True), s.amax(dim=(-2, -1), keepdim=True)
    v_exp = valid.expand_as(s)
    if q_rows is not None:
        v_exp = v_exp & q_rows.unsqueeze(-1)
    hi = s.masked_fill(~v_exp, float("-inf")).amax(dim=(-2, -1), keepdim=True)
    lo = s.masked_fill(~v_exp, float("inf")).amin(dim=(-2, -1), keepdim=True)
    hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    return lo, hi


def bind_chip(config: AttentionConfig, chip: int, layer: int) -> AttentionConfig:
    """``config`` with its error models bound to array ``layer`` of simulated chip ``chip``.

    Physical columns: on Q.K^T each key position of each head (its column on its
    crossbar: sub-top-k splits the same positions over crossbars, so position j is one
    column either way); on A.V each output column (d_v) of each head. The Q.K^T and A.V
    arrays of a layer, and the layers, are different silicon (their own draws).
    An error model without a static part comes back as it is, so sampling, and with it
    every output for a given generator seed, is exactly what it was before chips.
    """
    def bound(model: Any, site: str) -> Any:
        bind = getattr(model, "for_chip", None)
        return model if bind is None else bind(chip, layer, site)

    if config.error_model is None and config.av_error is None:
        return config
    return config.with_(error_model=bound(config.error_model, "qk"),
                        av_error=bound(config.av_error, "av"))


def topkima_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: AttentionConfig,
    mask: torch.Tensor | None = None,
    calib: AttentionCalibration | None = None,
    generator: torch.Generator | None = None,
    measure: bool = False,
    selection_stats: bool | None = None,
) -> AttentionResult:
    """Hardware attention on ``q`` (B, H, Lq, d_k), ``k`` (B, H, Lk, d_k), ``v`` (B, H, Lk, d_v).

    ``measure`` also returns the batch statistics for calibration and the ramp selection;
    ``selection_stats`` (default: ``measure``) whether that selection carries the stopping
    cycles (training needs the ranges, not the statistics).
    ``generator`` drives the injected errors; it must live on the tensors' device (a
    UserError otherwise). None: torch's default generator of that device, so
    ``torch.manual_seed`` makes a run reproducible on the CPU and on a GPU alike.
    """
    cal = calib or AttentionCalibration()
    if generator is not None and generator.device.type != q.device.type:
        raise UserError(f"the error generator is on {generator.device} but the tensors on "
                        f"{q.device}: create it there, torch.Generator(device=...)")
    stats = measure if selection_stats is None else selection_stats
    d_k = q.shape[-1]
    q_raw, k_raw, v_raw = q, k, v
    score_shape = torch.Size((*q.shape[:-1], k.shape[-2]))
    valid, bias = mask_parts(mask, score_shape, q.dtype)
    key_rows, q_rows = _token_rows(valid, score_shape)
    if config.quantize:
        q_lv = q_max_level(config.n_bits_q)
        k_lv = config.k_max_level(d_k)
        v_lv = signed_max_level(config.n_bits_v)
        q = quantize_symmetric(q, q_lv, _pick(cal.q_scale, _amax_per_head(q, q_rows) / q_lv))
        k = quantize_symmetric(k, k_lv, _pick(cal.k_scale, _amax_per_head(k, key_rows) / k_lv))
        v = quantize_symmetric(v, v_lv, _pick(cal.v_scale, _amax_per_head(v, key_rows) / v_lv))

    scores = torch.matmul(q, k.transpose(-2, -1))
    if bias is not None:
        scores = scores + bias
    neg = torch.finfo(scores.dtype).min
    # inference (no gradient, no statistics): the (B, H, Lq, Lk) temporaries are reused in
    # place once dead, so a call allocates four of them (scores, codes, ramp keys,
    # probabilities) instead of eight; every value is computed by the same operations
    inference = not measure and not scores.requires_grad

    levels = None
    if config.adc:
        if cal.qk_hi is None or cal.qk_lo is None:
            lo, hi = _data_window(scores.detach(), valid, q_rows)
            lo, hi = _pick(cal.qk_lo, lo), _pick(cal.qk_hi, hi)
        else:
            lo, hi = cal.qk_lo, cal.qk_hi
        levels, inside = adc_levels(scores, lo, hi, config.n_codes)
        if config.error_model is not None:
            # noisy codes replace the ideal ones in place, still as float levels; before
            # the ramp top-k below, so a column's static error changes which keys win.
            # No generator: torch's default one of the tensors' device
            config.error_model.sample_levels_(levels, generator)
        # the raw scores are dead after the ADC unless a gradient or statistic needs them
        scores_hat = adc_dequantize(scores, levels, lo, hi, config.n_codes, inside,
                                    out=scores if inference else None)
    else:
        scores_hat = scores

    logits = scores_hat if valid is None else scores_hat.masked_fill(~valid, neg)
    selection = None
    n_keys = scores.shape[-1]
    top_k = config.k is not None and (config.k < n_keys or config.crossbar_cols is not None)
    if top_k and levels is not None and inference:
        # the ramp's selection as 0 (kept) / -1 (dropped) offsets: kept logits stay as they
        # are, dropped ones become exactly ``neg``, with float arithmetic only (see
        # ramp_drop_offsets); logits are this call's own tensor here
        off = ramp_drop_offsets(levels, config.k, config.n_codes, valid, config.crossbar_cols)
        logits.addcmul_(logits, off).add_(off, alpha=-neg)
        probs = torch.softmax(logits, dim=-1)
    else:
        # the full softmax is needed without top-k, or as TFCBP's backward
        probs = torch.softmax(logits, dim=-1) if not top_k or logits.requires_grad else logits
    if top_k and not (levels is not None and inference):
        if levels is not None:
            selection = ramp_topk(
                levels, config.k, config.n_codes, valid, config.crossbar_cols, stats=stats
            )
            keep = selection.selected
        else:
            keep = score_topk(scores_hat, config.k, valid, config.crossbar_cols)
        if config.training_mode == "tfcbp" and logits.requires_grad:
            # TFCBP: forward = top-k softmax, backward = the full softmax's gradient
            with torch.no_grad():
                probs_k = torch.softmax(torch.where(keep, logits, neg), dim=-1)
            probs = ForwardValue.apply(probs, probs_k)
        else:
            probs = torch.softmax(torch.where(keep, logits, neg), dim=-1)

    if config.quantize:
        a_lv = 2**config.n_bits_a - 1
        a_step = torch.tensor(1.0 / a_lv, dtype=probs.dtype)
        if probs.requires_grad:
            probs = quantize_unsigned(probs, a_lv, a_step)
        else:
            probs = quantize_probs_(probs, a_lv, a_step)  # probs are this call's own
    out = torch.matmul(probs, v)

    av_codes_n = config.av_n_codes()
    if av_codes_n is not None:
        top = _pick(cal.av_hi, _amax_per_head(out, q_rows))
        bot = _pick(cal.av_lo, -top)
        av_lv, av_in = adc_levels(out, bot, top, av_codes_n)
        if config.av_error is not None:
            config.av_error.sample_levels_(av_lv, generator)
        out = adc_dequantize(out, av_lv, bot, top, av_codes_n, av_in,
                             out=None if out.requires_grad else out)

    ranges: dict[str, torch.Tensor] = {}
    if measure:
        ranges = batch_ranges(scores, valid, q_raw, k_raw, v_raw, out)
    return AttentionResult(out, probs, ranges, selection if measure else None, levels)


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Plain softmax attention without scaling (the scale lives in W_Q), for comparison."""
    scores = torch.matmul(q, k.transpose(-2, -1))
    valid, bias = mask_parts(mask, scores.shape, scores.dtype)
    if bias is not None:
        scores = scores + bias
    if valid is not None:
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    return torch.matmul(torch.softmax(scores, dim=-1), v)
