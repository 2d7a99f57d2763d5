"""Quantizers of the attention hardware, each with a straight-through gradient (QAT).

Level conventions (paper III-A, IV-B):

* Q: ``n_bits_q`` bits of *magnitude* plus a sign. The sign picks RWL+ or RWL-, the
  magnitude is the PWM pulse width, so Q takes the integers ``-(2**n - 1) .. 2**n - 1``
  (n = 5: -31..31, 2 GHz clock, longest pulse 15.5 ns).
* K: ``n_bits_k`` signed bits *including* the sign, stored as ``n_bits_k - 1`` ternary
  cells with input scales 1, 2, 4, ...: integers ``-(2**(n-1) - 1) .. 2**(n-1) - 1``
  (n = 4: 15 levels, -7..7; n = 2: ternary).
* V: ``n_bits_v`` signed bits including the sign (5 bits: -15..15).
* A: ``n_bits_a`` unsigned bits over [0, 1] (5 bits: 0..31 in steps of 1/31).

A quantizer returns the dequantized value (integer level times scale). In the forward
pass it is exact; in the backward pass the gradient is 1 inside the clipping range and
0 outside (straight-through estimator).
"""

from __future__ import annotations

import torch


def q_max_level(n_bits_q: int) -> int:
    """Largest Q magnitude: ``n_bits_q`` magnitude bits, sign separate."""
    return 2**n_bits_q - 1


def signed_max_level(n_bits: int) -> int:
    """Largest magnitude of a signed ``n_bits`` integer that keeps zero symmetric."""
    return 2 ** (n_bits - 1) - 1


def k_max_level_from_cells(n_cells: int) -> int:
    """Largest K magnitude from ``n_cells`` ternary cells with input scales 1, 2, 4, ..."""
    return 2**n_cells - 1


class _SteReplace(torch.autograd.Function):
    """Forward: ``value``; backward: the gradient to ``x`` where ``lo <= x <= hi``, else 0."""

    @staticmethod
    def forward(ctx, x, value, lo, hi):  # type: ignore[override]
        ctx.save_for_backward(x, lo, hi)
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, lo, hi = ctx.saved_tensors
        inside = (x >= lo) & (x <= hi)
        return grad * inside, None, None, None


def _as(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


def _grid_levels(x: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, n_max: int) -> torch.Tensor:
    """Integer levels (as floats) ``round((x - lo) / step)`` clipped to ``0..n_max``."""
    with torch.no_grad():
        return torch.sub(x, lo).div_(step).round_().clamp_(0, n_max)


def fake_quantize(
    x: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, n_max: int
) -> torch.Tensor:
    """``lo + step * {0..n_max}``, nearest level; straight-through gradient inside the range."""
    lo, step = _as(lo, x), _as(step, x).clamp_min(1e-12)
    value = _grid_levels(x, lo, step, n_max).mul_(step).add_(lo)
    if not x.requires_grad:
        return value
    return _SteReplace.apply(x, value, lo, lo + n_max * step)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer; identity gradient."""
    return x + (torch.round(x) - x).detach()


def quantize_symmetric(x: torch.Tensor, max_level: int, scale: torch.Tensor) -> torch.Tensor:
    """Quantize to ``scale * {-max_level..max_level}`` with a clipped straight-through gradient."""
    scale = _as(scale, x).clamp_min(1e-12)
    return fake_quantize(x, -max_level * scale, scale, 2 * max_level)


def quantize_unsigned(x: torch.Tensor, max_level: int, scale: torch.Tensor) -> torch.Tensor:
    """Quantize to ``scale * {0..max_level}`` with a clipped straight-through gradient."""
    return fake_quantize(x, torch.zeros((), dtype=x.dtype, device=x.device), scale, max_level)


def integer_levels(x_q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The integer levels (as int64) of an already quantized tensor."""
    return torch.round(x_q / _as(scale, x_q)).long()


def adc_lsb(lo: torch.Tensor, hi: torch.Tensor, n_codes: int, like: torch.Tensor) -> torch.Tensor:
    """One ADC step (the ramp step) in value units, never zero."""
    return ((_as(hi, like) - _as(lo, like)) / (n_codes - 1)).clamp_min(1e-12)


def adc_codes(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_codes: int) -> torch.Tensor:
    """Ideal ramp-ADC transfer: map ``[lo, hi]`` onto codes ``0..n_codes-1`` (round, clip).

    Code ``c`` stands for the value ``lo + c * lsb`` with ``lsb = (hi - lo) / (n_codes - 1)``;
    values outside the range clip to the end codes (a MAC above the ramp start crosses in
    the first cycle; one below the ramp end is taken in the last cycle).
    """
    # int32 is enough for any code and halves the traffic of the error sampling
    return _grid_levels(x, _as(lo, x), adc_lsb(lo, hi, n_codes, x), n_codes - 1).to(torch.int32)


def adc_dequantize(
    x: torch.Tensor, codes: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_codes: int
) -> torch.Tensor:
    """Value of ``codes`` with a straight-through gradient to ``x`` inside ``[lo, hi]``.

    ``codes`` may differ from the ideal codes of ``x`` (injected error): the forward value
    is that of ``codes``, the gradient that of the clipped ``x``.
    """
    lo_t = _as(lo, x)
    lsb = adc_lsb(lo, hi, n_codes, x)
    value = codes.to(x.dtype).mul_(lsb).add_(lo_t)
    if not x.requires_grad:
        return value
    return _SteReplace.apply(x, value, lo_t, lo_t + (n_codes - 1) * lsb)
