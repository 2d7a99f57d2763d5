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


class _SteMask(torch.autograd.Function):
    """Forward: ``value``; backward: the gradient to ``x`` where ``inside``, else 0."""

    @staticmethod
    def forward(ctx, x, value, inside):  # type: ignore[override]
        ctx.save_for_backward(inside)
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, 0.0), None, None


class ForwardValue(torch.autograd.Function):
    """Forward: ``value``; backward: the gradient passes to ``x`` unchanged.

    TFCBP (paper III-B) uses it with ``x`` = the full softmax and ``value`` = the top-k
    softmax: no extra pass over the probabilities, unlike ``x + (value - x).detach()``.
    """

    @staticmethod
    def forward(ctx, x, value):  # type: ignore[override]
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None


def _as(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


def grid_levels(
    x: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, n_max: int, need_inside: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integer levels (as floats) ``round((x - lo) / step)`` clipped to ``0..n_max``.

    With ``need_inside`` also the mask ``lo <= x <= lo + n_max * step`` (the straight-through
    range): the clipped and unclipped ratios are equal exactly there, so one compare gives it.
    """
    with torch.no_grad():
        t = torch.sub(x, lo).div_(step)
        if not need_inside:
            return t.clamp_(0, n_max).round_(), None
        lv = t.clamp(0, n_max)
        inside = torch.eq(lv, t)
        return lv.round_(), inside


def ste_value(x: torch.Tensor, value: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``x`` where ``inside`` in the backward."""
    if inside is None or not x.requires_grad:
        return value
    return _SteMask.apply(x, value, inside)


def fake_quantize(
    x: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, n_max: int
) -> torch.Tensor:
    """``lo + step * {0..n_max}``, nearest level; straight-through gradient inside the range."""
    lo, step = _as(lo, x), _as(step, x).clamp_min(1e-12)
    lv, inside = grid_levels(x, lo, step, n_max, x.requires_grad)
    return ste_value(x, lv.mul_(step).add_(lo), inside)


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


def quantize_probs_(p: torch.Tensor, max_level: int, scale: torch.Tensor) -> torch.Tensor:
    """In place and without a gradient, :func:`quantize_unsigned` of probabilities.

    The same values bit for bit on any ``p`` without -0 (a softmax output is >= +0): the
    subtraction and addition of the zero offset that :func:`fake_quantize` does are exact
    identities there, so they, and the temporary they need, are left out.
    """
    step = _as(scale, p).clamp_min(1e-12)
    return p.div_(step).clamp_(0, max_level).round_().mul_(step)


def integer_levels(x_q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The integer levels (as int64) of an already quantized tensor."""
    return torch.round(x_q / _as(scale, x_q)).long()


def adc_lsb(lo: torch.Tensor, hi: torch.Tensor, n_codes: int, like: torch.Tensor) -> torch.Tensor:
    """One ADC step (the ramp step) in value units, never zero."""
    return ((_as(hi, like) - _as(lo, like)) / (n_codes - 1)).clamp_min(1e-12)


def adc_levels(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_codes: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ideal ramp-ADC codes of ``x`` as exact integers in ``x``'s float dtype, and the
    straight-through mask (None when ``x`` needs no gradient).

    The float form feeds the top-k key and the dequantization without integer
    conversions; :func:`adc_codes` gives the same codes as int32.
    """
    return grid_levels(x, _as(lo, x), adc_lsb(lo, hi, n_codes, x), n_codes - 1,
                       x.requires_grad)


def adc_codes(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_codes: int) -> torch.Tensor:
    """Ideal ramp-ADC transfer: map ``[lo, hi]`` onto codes ``0..n_codes-1`` (round, clip).

    Code ``c`` stands for the value ``lo + c * lsb`` with ``lsb = (hi - lo) / (n_codes - 1)``;
    values outside the range clip to the end codes (a MAC above the ramp start crosses in
    the first cycle; one below the ramp end is taken in the last cycle).
    """
    lv, _ = grid_levels(x, _as(lo, x), adc_lsb(lo, hi, n_codes, x), n_codes - 1, False)
    return lv.to(torch.int32)


def adc_dequantize(
    x: torch.Tensor, codes: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_codes: int,
    inside: torch.Tensor | None = None, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Value of ``codes`` with a straight-through gradient to ``x`` inside ``[lo, hi]``.

    ``codes`` (integer, or float levels from :func:`adc_levels`) may differ from the ideal
    codes of ``x`` (injected error): the forward value is that of ``codes``, the gradient
    that of the clipped ``x``. ``inside`` is the mask from :func:`adc_levels` if at hand.
    ``out``: where to write the value (may be ``x`` itself when ``x`` needs no gradient).
    """
    lo_t = _as(lo, x)
    lsb = adc_lsb(lo, hi, n_codes, x)
    # integer codes times the float step: one pass, the conversion inside it
    value = torch.mul(codes, lsb, out=out).add_(lo_t)
    if not x.requires_grad:
        return value
    if inside is None:
        _, inside = grid_levels(x, lo_t, lsb, n_codes - 1, True)
    return _SteMask.apply(x, value, inside)
