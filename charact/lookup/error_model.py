"""Code-error models: P(converted code | ideal code) per PVT point, with fast sampling.

This is the API the attention pipeline codes against::

    model = ErrorModel.load("models/column_nom.json")
    table = model.table()                     # the nominal PVT point (pooled over columns)
    noisy = table.sample(ideal_codes, rng)    # numpy array or torch tensor in, same out
    point = model.point("SS", 1.0, 125.0)     # both parts of a structured model's point
    chip = point.for_chip(chip=3, layer=0, site="qk")  # one simulated die's columns
    noisy = chip.sample(ideal_codes, rng)     # static per-column error + fresh noise

(the structured part lives in :mod:`charact.lookup.structured`).

Sampling uses one Walker/Vose alias table per ideal code: per element one random word (split
into column and threshold bits), one gather and a few in-place integer steps, whatever the
number of codes; no one-hot matmul, no compare-and-select, no Python loop per element. On
the CPU, torch tensors go through a cheaper but equally exact split of each row
(:func:`_cell_tables`, :class:`CpuPlan`): one random byte (or 10 bits) and one gather per
element; the few elements (0.4 to 2 %) that fall into a row's remainder read the same
random bits in the remainder's own cells within that gather, and the few hundred per
million that fall into the remainder's remainder take an inverse-CDF draw.
torch is never imported here: a tensor is recognised through ``sys.modules``.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from typing import Any, NamedTuple

import numpy as np

from charact.errors import UserError
from charact.lookup import fileformat as ff

KIND = "code_error"
# The quantiles the export and summaries report (q01 ... q99).
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_ROW_SUM_TOL = 1e-6
_PVT_TOL = 1e-6  # V and degC: parquet floats such as 0.8000000001 still match 0.8


class PVT(NamedTuple):
    """A process corner, supply voltage (V) and temperature (degC)."""

    corner: str
    vdd: float
    temp: float

    def label(self) -> str:
        return f"{self.corner}/{self.vdd:g}V/{self.temp:g}C"


# error_model_from_samples without a PVT: vdd 0 marks "no real supply behind this".
SYNTHETIC_PVT = PVT("synthetic", 0.0, 0.0)


def _pvt_from_json(obj: Any, where: str) -> PVT:
    corner = ff.require(obj, "corner", where)
    vdd = ff.require(obj, "vdd", where)
    temp = ff.require(obj, "temp", where)
    if not isinstance(corner, str) or not all(isinstance(v, (int, float)) for v in (vdd, temp)):
        raise UserError(f"{where}: a PVT point needs a string corner and numeric vdd, temp")
    return PVT(corner, float(vdd), float(temp))


def _pvt_json(p: PVT) -> dict:
    return {"corner": p.corner, "vdd": float(p.vdd), "temp": float(p.temp)}


_RAND_BITS = 31  # random bits per sample: non-negative int32 in both numpy and torch
_LOW31 = (1 << _RAND_BITS) - 1


def _alias_tables(prob: np.ndarray) -> tuple[np.ndarray, int]:
    """Vose's alias method, one table per row, packed for branch-free integer sampling.

    Rows are padded with zero-probability columns to m = 2**k >= n columns. Drawing
    31 random bits, the low k pick a column j and the high 31-k bits ``frac`` decide:
    keep j if ``frac < threshold[j]``, else take ``alias[j]``. Entry j of a row packs
    ``(threshold[j] - 1) << k | (alias[j] XOR j)`` into one int32 (the -1 and the XOR make
    the sampler's select two integer steps: the sign of ``threshold - 1 - frac`` masks
    ``alias XOR j``, which XORed onto j gives j or the alias), so a sample is one gather
    and a few shifts and bit operations, whatever the number of codes. Thresholds are
    resolved to 2**-(31-k) (about 1e-8 for 32 codes). Returns ``(packed (n*m,), k)``.
    """
    n_rows, n = prob.shape
    k = max(1, int(math.ceil(math.log2(n))))
    m = 1 << k
    frac_bits = _RAND_BITS - k
    one = 1 << frac_bits
    packed = np.empty((n_rows, m), dtype=np.int32)
    cols = np.arange(m, dtype=np.int64)
    for r in range(n_rows):
        scaled = np.zeros(m)
        scaled[:n] = prob[r] * m
        threshold = np.full(m, one, dtype=np.int64)
        alias = np.arange(m, dtype=np.int64)
        small = [j for j in range(m) if scaled[j] < 1.0]
        large = [j for j in range(m) if scaled[j] >= 1.0]
        while small and large:
            s = small.pop()
            g = large.pop()
            # a kept column must never reach "always keep" unless it is its own alias
            threshold[s] = min(int(round(scaled[s] * one)), one - 1)
            alias[s] = g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        # leftovers have probability 1 up to rounding and keep themselves (alias = self)
        threshold = np.minimum(threshold, one - 1)
        # threshold - 1 may be -1: the arithmetic shift of the sampler keeps the sign
        packed[r] = ((threshold - 1) << k) | (alias ^ cols)
    return packed.ravel(), k


def alias_entry(packed: np.ndarray, k: int, ideal: int, col: int) -> tuple[int, int]:
    """``(threshold, alias)`` of column ``col`` of row ``ideal`` of a packed table."""
    e = int(packed[(ideal << k) | col])
    return (e >> k) + 1, (e & ((1 << k) - 1)) ^ col


# random bits per element of the CPU sampler's direct table: a byte (a 32 KiB table), or 10
# of 16 bits (128 KiB) where a byte would leave over 2 % more draws to the remainder, whose
# draws cost several times a cell's (1.6 % for the synthetic benchmark table, 6.5 % for the
# column model; 0.4 and 1.7 % with 10 bits, which cost ~0.4 ns more per element)
_CELL_BITS = (8, 10)
_MORE_BITS_GAIN = 0.02
_MAX_REMAINDER = 0.25  # above this share of remainder draws the plain alias sampler is cheaper


class CellTables(NamedTuple):
    """A table split for the CPU sampler (see :func:`_cell_tables`)."""

    cells: np.ndarray  # (n_codes << bits,) output code of cell u of row i at i << bits | u
    bits: int
    q: float  # probability that a conversion takes the remainder draw instead
    remainder: np.ndarray  # (n_codes, n_codes) the remainder law, rows sum to 1


class CpuPlan(NamedTuple):
    """What the CPU samplers draw from for one table (see :meth:`CodeErrorTable.cpu_plan`).

    A conversion of ideal code c reads cell ``u`` (``bits`` random bits) of row c of
    ``cells``; the share ``q`` of conversions chosen for the table's remainder
    (:func:`_cell_tables`) read the same ``u`` in row ``n_codes + c`` instead, the cells of
    the remainder's own split, and the share ``q2`` of those (a few hundred per million
    conversions) draws from that split's remainder by its cumulative sums ``rest_cdf``.
    The chosen conversions keep their place in the one gather, so only the ``q * q2`` few
    are picked out and written back apart.
    """

    bits: int
    q: float
    q2: float
    cells: np.ndarray  # (2 * n_codes, 2**bits) int32 output codes
    rest_cdf: np.ndarray | None  # (n_codes, n_codes), None when q * q2 == 0


def _cdf(prob: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums, exactly 1 from each row's last possible code on (so an
    inverse-CDF draw never lands on an impossible trailing code by rounding)."""
    cdf = np.cumsum(prob, axis=1)
    last = prob.shape[1] - 1 - np.argmax(prob[:, ::-1] > 0, axis=1)
    cdf[np.arange(prob.shape[1])[None, :] >= last[:, None]] = 1.0
    return cdf


def cdf_codes(cdf: np.ndarray, ideal: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draws (int32 codes) from the rows ``ideal`` of ``cdf`` (made by
    :func:`_cdf`): the first code whose cumulative probability exceeds a uniform. For a
    few hundred draws per call, where a handful of numpy steps beat the alias sampler's
    dozen."""
    out = np.empty(ideal.size, dtype=np.int32)
    step = 1 << 14
    for start in range(0, ideal.size, step):
        rows = cdf[ideal[start:start + step]]
        u = gen.random(rows.shape[0])
        out[start:start + step] = (rows <= u[:, None]).sum(axis=1)
    return out


def _cell_tables(prob: np.ndarray, bits: int) -> CellTables:
    """Split every row as ``p = (1 - q) * count / 2**bits + q * r``, exactly.

    With probability ``1 - q`` a conversion reads cell ``u`` (``bits`` uniform random bits)
    of its row, which holds ``count[j]`` cells of code ``j``; with probability ``q`` it draws
    from ``r`` (alias sampled). One byte and one gather replace the alias method's word,
    gather and five integer steps for most elements, and since ``q`` is the same for all
    rows, which elements take ``r`` does not depend on their codes: those are drawn before
    and apart from the cells (as gaps between Bernoulli(q) successes, so in O(q n) work).

    ``count[j] <= p[j] * 2**bits / (1 - q)`` keeps ``r`` non-negative; ``q`` is the smallest
    share (to a relative 1e-9, over all rows) that leaves whole counts summing to
    ``2**bits``: at most n_codes / 2**bits (see _CELL_BITS for measured values).
    """
    n_rows, n = prob.shape
    m = 1 << bits
    scaled = prob * m

    def enough(s: float) -> bool:
        return bool(np.all(np.floor(scaled * s).sum(axis=1) >= m))

    lo, hi = 1.0, 2.0
    while not enough(hi):
        hi *= 2.0
    if enough(lo):
        hi = lo
    for _ in range(60):  # bisection on the stretch s = 1 / (1 - q)
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    q = 1.0 - 1.0 / (hi * (1.0 + 1e-9)) if hi > 1.0 else 0.0
    count = np.floor(scaled / (1.0 - q)).astype(np.int64)
    for row in count:
        # shave the excess off the largest counts: any choice keeps count <= p m / (1 - q)
        for _ in range(int(row.sum()) - m):
            row[np.argmax(row)] -= 1
    if np.any(count.sum(axis=1) != m):  # the slack above makes this unreachable
        raise AssertionError("cell counts do not fill their rows")
    cells = np.concatenate([np.repeat(np.arange(n, dtype=np.int32), row) for row in count])
    if q > 0.0:
        remainder = np.clip((prob - (1.0 - q) * count / m) / q, 0.0, None)
        remainder /= remainder.sum(axis=1, keepdims=True)
    else:
        remainder = np.eye(n_rows, n)  # never drawn
    return CellTables(cells, bits, q, remainder)


_DIRECT_BERNOULLI = 2048  # up to this many candidates, one uniform each


def _bernoulli_positions(gen: np.random.Generator, n: int, q: float) -> np.ndarray:
    """Sorted positions among ``n`` that each are chosen with probability ``q``
    independently, drawn as geometric gaps (O(q n) work instead of n comparisons)."""
    if q <= 0.0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if q >= 1.0:
        return np.arange(n, dtype=np.int64)
    if n <= _DIRECT_BERNOULLI:
        # a few uniforms cost less than the gaps' fixed numpy steps
        return np.flatnonzero(gen.random(n) < q)
    # floor(E / -log(1 - q)) + 1 with E ~ Exp(1) is geometric(q), and the ziggurat
    # exponential is ~2.5x faster than numpy's geometric
    scale = -1.0 / math.log1p(-q)
    parts = []
    last = -1
    while last < n:
        # a chunk a few sigma above the mean: nearly always one is enough
        mean = (n - 1 - last) * q
        e = gen.standard_exponential(int(mean + 6.0 * math.sqrt(mean) + 16))
        e *= scale
        gaps = e.astype(np.int64)  # floor: e >= 0
        gaps += 1
        pos = np.cumsum(gaps)
        pos += last
        parts.append(pos)
        last = int(pos[-1])
    pos = np.concatenate(parts)
    return pos[: np.searchsorted(pos, n)]


_BLOCK = 1 << 17  # elements per block of the torch sampler (512 KiB per int32 temporary)


def _alias_draw_torch(packed: Any, k: int, ideal: Any, out: Any, words: Any, torch: Any) -> None:
    """Noisy codes for the 1-D ``ideal`` into ``out``, from ``words``: at least
    ``ceil(n / 2)`` random int64 whose two int32 halves each have bits 0..30 uniform.

    One random 32-bit half per element: bits 0..k-1 pick the column j; bits k..30 are the
    threshold fraction, already aligned with the packed threshold field (see
    :func:`_alias_tables`), so each is one AND away.
    """
    n = ideal.numel()
    m = 1 << k
    raw = words.view(torch.int32)[:n]
    idx = torch.bitwise_and(raw, m - 1)  # column j
    raw &= _LOW31 ^ (m - 1)  # frac << k
    if ideal.dtype.is_floating_point:
        ideal = ideal.to(torch.int32)  # float levels: one in-cache conversion per block
    idx.add_(ideal, alpha=m)  # (ideal << k) | j, in place whatever ideal's integer dtype
    # index_select on the flat table is the fastest CPU gather (plain indexing builds an
    # int64 index and a TensorIterator)
    entry = torch.index_select(packed, 0, idx)
    # entry = (threshold - 1) << k | (alias ^ j): frac < threshold (keep j) exactly when
    # entry >= frac << k; both lie in -2**k .. 2**31 - 1, so the difference never
    # overflows and its sign bit, spread by >> 31, is the "take the alias" mask
    torch.sub(entry, raw, out=raw)
    raw >>= 31
    entry &= raw
    idx ^= entry  # low k bits: j, or j ^ (alias ^ j) = alias; the high bits are dropped
    if out.dtype.is_floating_point:
        out.copy_(idx.bitwise_and_(m - 1))
    else:
        torch.bitwise_and(idx, m - 1, out=out)


class _SeedWords(np.random.bit_generator.ISeedSequence):
    """Three random words taken as SFC64's seed state as they are (numpy then runs its 12
    mixing rounds): they come from a generator already, so a SeedSequence's hashing, most
    of the time a seeding took (about 30 of 40 us per call), has nothing to add."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words != self.words.size or np.dtype(dtype) != self.words.dtype:
            raise ValueError(f"seed words: {self.words.size} {self.words.dtype} at hand, "
                             f"{n_words} {np.dtype(dtype)} asked for")
        return self.words


def sfc64_generator(rng: Any, torch: Any) -> np.random.Generator:
    """The CPU samplers' random stream: a numpy SFC64 generator whose state is three
    62-bit draws of the torch generator ``rng`` (None: torch's global one), so that seed
    fixes every sample (see :func:`_word_source` for why SFC64)."""
    words = torch.randint(0, 2**62, (3,), generator=rng).numpy().view(np.uint64)
    return np.random.Generator(np.random.SFC64(_SeedWords(words)))


def cell_bits(stream: Any, n: int, bits: int) -> np.ndarray:
    """``n`` uniform ``bits``-bit cell indices (``bits`` <= 16) from whole 64-bit words of
    the numpy bit generator ``stream``: uint8 for a byte, else masked uint16."""
    raw = stream.random_raw((n + 7) // 8 * (1 + (bits > 8)))
    if bits <= 8:
        u8 = raw.view(np.uint8)[:n]
        return u8 if bits == 8 else u8 & ((1 << bits) - 1)
    u = raw.view(np.uint16)[:n]
    u &= (1 << bits) - 1
    return u


class CellChoice:
    """Which conversions of a flat tensor of ``n`` take the remainder rows of a
    :class:`CpuPlan` (``pos``) and which of those are drawn from its ``rest_cdf``
    (``rest_pos``), drawn from ``gen`` once per call; a loop over the blocks that begin
    at ``starts`` (ascending, then ``n``) redirects each block's gather indices and keeps
    the ``rest_pos`` ones' indices (:meth:`redirect`)."""

    def __init__(self, gen: np.random.Generator, n: int, plan: CpuPlan,
                 starts: np.ndarray) -> None:
        self.pos = _bernoulli_positions(gen, n, plan.q)
        pick = _bernoulli_positions(gen, self.pos.size, plan.q2)
        self.rest_pos = self.pos[pick]
        # each block's share of both, found once
        self._cut = np.searchsorted(self.pos, starts).tolist()
        self._rest_cut = np.searchsorted(self.rest_pos, starts).tolist()
        self._kept: list[np.ndarray] = []

    def redirect(self, block: int, idx: np.ndarray, start: int, offset: int) -> None:
        """Add ``offset`` (the remainder rows) to the gather indices ``idx`` of the block
        numbered ``block`` (beginning at ``start``) at the chosen conversions; keep the
        ``rest_pos`` ones' indices."""
        lo, hi = self._cut[block], self._cut[block + 1]
        if hi > lo:
            idx[self.pos[lo:hi] - start] += offset
        lo, hi = self._rest_cut[block], self._rest_cut[block + 1]
        if hi > lo:
            self._kept.append(idx[self.rest_pos[lo:hi] - start])

    def rest_indices(self) -> np.ndarray:
        """The kept gather indices of the ``rest_pos`` conversions, in their order."""
        return np.concatenate(self._kept) if self._kept else np.zeros(0, dtype=np.int32)


def bits_view(t: Any, torch: Any) -> Any:
    """``t`` viewed as the signed integers of its element size (the same bits)."""
    sizes = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.view(sizes[t.element_size()])


def numpy_view(t: Any, torch: Any) -> np.ndarray | None:
    """The numpy array sharing a CPU tensor's memory (None for bfloat16, which numpy
    lacks)."""
    return None if t.dtype == torch.bfloat16 else t.detach().numpy()


def _word_source(rng: Any, device: Any, torch: Any) -> Any:
    """``words(n)``: n random int64 per call, all drawn from the torch generator ``rng``
    (None: torch's global one), so its seed fixes every sample.

    On the CPU the torch generator (mt19937) only seeds a numpy SFC64 stream, which makes
    the words about twice as fast (65536 words: 0.12 against 0.23 ms, measured on this
    sampler's blocks). SFC64 is C. Doty-Humphrey's Small Fast Chaotic generator from the
    PractRand suite; numpy documents a period of at least 2**64 (expected 2**255) and
    guarantees the same stream for the same seed across versions. Elsewhere the words
    come from ``random_`` on the device.
    """
    if torch.device(device).type == "cpu":
        stream = sfc64_generator(rng, torch).bit_generator
        return lambda n: torch.from_numpy(stream.random_raw(n).view(np.int64))

    def on_device(n: int) -> Any:
        # random_ over int64 gives 63 random bits: bits 0..30 of both halves are uniform
        return torch.empty(n, dtype=torch.int64, device=device).random_(generator=rng)
    return on_device


def numpy_codes(ideal: Any, rng: Any) -> tuple[np.ndarray, np.random.Generator]:
    """Ideal codes as an integer array and ``rng`` as a numpy Generator (an int seed or
    None makes one); anything else is a UserError."""
    arr = np.asarray(ideal)
    if arr.dtype.kind not in "iu":
        raise UserError(f"ideal codes must be an integer array, got dtype {arr.dtype}")
    if not isinstance(rng, np.random.Generator):
        if rng is not None and not isinstance(rng, (int, np.integer)):
            raise UserError(f"rng for numpy input must be a numpy Generator or an int "
                            f"seed, got {type(rng).__name__}")
        rng = np.random.default_rng(rng)
    return arr, rng


def check_levels(levels: Any, rng: Any, torch: Any) -> None:
    """What ``sample_levels_`` needs: a contiguous float tensor of levels and a torch
    Generator or None."""
    if not levels.dtype.is_floating_point:
        raise UserError(f"sample_levels_ needs a float tensor of levels, got {levels.dtype}")
    if rng is not None and not isinstance(rng, torch.Generator):
        raise UserError(f"rng must be a torch.Generator, got {type(rng).__name__}")
    if not levels.is_contiguous():
        raise UserError("sample_levels_ needs a contiguous tensor")


class CodeErrorTable:
    """The converted-code distribution at one PVT point.

    ``prob[i, j]`` = P(out = j | ideal = i); rows sum to 1. Optional per-ideal-code
    arrays: ``count`` (samples behind row i), ``interpolated`` (row i had no samples),
    ``mac_lo``/``mac_hi`` (the ideal MAC range mapped to code i) and ``fit`` (the
    parametric fit: ``mu``, ``sigma``, ``skew``, ``ks``, ``loglik``).
    """

    def __init__(self, prob: Any, count: Any = None, interpolated: Any = None,
                 mac_lo: Any = None, mac_hi: Any = None,
                 fit: dict[str, Any] | None = None) -> None:
        prob = np.array(prob, dtype=np.float64)
        if prob.ndim != 2 or prob.shape[0] != prob.shape[1] or prob.shape[0] < 1:
            raise UserError(f"error table must be square (n_codes x n_codes), got {prob.shape}")
        if not np.all(np.isfinite(prob)) or np.any(prob < 0):
            raise UserError("error table probabilities must be finite and >= 0")
        sums = prob.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOL)
        if bad.size:
            raise UserError(f"error table row for ideal code {int(bad[0])} sums to "
                            f"{sums[bad[0]]:.6g}, not 1")
        if np.any(np.abs(sums - 1.0) > 1e-12):
            prob /= sums[:, None]
        self.n_codes: int = prob.shape[0]
        self.prob: np.ndarray = prob
        n = self.n_codes
        self.count = None if count is None else ff.as_array(count, "count", (n,), np.int64)
        self.interpolated = (np.zeros(n, dtype=bool) if interpolated is None
                             else ff.as_array(interpolated, "interpolated", (n,), bool))
        self.mac_lo = None if mac_lo is None else ff.as_array(mac_lo, "mac_lo", (n,))
        self.mac_hi = None if mac_hi is None else ff.as_array(mac_hi, "mac_hi", (n,))
        self.fit: dict[str, np.ndarray] = {
            k: ff.as_array(v, f"fit.{k}", (n,)) for k, v in (fit or {}).items()}
        self._alias_np: tuple[np.ndarray, int] | None = None
        self._alias_torch: dict[str, Any] = {}
        self._cells_np: CellTables | bool | None = None  # False: not worth it for this table
        self._cells_torch: dict[str, Any] = {}
        self._remainder: CodeErrorTable | None = None
        self._plan: CpuPlan | bool | None = None  # False: no cell split for this table

    def __repr__(self) -> str:
        return f"CodeErrorTable(n_codes={self.n_codes})"

    # statistics of out - ideal, computed from the table itself
    def mean_error(self) -> np.ndarray:
        """E[out - ideal | ideal], shape (n_codes,)."""
        codes = np.arange(self.n_codes)
        return self.prob @ codes - codes

    def sigma(self) -> np.ndarray:
        """Standard deviation of out given ideal, shape (n_codes,)."""
        codes = np.arange(self.n_codes, dtype=np.float64)
        mean = self.prob @ codes
        return np.sqrt(np.maximum(self.prob @ codes**2 - mean**2, 0.0))

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> np.ndarray:
        """Quantiles of the error out - ideal, shape (n_codes, len(qs)): the smallest
        error whose cumulative probability reaches q."""
        cdf = np.cumsum(self.prob, axis=1)
        # a little slack so that a CDF of 0.4999999999 still counts as reaching 0.5
        idx = np.stack([(cdf < q - 1e-9).sum(axis=1) for q in qs], axis=1)
        idx = np.minimum(idx, self.n_codes - 1)
        return idx - np.arange(self.n_codes)[:, None]

    # sampling
    def _np_alias(self) -> tuple[np.ndarray, int]:
        if self._alias_np is None:
            self._alias_np = _alias_tables(self.prob)
        return self._alias_np

    def sample(self, ideal: Any, rng: Any = None) -> Any:
        """Noisy codes for ``ideal`` (integer numpy array or torch tensor, values
        0..n_codes-1), of the same type, shape, dtype and device.

        ``rng``: a ``np.random.Generator`` (numpy) or ``torch.Generator`` (torch); an int
        seeds a fresh one; None uses a fresh unseeded numpy generator, or torch's global
        generator (so ``torch.manual_seed`` makes it reproducible).
        """
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(ideal, torch.Tensor):
            return self._sample_torch(ideal, rng, torch)
        return self._sample_numpy(ideal, rng)

    def _check_range(self, lo: int, hi: int) -> None:
        if lo < 0 or hi >= self.n_codes:
            raise UserError(f"ideal codes must lie in 0..{self.n_codes - 1} for this "
                            f"{self.n_codes}-code model, got {lo}..{hi}")

    def _sample_numpy(self, ideal: Any, rng: Any) -> np.ndarray:
        arr, rng = numpy_codes(ideal, rng)
        if arr.size == 0:
            return arr.copy()
        self._check_range(int(arr.min()), int(arr.max()))
        packed, k = self._np_alias()
        raw = rng.integers(0, 1 << _RAND_BITS, size=arr.shape, dtype=np.int32)
        # the steps mirror _alias_draw_torch; see there
        m = 1 << k
        idx = raw & (m - 1)
        raw &= _LOW31 ^ (m - 1)
        idx += arr.astype(np.int32) << k
        entry = packed[idx]
        np.subtract(entry, raw, out=raw)
        raw >>= 31
        entry &= raw
        idx ^= entry
        idx &= m - 1
        return idx.astype(arr.dtype, copy=False)

    def _sample_torch(self, ideal: Any, rng: Any, torch: Any) -> Any:
        if ideal.dtype.is_floating_point or ideal.dtype.is_complex or ideal.dtype == torch.bool:
            raise UserError(f"ideal codes must be an integer tensor, got {ideal.dtype}")
        device = ideal.device
        if isinstance(rng, (int, np.integer)):
            rng = torch.Generator(device=device).manual_seed(int(rng))
        elif rng is not None and not isinstance(rng, torch.Generator):
            raise UserError(f"rng for torch input must be a torch.Generator or an int seed, "
                            f"got {type(rng).__name__}")
        if ideal.numel() == 0:
            return ideal.clone()
        lo, hi = torch.aminmax(ideal)
        self._check_range(int(lo), int(hi))
        out = torch.empty(ideal.shape, dtype=ideal.dtype, device=device)
        self._draw_torch(ideal, out, rng, torch)
        return out

    def sample_levels_(self, levels: Any, rng: Any = None) -> Any:
        """Replace, in place, the ideal codes held as exact integers in a float tensor
        (the form the ramp ADC of :mod:`charact.attention` produces) by noisy ones, and
        return the tensor. The same generator state gives the same codes as :meth:`sample`.

        For the attention hot path: the codes stay in the scores' dtype, so nothing
        downstream converts them, and no new tensor is allocated. The range is not
        checked: the ADC clamps its levels to ``0..n_codes-1`` by construction.
        """
        torch = sys.modules["torch"]
        check_levels(levels, rng, torch)
        if levels.numel():
            self._draw_torch(levels, levels, rng, torch)
        return levels

    def _cells(self) -> CellTables | None:
        """The CPU split of this table (None where its remainder would be too large)."""
        if self._cells_np is None:
            split = _cell_tables(self.prob, _CELL_BITS[0])
            finer = _cell_tables(self.prob, _CELL_BITS[1])
            if split.q - finer.q > _MORE_BITS_GAIN:
                split = finer
            self._cells_np = split if split.q <= _MAX_REMAINDER else False
            if split.q <= _MAX_REMAINDER and split.q > 0.0:
                self._remainder = CodeErrorTable(split.remainder)
        return self._cells_np or None

    def cpu_plan(self) -> CpuPlan | None:
        """The tables of the CPU sampler, built once (None where the table has no cell
        split; see :class:`CpuPlan`)."""
        if self._plan is None:
            split = self._cells()
            if split is None:
                self._plan = False
            else:
                n = self.n_codes
                second = np.zeros(split.cells.size, dtype=np.int32)  # rows never read
                q2, rest = 0.0, None
                if split.q > 0.0:
                    # the remainder split on the same cell bits, as its rows share u
                    inner = _cell_tables(split.remainder, split.bits)
                    if inner.q <= _MAX_REMAINDER:
                        second = inner.cells
                        q2 = inner.q
                        rest = _cdf(inner.remainder) if inner.q > 0.0 else None
                    else:
                        q2, rest = 1.0, _cdf(split.remainder)
                cells = np.concatenate([split.cells, second]).astype(np.int32)
                self._plan = CpuPlan(split.bits, split.q, q2, cells.reshape(2 * n, -1), rest)
        return self._plan or None

    def _draw_torch(self, ideal: Any, out: Any, rng: Any, torch: Any) -> None:
        if ideal.device.type == "cpu" and self.cpu_plan() is not None:
            self._draw_cells_cpu(ideal, out, rng, torch)
        else:
            self._draw_torch_alias(ideal, out, _word_source(rng, ideal.device, torch), torch)

    def _draw_cells_cpu(self, ideal: Any, out: Any, rng: Any, torch: Any) -> None:
        """The CPU sampler of :class:`CpuPlan`: all random bits come from one SFC64 stream
        seeded by ``rng`` (see :func:`_word_source`), in a fixed order: the remainder's
        positions, the inverse-CDF ones among them, the cell bits, then the uniforms of the
        inverse-CDF draws."""
        plan = self.cpu_plan()
        assert plan is not None
        key = str(out.dtype)
        if key not in self._cells_torch:
            # the cells hold the output codes in the output's dtype, gathered as their bit
            # patterns: the gather writes the result directly, with no conversion pass,
            # and index_select moves integers faster than floats of the same size
            self._cells_torch[key] = bits_view(
                torch.as_tensor(plan.cells.reshape(-1)).to(out.dtype), torch)
        cells = self._cells_torch[key]
        flat, flat_out = ideal.detach().reshape(-1), out.detach().view(-1)
        out_bits = bits_view(flat_out, torch)
        out_np = numpy_view(out_bits, torch)  # numpy slices: torch slicing costs more
        src = numpy_view(flat, torch)
        n = flat.numel()
        gen = sfc64_generator(rng, torch)
        stream = gen.bit_generator
        starts = np.arange(0, n + _BLOCK, _BLOCK)
        starts[-1] = n
        chosen = CellChoice(gen, n, plan, starts)
        bits = plan.bits
        u_all = cell_bits(stream, n, bits)
        idx_buf = np.empty(min(n, _BLOCK), dtype=np.int32)
        for block, (start, stop) in enumerate(itertools.pairwise(starts.tolist())):
            u = u_all[start:stop]
            # numpy converts, shifts and ORs the mixed widths in about half torch's time,
            # into one reused buffer (numpy has no bfloat16: torch converts those)
            idx = idx_buf[: stop - start]
            if src is None:
                np.copyto(idx, flat[start:stop].to(torch.int32).numpy())
            else:
                np.copyto(idx, src[start:stop], casting="unsafe")
            idx <<= bits
            idx |= u
            chosen.redirect(block, idx, start, self.n_codes << bits)
            torch.index_select(cells, 0, torch.from_numpy(idx),
                               out=torch.from_numpy(out_np[start:stop]))
        if chosen.rest_pos.size:
            assert plan.rest_cdf is not None
            codes = (chosen.rest_indices() >> bits) - self.n_codes
            drawn = cdf_codes(plan.rest_cdf, codes, gen)
            flat_out.index_copy_(0, torch.from_numpy(chosen.rest_pos),
                                 torch.from_numpy(drawn).to(out.dtype))

    def _draw_torch_alias(self, ideal: Any, out: Any, words: Any, torch: Any) -> None:
        """The alias sampler on ideal's device, its words from ``words(n)`` (int64)."""
        key = str(ideal.device)
        if key not in self._alias_torch:
            self._alias_torch[key] = torch.as_tensor(self._np_alias()[0], device=ideal.device)
        packed, k = self._alias_torch[key], self._np_alias()[1]
        flat, flat_out = ideal.reshape(-1), out.view(-1)
        # blocks keep every temporary in cache and let the allocator reuse them; whole-size
        # temporaries cost a page fault per 4 KiB on every call (about 2x slower on CPU).
        # A block reads all of its ideal codes before it writes, so out may be ideal.
        for start in range(0, flat.numel(), _BLOCK):
            stop = min(start + _BLOCK, flat.numel())
            _alias_draw_torch(packed, k, flat[start:stop], flat_out[start:stop],
                              words((stop - start + 1) // 2), torch)

    # (de)serialization of one point
    def to_json(self) -> dict:
        d: dict[str, Any] = {"prob": self.prob, "interpolated": self.interpolated,
                             "count": self.count, "mac_lo": self.mac_lo, "mac_hi": self.mac_hi,
                             "fit": dict(self.fit)}
        return d

    @classmethod
    def from_json(cls, obj: Any, n_codes: int, where: str) -> CodeErrorTable:
        prob = ff.as_array(ff.require(obj, "prob", where), f"{where}.prob", (n_codes, n_codes))
        fit = ff.require(obj, "fit", where)
        if not isinstance(fit, dict):
            raise UserError(f"{where}.fit: expected a JSON object")
        try:
            return cls(prob, count=ff.require(obj, "count", where),
                       interpolated=ff.require(obj, "interpolated", where),
                       mac_lo=obj.get("mac_lo"), mac_hi=obj.get("mac_hi"), fit=fit)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc


def _norm_pvt(p: PVT | tuple) -> PVT:
    return PVT(str(p[0]), float(p[1]), float(p[2]))


class ErrorModel:
    """A versioned code-error model: one :class:`CodeErrorTable` per PVT point (P(out |
    ideal) pooled over columns) and, for a structured model, per point the per-column
    static part and the per-conversion table (``structure``: PVT -> ``(StaticPart,
    CodeErrorTable)``; see :mod:`charact.lookup.structured`). :meth:`point` gives both
    parts of a point; :meth:`table` the pooled table, as for every model."""

    kind = KIND

    def __init__(self, tables: dict[PVT, CodeErrorTable], provenance: dict | None = None,
                 nominal: PVT | None = None,
                 structure: dict[PVT, tuple[Any, CodeErrorTable]] | None = None) -> None:
        if not tables:
            raise UserError("an error model needs at least one PVT point")
        sizes = {t.n_codes for t in tables.values()}
        if len(sizes) != 1:
            raise UserError(f"all PVT points of a model must have the same n_codes, got "
                            f"{sorted(sizes)}")
        self._tables = {_norm_pvt(p): t for p, t in tables.items()}
        self._structure = {_norm_pvt(p): s for p, s in (structure or {}).items()}
        extra = [p.label() for p in self._structure if p not in self._tables]
        if extra:
            raise UserError(f"structure given for PVT point(s) {', '.join(extra)} that the "
                            "model does not have")
        n_codes = next(iter(sizes))
        for p, (_, residual) in self._structure.items():
            if residual.n_codes != n_codes:
                raise UserError(f"{p.label()}: the per-conversion table has "
                                f"{residual.n_codes} codes, the model {n_codes}")
        #: the file's schema when loaded (a model built in memory writes the current one)
        self.schema: str = ff.SCHEMA
        self.points: list[PVT] = list(self._tables)
        self.n_codes: int = sizes.pop()
        self.provenance: dict = dict(provenance or {})
        if nominal is not None:
            nominal = PVT(str(nominal.corner), float(nominal.vdd), float(nominal.temp))
            if nominal not in self._tables:
                raise UserError(f"nominal point {nominal.label()} is not among the model's "
                                f"points: {self._list()}")
        self.nominal: PVT | None = nominal

    def __repr__(self) -> str:
        return f"ErrorModel(n_codes={self.n_codes}, points=[{self._list()}])"

    def _list(self) -> str:
        return ", ".join(p.label() for p in self.points)

    @property
    def structured(self) -> bool:
        """Whether any point has a per-column static part."""
        return bool(self._structure)

    def table(self, corner: str | None = None, vdd: float | None = None,
              temp: float | None = None) -> CodeErrorTable:
        """The (pooled) table at a PVT point. Fields left None match anything; with all
        three None, the nominal point (or the only one). A UserError names what does not
        exist."""
        return self._tables[self.resolve(corner, vdd, temp)]

    def point(self, corner: str | None = None, vdd: float | None = None,
              temp: float | None = None) -> Any:
        """Both parts of the model at a PVT point (chosen as by :meth:`table`), as a
        :class:`~charact.lookup.structured.PointErrorModel` (static part None when the
        point has none)."""
        from charact.lookup.structured import PointErrorModel

        pvt = self.resolve(corner, vdd, temp)
        static, residual = self._structure.get(pvt, (None, None))
        return PointErrorModel(pvt, self._tables[pvt], residual, static)

    def structure(self, pvt: PVT) -> tuple[Any, CodeErrorTable] | None:
        """``(StaticPart, per-conversion table)`` at exactly ``pvt``, or None."""
        return self._structure.get(_norm_pvt(pvt))

    def resolve(self, corner: str | None = None, vdd: float | None = None,
                temp: float | None = None) -> PVT:
        """The PVT point :meth:`table` and :meth:`point` pick for these fields."""
        if corner is None and vdd is None and temp is None:
            if self.nominal is not None:
                return self.nominal
            if len(self.points) == 1:
                return self.points[0]
            raise UserError(f"this model has {len(self.points)} PVT points and no nominal one; "
                            f"choose corner/vdd/temp from: {self._list()}")
        matches = list(self.points)
        if corner is not None:
            corners = sorted({p.corner for p in self.points})
            matches = [p for p in matches if p.corner.lower() == str(corner).lower()]
            if not matches:
                raise UserError(f"unknown corner {corner!r}; this model has: "
                                f"{', '.join(corners)}")
        if vdd is not None:
            matches = [p for p in matches if math.isclose(p.vdd, vdd, abs_tol=_PVT_TOL)]
        if temp is not None:
            matches = [p for p in matches if math.isclose(p.temp, temp, abs_tol=_PVT_TOL)]
        asked = "/".join(str(v) for v in (corner, vdd, temp) if v is not None)
        if not matches:
            raise UserError(f"no PVT point {asked} in this model (no interpolation between "
                            f"error tables); points: {self._list()}")
        if len(matches) > 1:
            if self.nominal in matches:
                return self.nominal
            raise UserError(f"{asked} matches {len(matches)} PVT points; give corner, vdd and "
                            f"temp: {', '.join(p.label() for p in matches)}")
        return matches[0]

    def items(self) -> list[tuple[PVT, CodeErrorTable]]:
        return list(self._tables.items())

    # file format
    def to_data(self) -> dict:
        points = []
        for p, t in self._tables.items():
            entry = {"pvt": _pvt_json(p), **t.to_json(), "structure": None}
            if p in self._structure:
                static, residual = self._structure[p]
                res = residual.to_json()
                for key in ("mac_lo", "mac_hi"):
                    res.pop(key)
                entry["structure"] = {"static": static.to_json(), "residual": res}
            points.append(entry)
        return {"n_codes": self.n_codes,
                "nominal": None if self.nominal is None else _pvt_json(self.nominal),
                "points": points}

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file atomically (see ``models/README.md``)."""
        ff.write_model_file(path, KIND, self.to_data(), self.provenance)

    @classmethod
    def from_data(cls, data: dict, provenance: dict, name: str,
                  schema: str = ff.SCHEMA) -> ErrorModel:
        """The model from a file's ``data``; ``schema`` 1 files have no ``structure``."""
        from charact.lookup.structured import StaticPart

        n_codes = ff.require(data, "n_codes", f"{name}: data")
        if not isinstance(n_codes, int) or isinstance(n_codes, bool) or n_codes < 2:
            raise UserError(f"{name}: data.n_codes must be an integer >= 2, got {n_codes!r}")
        points = ff.require(data, "points", f"{name}: data")
        if not isinstance(points, list) or not points:
            raise UserError(f"{name}: data.points must be a non-empty list")
        tables: dict[PVT, CodeErrorTable] = {}
        structure: dict[PVT, tuple[StaticPart, CodeErrorTable]] = {}
        for i, obj in enumerate(points):
            where = f"{name}: data.points[{i}]"
            pvt = _pvt_from_json(ff.require(obj, "pvt", where), f"{where}.pvt")
            if pvt in tables:
                raise UserError(f"{where}: duplicate PVT point {pvt.label()}")
            tables[pvt] = CodeErrorTable.from_json(obj, n_codes, where)
            st = obj.get("structure")
            if st is not None:
                if schema == ff.SCHEMA_V1:
                    raise UserError(f"{where}: 'structure' needs schema {ff.SCHEMA!r}, the "
                                    f"file says {schema!r}")
                if not isinstance(st, dict):
                    raise UserError(f"{where}.structure: expected a JSON object or null")
                static = StaticPart.from_json(ff.require(st, "static", f"{where}.structure"),
                                              f"{where}.structure.static")
                residual = CodeErrorTable.from_json(
                    ff.require(st, "residual", f"{where}.structure"), n_codes,
                    f"{where}.structure.residual")
                structure[pvt] = (static, residual)
        nominal = ff.require(data, "nominal", f"{name}: data")
        nominal = None if nominal is None else _pvt_from_json(nominal, f"{name}: data.nominal")
        try:
            model = cls(tables, provenance, nominal, structure)
        except UserError as exc:
            raise UserError(f"{name}: {exc}") from exc
        model.schema = schema
        return model

    @classmethod
    def load(cls, path: str | os.PathLike) -> ErrorModel:
        """Read and validate a ``code_error`` model file (schema 1 or 2; a schema 1 file is
        a model without static parts); any problem is one UserError."""
        doc = ff.read_model_document(path, KIND)
        return cls.from_data(doc.data, doc.provenance, str(path), doc.schema)


def error_model_from_samples(ideal_codes: Any, codes: Any, n_codes: int,
                             pvt: PVT | None = None, provenance: dict | None = None,
                             smoothing: float = 2.0) -> ErrorModel:
    """A one-point model from paired integer arrays of ideal and converted codes.

    ``smoothing`` is the number of pseudo-samples of the discretized-Gaussian prior mixed
    into each row (0 = the raw empirical distribution where there are samples); see
    :mod:`charact.lookup.estimate`.
    """
    from charact.lookup import estimate

    if not isinstance(n_codes, (int, np.integer)) or n_codes < 2:
        raise UserError(f"n_codes must be an integer >= 2, got {n_codes!r}")
    counts = estimate.count_matrix(ideal_codes, codes, int(n_codes))
    table = table_from_counts(counts, smoothing)
    pvt = pvt or SYNTHETIC_PVT
    prov = ff.default_provenance(source="samples", smoothing=smoothing,
                                 sample_count=int(counts.sum()))
    prov.update(ff.jsonable(provenance or {}))
    return ErrorModel({pvt: table}, prov, nominal=pvt)


def table_from_counts(counts: np.ndarray, smoothing: float, mac_lo: Any = None,
                      mac_hi: Any = None) -> CodeErrorTable:
    """Smoothed table plus Gaussian fit from a count matrix ``counts[ideal, out]``."""
    from charact.lookup import estimate

    prob, interpolated = estimate.smoothed_table(counts, smoothing)
    fit = estimate.gaussian_fit(counts)
    count = fit.pop("count")
    return CodeErrorTable(prob, count=count, interpolated=interpolated, mac_lo=mac_lo,
                          mac_hi=mac_hi, fit=fit)
