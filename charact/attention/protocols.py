"""Small structural types shared by the attention code (no torch import at module level)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class CodeErrorModel(Protocol):
    """What the pipeline needs of an ADC code-error model (e.g. ``CodeErrorTable``).

    ``n_codes``: the ADC codes it was characterised for; ``sample_levels_`` replaces, in
    place, ideal codes held as exact integers in a float tensor by noisy ones drawn with
    ``generator`` (None: torch's global generator) and returns the tensor. Positional-only,
    so implementations may name the generator argument as they like (``rng``).
    """

    n_codes: int

    def sample_levels_(
        self, levels: torch.Tensor, generator: torch.Generator | None = None, /
    ) -> torch.Tensor: ...
