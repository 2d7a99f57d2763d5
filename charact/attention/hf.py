"""Run a Hugging Face ``transformers`` model's attention through the topkima pipeline.

:func:`patch_hf_model` registers one attention function and one mask function under the
name :data:`IMPLEMENTATION` in ``transformers``' registries (``AttentionInterface``,
``AttentionMaskInterface``), switches the model to it and leaves a small state object on
every attention module. Weights are never touched: :func:`unpatch_hf_model` gives back the
model exactly as it was, and ``save_pretrained`` of a patched model writes the original
checkpoint (the attention implementation is not serialised).

Needs transformers >= 5.20 (:data:`MIN_TRANSFORMERS`; the tests pass on 5.20.2 and 5.24.0;
5.12 refuses T5, which had no attention interface yet; on 5.0 the GPT-2 check fails).
Every input the model hands the attention function is either modelled or refused
(:class:`charact.errors.UserError`, one line); nothing is dropped silently:

* ``scaling``: multiplied into the query before the pipeline (scale-free hardware: the
  factor belongs to W_Q; applying it on the fly gives the same numbers as folding it into
  W_Q, without touching the weights).
* masks: the registered mask function always materialises the boolean mask (causal,
  padding, sliding window, packed sequences), because the ``sdpa`` mask would return None
  for a plain causal mask and leave causality to a flag our function would not see.
  ``sliding_window`` is therefore already in the mask.
* grouped-/multi-query heads: K and V heads repeated to the query heads, as ``repeat_kv``.
* ``position_bias`` (T5's relative bias): added to the scores before the ADC, as an
  additive mask of the pipeline.
* dropout: refused in training (the pipeline has no place between A's quantization and the
  A.V crossbar to drop probabilities) unless ``ignore_attention_dropout=True``.
* ``softcap`` (Gemma-2's logit soft-capping) and attention sinks (``s_aux``/``sinks``): not
  modelled, refused at patch time where the config or modules show them, else at call time.
  Any other unknown keyword with a value is refused at call time.

Training mode runs exactly the evaluation pipeline (QAT, ramp ADC, top-k, the A.V ADC and
injected errors), with the pipeline's straight-through gradients.

Calibration: without one, Q/K/V scales and ADC windows are taken per (sample, head) from
the data. :func:`calibrate_hf_model` fixes them per layer and head, averaged over a few
batches exactly as :meth:`charact.attention.vit.TopkimaViT.calibrate` does
(:func:`charact.attention.pipeline.batch_ranges`); evaluation and training then use them.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from charact.attention.pipeline import (
    AttentionCalibration,
    AttentionConfig,
    bind_chip,
    topkima_attention,
)
from charact.attention.protocols import CodeErrorModel
from charact.attention.quant import q_max_level, signed_max_level
from charact.errors import UserError

IMPLEMENTATION = "charact_topkima"
"""The name the attention and mask functions are registered under."""
MIN_TRANSFORMERS = "5.20"
"""Oldest transformers release the patch was tested with (the ``charact[hf]`` bound)."""

_STATE = "_charact_topkima"  # per attention module: its _LayerState
_PATCH = "_charact_patch"  # on the model: what unpatch restores
_CAL_NAMES = ("q_absmax", "k_absmax", "v_absmax", "qk_lo", "qk_hi", "av_absmax")
# keywords whose content the mask already carries, or that eager attention ignores too
_CARRIED = frozenset({
    "sliding_window", "is_causal", "position_ids", "cache_position", "output_attentions",
    "output_hidden_states", "use_cache", "return_dict", "cu_seq_lens_q", "cu_seq_lens_k",
    "max_length_q", "max_length_k",
})


@dataclass
class _LayerState:
    """What one patched attention module runs with, and its calibration."""

    config: AttentionConfig
    generator: torch.Generator | None
    ignore_dropout: bool
    stats: dict[str, torch.Tensor] | None = None
    calibrating: bool = False
    n_seen: int = 0

    def calibration(self, d_k: int, like: torch.Tensor) -> AttentionCalibration | None:
        """The static calibration for the current config (as the ViT derives it), or None."""
        if self.stats is None or self.calibrating:
            return None
        cfg = self.config
        st = {k: v.to(device=like.device, dtype=like.dtype) for k, v in self.stats.items()}
        return AttentionCalibration(
            q_scale=st["q_absmax"] / q_max_level(cfg.n_bits_q),
            k_scale=st["k_absmax"] / cfg.k_max_level(d_k),
            v_scale=st["v_absmax"] / signed_max_level(cfg.n_bits_v),
            qk_lo=st["qk_lo"],
            qk_hi=st["qk_hi"],
            av_lo=-st["av_absmax"],
            av_hi=st["av_absmax"],
        )

    def accumulate(self, ranges: dict[str, torch.Tensor]) -> None:
        """Exact running mean over the calibration batches."""
        self.n_seen += 1
        new = {k: ranges[k].detach().clone() for k in _CAL_NAMES}
        if self.stats is None:
            self.stats = new
            return
        for k in _CAL_NAMES:
            self.stats[k] += (new[k] - self.stats[k]) / self.n_seen


@dataclass
class _Patch:
    """Each config the patch switched and its original implementation setting."""

    configs: list[tuple[Any, Any]] = field(default_factory=list)


_MISSING = object()


def _registries() -> tuple[Any, Any, Any]:
    try:
        import transformers
        from packaging.version import Version
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as exc:
        raise UserError(
            f"patching a Hugging Face model needs transformers >= {MIN_TRANSFORMERS}: "
            "pip install 'charact[hf]'"
        ) from exc
    if Version(transformers.__version__).release < Version(MIN_TRANSFORMERS).release:
        raise UserError(
            f"patching a Hugging Face model needs transformers >= {MIN_TRANSFORMERS} "
            f"(the version it was tested with), found {transformers.__version__}"
        )
    return AttentionInterface, AttentionMaskInterface, sdpa_mask


def _family(model: Any) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None) or "?"
    return f"{type(model).__name__} ({model_type})"


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"<tensor {tuple(value.shape)}>"
    return repr(value)


def _calls_attention_interface(cls: type) -> bool:
    """True for modules whose forward dispatches through transformers' attention registry."""
    try:
        src = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False
    return "attention_interface" in src or "ALL_ATTENTION_FUNCTIONS" in src


def _attention_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    seen: dict[type, bool] = {}
    found = []
    for name, mod in model.named_modules():
        cls = type(mod)
        if cls not in seen:
            seen[cls] = _calls_attention_interface(cls)
        if seen[cls]:
            found.append((name, mod))
    return found


def _all_configs(model: torch.nn.Module) -> list[Any]:
    """Every config object of the model and its sub-models (each once)."""
    from transformers import PretrainedConfig

    out: dict[int, Any] = {}
    todo = [getattr(m, "config", None) for m in model.modules()]
    while todo:
        cfg = todo.pop()
        if not isinstance(cfg, PretrainedConfig) or id(cfg) in out:
            continue
        out[id(cfg)] = cfg
        todo.extend(getattr(cfg, key, None) for key in getattr(cfg, "sub_configs", {}) or {})
    return list(out.values())


def _refuse_unmodelled(model: torch.nn.Module, modules: list[tuple[str, torch.nn.Module]]) -> None:
    """Patch-time refusal of the features the pipeline cannot reproduce."""
    family = _family(model)
    for cfg in _all_configs(model):
        cap = getattr(cfg, "attn_logit_softcapping", None)
        if cap is not None:
            raise UserError(
                f"{family}: attention logit soft-capping (attn_logit_softcapping={cap}) is not "
                "modelled by the topkima pipeline; build the model with "
                "attn_logit_softcapping=None to patch it"
            )
    for name, mod in modules:
        for attr in ("sinks", "s_aux"):
            if isinstance(getattr(mod, attr, None), torch.Tensor):
                raise UserError(
                    f"{family}: attention sinks ({name}.{attr}) are not modelled by the "
                    "topkima pipeline"
                )


def _mask_function(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """``sdpa_mask`` that never skips a causal mask (our function has no is_causal flag)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def _state(module: torch.nn.Module) -> _LayerState:
    state = getattr(module, _STATE, None)
    if not isinstance(state, _LayerState):
        raise UserError(
            f"{type(module).__name__} runs attention implementation {IMPLEMENTATION!r} but was "
            "not patched: use charact.attention.hf.patch_hf_model"
        )
    return state


def _effective_mask(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
    attention_mask: torch.Tensor | None, position_bias: torch.Tensor | None, is_causal: Any,
) -> torch.Tensor | None:
    """One mask for the pipeline: boolean, or additive float carrying the position bias."""
    lq, lk = query.shape[-2], key.shape[-2]
    mask = attention_mask
    if mask is not None:
        if mask.shape[-1] < lk:
            raise UserError(
                f"{type(module).__name__}: attention mask covers {mask.shape[-1]} keys, "
                f"the keys are {lk}"
            )
        mask = mask[..., :lk]  # static caches hand a mask as long as the cache
        if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
            mask = mask.bool()
    else:
        causal = getattr(module, "is_causal", False) if is_causal is None else is_causal
        if causal and lq > 1:
            if lq != lk:
                raise UserError(
                    f"{type(module).__name__}: causal attention without a mask for {lq} "
                    f"queries over {lk} keys is ambiguous; pass an attention mask"
                )
            mask = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril()
    if position_bias is None:
        return mask
    bias = position_bias[..., :lk].to(query.dtype)
    if mask is None:
        return bias
    if mask.dtype == torch.bool:
        return bias.masked_fill(~mask, torch.finfo(query.dtype).min)
    return mask.to(query.dtype) + bias  # additive masks add up, as in eager attention


def topkima_hf_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention function registered as :data:`IMPLEMENTATION` (transformers' calling
    convention: query (B, H, Lq, d), key/value (B, H_kv, Lk, d); returns the output
    (B, Lq, H, d) and the probabilities)."""
    state = _state(module)
    where = type(module).__name__
    position_bias = kwargs.pop("position_bias", None)
    is_causal = kwargs.pop("is_causal", None)
    for name, val in kwargs.items():
        if name not in _CARRIED and val is not None:
            raise UserError(
                f"{where} passes {name}={_short(val)} to its attention, which the topkima "
                "pipeline does not model"
            )
    if dropout and not state.ignore_dropout:
        raise UserError(
            f"{where}: attention dropout (p={dropout}) in training is not modelled by the "
            "topkima pipeline; set the model's attention dropout to 0 or patch with "
            "ignore_attention_dropout=True"
        )
    h, h_kv = query.shape[1], key.shape[1]
    if h != h_kv:
        if h % h_kv:
            raise UserError(f"{where}: {h} query heads do not share {h_kv} key/value heads")
        # grouped-/multi-query attention: query head i reads K/V head i // (h / h_kv)
        key = key.repeat_interleave(h // h_kv, dim=1)
        value = value.repeat_interleave(h // h_kv, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if scaling != 1.0:
        query = query * scaling
    mask = _effective_mask(module, query, key, attention_mask, position_bias, is_causal)
    calib = state.calibration(query.shape[-1], query)
    if calib is not None and calib.qk_hi is not None and calib.qk_hi.shape[0] != h:
        raise UserError(f"{where}: calibrated for {calib.qk_hi.shape[0]} heads, runs {h}")
    res = topkima_attention(
        query, key, value, state.config, mask=mask, calib=calib, generator=state.generator,
        measure=state.calibrating, selection_stats=False,
    )
    if state.calibrating:
        state.accumulate(res.ranges)
    return res.out.transpose(1, 2).contiguous(), res.probs


def patch_hf_model(
    model: torch.nn.Module,
    config: AttentionConfig,
    generator: torch.Generator | None = None,
    *,
    qk_error: CodeErrorModel | None = None,
    av_error: CodeErrorModel | None = None,
    chip: int | None = None,
    ignore_attention_dropout: bool = False,
) -> str:
    """Make ``model``'s attention run through the topkima pipeline; returns the
    implementation name (:data:`IMPLEMENTATION`).

    ``qk_error``/``av_error`` (e.g. a ``CodeErrorTable`` or ``PointErrorModel``) replace
    ``config.error_model`` / ``config.av_error``; ``generator`` drives them. ``chip``: the
    simulated chip whose per-column static errors a structured error model injects; the
    i-th attention module (in ``named_modules`` order) gets array i of that chip
    (:func:`~charact.attention.pipeline.bind_chip`), as the ViT's layers do. Raises
    :class:`UserError` for a model whose attention the pipeline cannot reproduce (one line
    naming the family and the feature), or one already patched. Weights are not modified.
    """
    attn_iface, mask_iface, _ = _registries()
    for what, err in (("qk_error", qk_error), ("av_error", av_error)):
        if err is not None and not isinstance(err, CodeErrorModel):
            raise UserError(f"{what} must have n_codes and sample_levels_(levels, generator)")
    if qk_error is not None:
        config = config.with_(error_model=qk_error)
    if av_error is not None:
        config = config.with_(av_error=av_error)
    family = _family(model)
    if hasattr(model, _PATCH):
        raise UserError(f"{family} is already patched; call unpatch_hf_model first")
    if not callable(getattr(model, "set_attn_implementation", None)):
        raise UserError(f"{family} is not a transformers PreTrainedModel")
    modules = _attention_modules(model)
    if not modules:
        raise UserError(f"{family} has no attention module using transformers' AttentionInterface")
    _refuse_unmodelled(model, modules)
    attn_iface.register(IMPLEMENTATION, topkima_hf_attention)
    mask_iface.register(IMPLEMENTATION, _mask_function)

    configs = _all_configs(model)
    patch = _Patch([(c, c.__dict__.get("_attn_implementation_internal", _MISSING))
                    for c in configs])
    model.set_attn_implementation(IMPLEMENTATION)
    stray = [n for n, m in modules
             if getattr(getattr(m, "config", None), "_attn_implementation", None)
             != IMPLEMENTATION]
    if stray:
        _restore(patch)
        raise UserError(
            f"{family}: transformers did not switch {stray[0]} to a custom attention "
            "implementation, so it cannot be patched"
        )
    for i, (_, mod) in enumerate(modules):
        # each attention module is its own array: its own static column errors on a chip
        layer_cfg = config if chip is None else bind_chip(config, chip, i)
        setattr(mod, _STATE, _LayerState(layer_cfg, generator, ignore_attention_dropout))
    setattr(model, _PATCH, patch)
    return IMPLEMENTATION


def _restore(patch: _Patch) -> None:
    for cfg, orig in patch.configs:
        if orig is _MISSING:
            cfg.__dict__.pop("_attn_implementation_internal", None)
        else:
            cfg._attn_implementation_internal = orig


def _patched_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    if not hasattr(model, _PATCH):
        raise UserError(f"{_family(model)} is not patched (patch_hf_model)")
    return [(n, m) for n, m in model.named_modules() if hasattr(m, _STATE)]


def unpatch_hf_model(model: torch.nn.Module) -> None:
    """Undo :func:`patch_hf_model`: the original attention implementation of every config,
    no state left on the modules (the weights were never changed)."""
    modules = _patched_modules(model)
    _restore(getattr(model, _PATCH))
    for _, mod in modules:
        delattr(mod, _STATE)
    delattr(model, _PATCH)


def _model_inputs(batch: Mapping[str, Any] | torch.Tensor | tuple | list) -> tuple[tuple, dict]:
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, (tuple, list)):
        return tuple(batch), {}
    raise UserError(f"a calibration batch must be a dict of model inputs or a tensor, "
                    f"got {type(batch).__name__}")


def calibrate_hf_model(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, Any] | torch.Tensor],
    n_batches: int | None = None,
) -> int:
    """Fix every patched layer's Q/K/V scales and ramp-ADC window (and A.V window) per head.

    Runs the model in evaluation mode, without gradients, on the first ``n_batches`` of
    ``batches`` (each a dict of model inputs, e.g. ``{"input_ids": ..., "attention_mask":
    ...}``, or a tensor passed as the first argument) with per-sample ranges, and keeps
    the exact average of each batch's statistics (:func:`~charact.attention.pipeline.
    batch_ranges`: ramp start at the 99 % quantile of the per-query top score, end at the
    1 % quantile of all valid scores). From then on the windows no longer depend on the
    sample, in evaluation and training. Returns the number of batches run; a later call
    replaces the calibration. Every patched layer must be reached (for an encoder-decoder,
    pass decoder inputs too).
    """
    modules = _patched_modules(model)
    states = [getattr(m, _STATE) for _, m in modules]
    saved = [(s.stats, s.n_seen) for s in states]
    was_training = model.training
    n = 0
    ok = False
    try:
        for s in states:
            s.stats, s.n_seen, s.calibrating = None, 0, True
        model.eval()
        with torch.no_grad():
            for batch in batches:
                if n_batches is not None and n >= n_batches:
                    break
                args, kwargs = _model_inputs(batch)
                model(*args, **kwargs)
                n += 1
        if n == 0:
            raise UserError("calibrate_hf_model got no batch")
        unseen = [name for (name, _), s in zip(modules, states, strict=True) if s.n_seen == 0]
        if unseen:
            raise UserError(f"calibration batches never reached attention layer {unseen[0]}; "
                            "pass inputs that run every layer (e.g. decoder_input_ids)")
        ok = True
    finally:
        for s, (stats, n_seen) in zip(states, saved, strict=True):
            s.calibrating = False
            if not ok:
                s.stats, s.n_seen = stats, n_seen
        model.train(was_training)
    return n


def clear_hf_calibration(model: torch.nn.Module) -> None:
    """Back to per-sample scales and ADC windows."""
    for _, mod in _patched_modules(model):
        state = getattr(mod, _STATE)
        state.stats, state.n_seen = None, 0


def hf_calibration(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Each calibrated layer's averaged statistics (per head, shape (H, 1, 1)), by module name."""
    return {name: dict(getattr(mod, _STATE).stats)
            for name, mod in _patched_modules(model) if getattr(mod, _STATE).stats is not None}


def set_hf_calibration(model: torch.nn.Module,
                       stats: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Give every patched layer the statistics :func:`hf_calibration` returned (e.g. from
    the same model patched with another setting), so that evaluations with injected errors
    keep the clean model's windows, as a ViT keeps its own calibration. Every patched layer
    must be named in ``stats`` with every statistic."""
    for name, mod in _patched_modules(model):
        got = stats.get(name)
        if got is None or any(k not in got for k in _CAL_NAMES):
            raise UserError(f"set_hf_calibration: no complete statistics for layer {name}")
        state = getattr(mod, _STATE)
        state.stats = {k: got[k].detach().clone() for k in _CAL_NAMES}
        state.n_seen = 1
