"""Hardware-faithful top-k in-memory-ADC attention (torch), training and accuracy runs.

Needs torch (``pip install 'charact[torch]'``); nothing outside this package imports it.

* :mod:`.quant` -- Q/K/V/A quantizers and the ramp-ADC transfer, straight-through gradients
* :mod:`.topk` -- top-k the way the decreasing ramp selects it; sub-top-k over crossbars
* :mod:`.pipeline` -- :class:`AttentionConfig` and :func:`topkima_attention`
* :mod:`.vit`, :mod:`.data`, :mod:`.training` -- a small ViT, Fashion-MNIST/digits, QAT/TFCBP
* :mod:`.gaincell` -- :class:`GainCellConfig` and :func:`gaincell_attention`: the gain-cell
  architecture (multiply surface, hard-sigmoid readout, retention, sliding window)
* :mod:`.lm` -- a byte-level language model on Debian's fortunes text behind ``charact lm``
* :mod:`.text` -- text from Debian's fortunes package: labelled entries and running text
* :mod:`.hf` -- :func:`patch_hf_model` for Hugging Face ``transformers`` models
* :mod:`.textcls` -- a pretrained encoder's text-classification accuracy behind
  ``charact accuracy-text``
* :mod:`.experiment`, :mod:`.report`, :mod:`.settings`, :mod:`.device` -- the accuracy
  sweeps behind ``charact accuracy`` (spec and runner, summaries and report, command-line
  settings, CPU/GPU placement and determinism)

Error models come only through :mod:`charact.lookup` (``ErrorModel.load(path).table()``).
"""

from __future__ import annotations

from charact.attention.gaincell import (
    GainCellConfig,
    GainCellResult,
    gaincell_attention,
)
from charact.attention.pipeline import (
    AttentionCalibration,
    AttentionConfig,
    AttentionResult,
    reference_attention,
    topkima_attention,
)
from charact.attention.topk import RampSelection, crossbar_k_split, ramp_topk, score_topk

__all__ = [
    "AttentionCalibration",
    "AttentionConfig",
    "AttentionResult",
    "GainCellConfig",
    "GainCellResult",
    "RampSelection",
    "crossbar_k_split",
    "gaincell_attention",
    "ramp_topk",
    "reference_attention",
    "score_topk",
    "topkima_attention",
]
