"""Top-k selection the way the decreasing-ramp ADC does it, and sub-top-k over crossbars.

Ramp rule (paper III-A, Fig. 2(b),(e)): the ramp steps *down* once per cycle, so a larger
MAC crosses earlier; code ``c`` crosses in cycle ``n_codes - 1 - c`` (cycles 0-based).
Conversion stops at the first cycle by whose end at least ``k`` columns have crossed.
Every column that crossed in an earlier cycle is kept; among those crossing in the
stopping cycle the smallest column addresses fill the remaining slots (the fixed-priority
arbiter). This is exactly "sort by (code descending, address ascending), keep the first
k", which is what the vectorized code below does with one integer key per column.

Sub-top-k (paper III-A, "Considerations of crossbar size"): when the keys are split over
crossbars of ``C`` columns, crossbar ``i`` keeps its own top-``k_i`` with ``sum k_i = k``.
Rule for ``k_i`` (:func:`crossbar_k_split`): share ``k`` in proportion to the number of key
columns on each crossbar by largest remainders, ties going to the earlier crossbar. It
gives the paper's 2, 2, 1 for 384 keys on three 128-column crossbars and 3, 2 for a
256 + 128 split (Sec. IV-B), and never gives a crossbar more than it holds.

Selection statistics (for the latency roll-up): per query and crossbar, the stopping cycle
``c_stop`` (0-based) and ``alpha = (c_stop + 1) / n_codes``, i.e. the number of ramp cycles
run, counting the stopping cycle, over the full ``n_codes``; if fewer than ``k_i`` valid
keys exist the ramp runs to the end (alpha = 1). ``n_tied`` is the number of keys that
crossed in the stopping cycle (winners and losers of the tie together).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RampSelection:
    """Which keys are kept, and how the ramp of each crossbar stopped."""

    selected: torch.Tensor  # bool (..., L)
    stop_cycle: torch.Tensor | None  # long (..., n_xb); -1 where k_i = 0
    n_tied: torch.Tensor | None  # long (..., n_xb)
    k_per_crossbar: list[int]
    n_codes: int

    def alpha(self) -> torch.Tensor:
        """Fraction of the ramp run per query and crossbar: ``(c_stop + 1) / n_codes``."""
        if self.stop_cycle is None:
            raise ValueError("selection was made on raw scores; it has no ramp statistics")
        return (self.stop_cycle.to(torch.float64) + 1.0) / self.n_codes


def crossbar_k_split(n_keys: int, k: int, cols: int | None) -> list[int]:
    """Per-crossbar ``k_i`` for ``n_keys`` key columns on crossbars of ``cols`` columns.

    Largest-remainder apportionment of ``k`` by column count, ties to earlier crossbars.
    """
    if cols is None or cols >= n_keys:
        return [min(k, n_keys)]
    sizes = [min(cols, n_keys - start) for start in range(0, n_keys, cols)]
    k = min(k, n_keys)
    quotas = [k * s / n_keys for s in sizes]
    k_i = [int(q) for q in quotas]
    # exact rational remainders avoid float ties deciding the wrong crossbar
    rema = [(k * s) % n_keys for s in sizes]
    order = sorted(range(len(sizes)), key=lambda i: (-rema[i], i))
    for i in order[: k - sum(k_i)]:
        k_i[i] += 1
    return [min(ki, s) for ki, s in zip(k_i, sizes, strict=True)]


def ramp_order_key(
    codes: torch.Tensor, n_codes: int, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Key whose descending order is the ramp's crossing/arbitration order (all distinct).

    ``code * L + (L - 1 - address)``: a higher code first, then a lower address. ``codes``
    are integers, in an integer or a float dtype. Masked
    keys (``valid`` False) get -1 and are never kept. float32 holds these integers exactly
    up to 2**24 (e.g. 32 codes x 500k keys); beyond that the key is float64.
    """
    n = codes.shape[-1]
    dtype = torch.float32 if n_codes * n < 2**24 else torch.float64
    rev_addr = torch.arange(n - 1, -1, -1, device=codes.device, dtype=dtype)
    # one pass, whatever the codes' dtype (int32 codes or float levels from the ADC)
    key = torch.add(rev_addr, codes, alpha=n)
    if valid is not None:
        key = key.masked_fill_(~valid, -1.0)
    return key


def _ramp_threshold(
    codes: torch.Tensor, k: int, n_codes: int, valid: torch.Tensor | None,
    crossbar_cols: int | None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(key, kth_key, k_i)``: the ramp order keys viewed as (..., n_xb, cols) (padding
    columns -1) and, per query and crossbar, the smallest key kept (..., n_xb, 1): the
    k_i-th crossing, at least 0 so that masked and padding keys (-1) are never kept, and
    +inf on a crossbar with k_i = 0. ``key`` is a fresh tensor the caller may overwrite."""
    n_keys = codes.shape[-1]
    if valid is not None:
        valid = valid.expand_as(codes)
    key = ramp_order_key(codes, n_codes, valid)
    k_i = crossbar_k_split(n_keys, k, crossbar_cols)
    cols = n_keys if len(k_i) == 1 else int(crossbar_cols)  # type: ignore[arg-type]
    n_xb = len(k_i)
    pad = n_xb * cols - n_keys
    if pad:
        key = torch.nn.functional.pad(key, (0, pad), value=-1.0)
    key = key.view(*codes.shape[:-1], n_xb, cols)
    k_max = max(max(k_i), 1)
    top_key = _top_values(key, k_max)
    if n_xb == 1 and k_i[0] >= 1:
        # one crossbar: the k-th crossing is a plain slice (no index tensor to build,
        # which on a GPU would be a host-to-device copy per call)
        kth_key = top_key[..., k_i[0] - 1 : k_i[0]].clamp_min(0.0)
        return key, kth_key, k_i
    k_t = torch.tensor(k_i, device=codes.device)
    # the k_i-th crossing (or fewer, if the crossbar has fewer keys) sets the stop
    last = (k_t - 1).clamp_min(0).expand(top_key.shape[:-1])
    kth_key = top_key.gather(-1, last.unsqueeze(-1))  # (..., n_xb, 1)
    kth_key = kth_key.masked_fill((k_t == 0)[:, None], float("inf")).clamp_min_(0.0)
    return key, kth_key, k_i


def ramp_topk(
    codes: torch.Tensor,
    k: int,
    n_codes: int,
    valid: torch.Tensor | None = None,
    crossbar_cols: int | None = None,
    stats: bool = True,
) -> RampSelection:
    """Keep the top-``k`` keys of each query row of ``codes`` (..., L) as the ramp does.

    With ``crossbar_cols`` the keys are split over crossbars and each keeps its own
    top-``k_i`` (sub-top-k). ``valid`` (bool, broadcastable to ``codes``) marks real keys.
    ``stats=False`` skips the stopping-cycle statistics.
    """
    n_keys = codes.shape[-1]
    key, kth_key, k_i = _ramp_threshold(codes, k, n_codes, valid, crossbar_cols)
    n_xb, cols = key.shape[-2], key.shape[-1]
    selected = (key >= kth_key).view(*codes.shape[:-1], n_xb * cols)[..., :n_keys]
    if not stats:
        return RampSelection(selected, None, None, k_i, n_codes)

    k_t = torch.tensor(k_i, device=codes.device)
    kth_key = kth_key.squeeze(-1)
    n_valid = (key >= 0).sum(-1)
    kth_code = torch.div(kth_key, n_keys, rounding_mode="floor").long()
    stop_cycle = (n_codes - 1) - kth_code
    short = n_valid < k_t  # fewer keys than k_i: the ramp runs to its end
    stop_cycle = stop_cycle.masked_fill(short, n_codes - 1)
    lo = (kth_code * n_keys).to(key.dtype).unsqueeze(-1)
    n_tied = ((key >= lo) & (key < lo + n_keys)).sum(-1)
    n_tied = n_tied.masked_fill(short, 0)
    none = (k_t == 0).expand_as(stop_cycle) | (n_valid == 0)
    stop_cycle = stop_cycle.masked_fill(none, -1)
    n_tied = n_tied.masked_fill(none, 0)
    return RampSelection(selected, stop_cycle, n_tied, k_i, n_codes)


def ramp_drop_offsets(
    codes: torch.Tensor,
    k: int,
    n_codes: int,
    valid: torch.Tensor | None = None,
    crossbar_cols: int | None = None,
) -> torch.Tensor:
    """The selection of :func:`ramp_topk` as a float tensor (..., L): 0 where the ramp
    keeps a key, -1 where it drops one (the same keys, ties and sub-top-k included).

    For the inference hot path: with ``off`` this, ``x.addcmul_(x, off).add_(off,
    alpha=M)`` leaves a kept (finite) ``x`` exactly as it is and turns a dropped one into
    exactly ``-M``: four float passes, where a bool compare and ``torch.where`` (the CPU
    kernels writing and reading bool masks are slow) took twice as long (about 1.7 against
    3.3 ms on (2, 4, 384, 384) scores, one thread). Keys are exact integers, so
    ``clamp(key - kth, -1, 0)`` is 0 exactly for keys at or above the k-th crossing and
    -1 for every other one (+inf on a crossbar with k_i = 0 gives -1 too).
    """
    n_keys = codes.shape[-1]
    key, kth_key, _ = _ramp_threshold(codes, k, n_codes, valid, crossbar_cols)
    n_xb, cols = key.shape[-2], key.shape[-1]
    off = key.sub_(kth_key).clamp_(-1.0, 0.0)
    return off.view(*codes.shape[:-1], n_xb * cols)[..., :n_keys]


def _top_values(key: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest of each row of distinct keys, descending.

    On short rows (a ViT's 65 tokens) ``k`` rounds of "largest key below the last one" beat
    ``torch.topk`` (about 30 against 50 ms on (128, 4, 65, 65) keys, k = 5, one loaded
    core); on long rows (384 keys) topk wins (about 2-3 against 8 ms).
    """
    if k > 8 or key.shape[-1] >= 128:
        return torch.topk(key, k, dim=-1, largest=True, sorted=True).values
    tops = [key.amax(dim=-1, keepdim=True)]
    for _ in range(k - 1):
        # keys are distinct, so exactly one key per row drops out per round; -inf rows
        # (fewer valid keys than k) stay -inf
        below = torch.where(key < tops[-1], key, float("-inf"))
        tops.append(below.amax(dim=-1, keepdim=True))
    return torch.cat(tops, dim=-1)


def score_topk(
    scores: torch.Tensor,
    k: int,
    valid: torch.Tensor | None = None,
    crossbar_cols: int | None = None,
) -> torch.Tensor:
    """Top-``k`` (or sub-top-k) mask on raw float scores, for runs without the ADC.

    Exact float ties are rare; among them the order is torch's.
    """
    n_keys = scores.shape[-1]
    s = scores.detach()
    if valid is not None:
        s = s.masked_fill(~valid.expand_as(s), float("-inf"))
    k_i = crossbar_k_split(n_keys, k, crossbar_cols)
    cols = n_keys if len(k_i) == 1 else int(crossbar_cols)  # type: ignore[arg-type]
    n_xb = len(k_i)
    pad = n_xb * cols - n_keys
    if pad:
        s = torch.nn.functional.pad(s, (0, pad), value=float("-inf"))
    s = s.reshape(*scores.shape[:-1], n_xb, cols)
    k_max = max(max(k_i), 1)
    top_val, top_idx = torch.topk(s, k_max, dim=-1)
    k_t = torch.tensor(k_i, device=scores.device)
    keep = (torch.arange(k_max, device=scores.device) < k_t[:, None]) & torch.isfinite(top_val)
    sel = torch.zeros(s.shape, dtype=torch.bool, device=scores.device)
    sel.scatter_(-1, top_idx, keep)
    return sel.reshape(*scores.shape[:-1], n_xb * cols)[..., :n_keys]
