"""Run any Hugging Face ``transformers`` model's attention through the topkima pipeline.

:func:`patch_hf_model` registers an attention function and its mask function under a
fresh name in ``transformers``' attention registries (``AttentionInterface`` and
``AttentionMaskInterface``, transformers >= 4.48) and switches the model to that name, so
the model's own mask code builds the boolean padding/causal mask our function expects.

Scale-free (paper III-C): the patch folds each attention module's ``scaling``
(1/sqrt(d_k)) into the weight and bias of its query projection once and sets
``scaling = 1``; the attention function then never scales the scores. A module whose query
projection it cannot find keeps its ``scaling``, which the function applies to the query
before quantization -- the same numbers as folding.

Calibration: the Hugging Face path has no training-time running statistics, so Q/K/V
scales and the ADC window are taken per (sample, head) from the data (see
:mod:`charact.attention.pipeline`).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from charact.attention.pipeline import AttentionConfig, topkima_attention
from charact.errors import UserError

_QUERY_NAMES = ("query", "q_proj", "q", "q_lin")
_counter = itertools.count()


def _interfaces() -> tuple[Any, Any, Any]:
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as exc:
        raise UserError(
            "patching a Hugging Face model needs transformers >= 4.48 with "
            "AttentionInterface/AttentionMaskInterface: pip install 'charact[hf]'"
        ) from exc
    return AttentionInterface, AttentionMaskInterface, sdpa_mask


def fold_query_scaling(model: torch.nn.Module) -> int:
    """Fold every attention module's ``scaling`` into its query projection; returns the count."""
    folded = 0
    for module in model.modules():
        scale = getattr(module, "scaling", None)
        if not isinstance(scale, float) or scale == 1.0:
            continue
        proj = next(
            (getattr(module, n) for n in _QUERY_NAMES
             if isinstance(getattr(module, n, None), torch.nn.Linear)),
            None,
        )
        if proj is None:
            continue
        with torch.no_grad():
            proj.weight.mul_(scale)
            if proj.bias is not None:
                proj.bias.mul_(scale)
        module.scaling = 1.0
        folded += 1
    return folded


def make_attention_function(
    config: AttentionConfig, generator: torch.Generator | None = None
) -> Any:
    """An attention function with the ``transformers`` calling convention."""

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
        # grouped-query attention: repeat K/V heads to the query heads
        if key.shape[1] != query.shape[1]:
            rep = query.shape[1] // key.shape[1]
            key = key.repeat_interleave(rep, dim=1)
            value = value.repeat_interleave(rep, dim=1)
        if scaling is None:
            scaling = query.shape[-1] ** -0.5
        if scaling != 1.0:
            query = query * scaling  # not folded into W_Q: same numbers as folding
        mask = attention_mask
        if mask is not None and mask.shape[-1] != key.shape[-2]:
            mask = mask[..., : key.shape[-2]]
        res = topkima_attention(query, key, value, config, mask=mask, generator=generator)
        probs = res.probs
        if dropout and module.training:
            probs = torch.nn.functional.dropout(probs, p=dropout)
            out = torch.matmul(probs, value)
        else:
            out = res.out
        return out.transpose(1, 2).contiguous(), probs

    return topkima_hf_attention


def patch_hf_model(
    model: Any, config: AttentionConfig, generator: torch.Generator | None = None,
    fold_scaling: bool = True,
) -> str:
    """Make ``model`` use the topkima pipeline; returns the registered implementation name.

    Registers the attention function and the boolean mask function (``sdpa_mask``, so
    padded keys arrive as False) under one new name and calls
    ``model.set_attn_implementation(name)``.
    """
    attn_iface, mask_iface, sdpa_mask = _interfaces()
    name = f"charact_topkima_{next(_counter)}"
    attn_iface.register(name, make_attention_function(config, generator))
    mask_iface.register(name, sdpa_mask)
    if fold_scaling:
        fold_query_scaling(model)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name
    return name
