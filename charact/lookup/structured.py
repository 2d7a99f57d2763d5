"""Structured code-error models: a static error fixed per physical column plus fresh
per-conversion noise, and its injection per simulated chip.

Why: the dominant error of the replica-ramp column (the comparator's offset, the ramp's
gain error) is set by the devices of a column, so it is the same for every conversion of
that column on a given die. Drawing every conversion independently from one pooled table
averages it away; a chip whose column 7 reads 2 LSB high always favours key 7 in top-k.

Per PVT point the model holds

* the **static part** (:class:`StaticPart`): a column's error mean is
  ``b + g * (code_ideal - center)`` (offset ``b`` in LSB, gain error ``g`` in LSB per code,
  ``center`` = mid-scale, 15.5 for 32 codes), and ``(b, g)`` is a random effect over the
  columns: mean and covariance;
* the **per-conversion part**: the integer code error left after the column's own static
  part, per ideal code, as a :class:`~charact.lookup.error_model.CodeErrorTable`
  (``P(ideal + r | ideal)``).

A simulated chip (:class:`ChipColumnErrors`) draws one ``(b, g)`` per physical column from
generators seeded by (chip, layer, site, head), so the same chip seed is the same silicon
in every evaluation; the per-conversion noise comes from the caller's generator.

torch is never imported here: a tensor is recognised through ``sys.modules``.
"""

from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charact.errors import UserError
from charact.lookup import fileformat as ff
from charact.lookup.error_model import (
    PVT,
    CellChoice,
    CodeErrorTable,
    CpuPlan,
    bits_view,
    cdf_codes,
    check_levels,
    numpy_codes,
    sfc64_generator,
)

#: the arrays a chip has: Q.K^T (one column per key position) and A.V (one per d_v output)
SITES = {"qk": 0, "av": 1}
# a tag mixed into every chip stream, so no other user of SeedSequence([chip, ...]) shares it
_CHIP_STREAM_TAG = 0x63686970  # "chip"
_COV_TOL = 1e-9
_CHIP_BLOCK = 1 << 18  # conversions per block of the CPU sampler (whole slabs where they fit)
# the CPU sampler's table has 2 n_codes 2**(ks + cb) float32 entries (512 KiB for 32 codes,
# byte cells and static errors within +-3 LSB); wider static errors take the general path
_MAX_TABLE = 1 << 22
# its tables depend on a chip only through (s_min, ks): chips and layers that share a
# residual table share them
_SHIFT_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def mid_scale(n_codes: int) -> float:
    """The code the gain error pivots on: the middle of 0..n_codes-1 (15.5 for 32)."""
    return (n_codes - 1) / 2.0


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """``A`` with ``A @ A.T == cov`` for a symmetric PSD (possibly singular) matrix."""
    lam, vec = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    return vec * np.sqrt(np.clip(lam, 0.0, None))[None, :]


@dataclass(frozen=True)
class StaticPart:
    """The per-column static error at one PVT point, as a random effect over columns.

    ``mean`` = (mean b, mean g) and ``cov`` their 2x2 covariance across columns (b in LSB,
    g in LSB per code away from ``center``). ``stats``: how the fit went (counts, standard
    errors; see :func:`charact.lookup.static_fit.fit_structure`).
    """

    mean: np.ndarray
    cov: np.ndarray
    center: float
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        cov = np.asarray(self.cov, dtype=np.float64)
        if mean.shape != (2,) or cov.shape != (2, 2):
            raise UserError(f"static part: mean must be 2 numbers and cov 2x2, got shapes "
                            f"{mean.shape} and {cov.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
                and math.isfinite(self.center)):
            raise UserError("static part: mean, cov and center must be finite")
        if abs(cov[0, 1] - cov[1, 0]) > _COV_TOL * max(1.0, np.abs(cov).max()):
            raise UserError("static part: cov must be symmetric")
        if np.linalg.eigvalsh(cov).min() < -_COV_TOL * max(1.0, np.abs(cov).max()):
            raise UserError("static part: cov must be positive semi-definite")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "center", float(self.center))

    @property
    def sigma_b(self) -> float:
        return float(math.sqrt(max(self.cov[0, 0], 0.0)))

    @property
    def sigma_g(self) -> float:
        return float(math.sqrt(max(self.cov[1, 1], 0.0)))

    def mean_error(self, codes: Any) -> np.ndarray:
        """Population mean of the static error at ideal ``codes``: mean_b + mean_g (c - center)."""
        x = np.asarray(codes, dtype=np.float64) - self.center
        return self.mean[0] + self.mean[1] * x

    def sigma(self, codes: Any) -> np.ndarray:
        """Column-to-column sigma of the static error at ideal ``codes`` (LSB)."""
        x = np.asarray(codes, dtype=np.float64) - self.center
        var = self.cov[0, 0] + 2 * x * self.cov[0, 1] + x**2 * self.cov[1, 1]
        return np.sqrt(np.maximum(var, 0.0))

    def draw(self, chip: int, layer: int, site: str, n_heads: int, n_cols: int
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(b, g)``, each (n_heads, n_cols): the columns of one array of one chip.

        Head ``h`` draws its columns in order from its own stream, seeded by
        (chip, layer, site, h): column ``j`` gets the same ``(b, g)`` whatever ``n_cols``
        (a shorter sequence uses a prefix of the same silicon).
        """
        if site not in SITES:
            raise UserError(f"unknown array {site!r}; choose from {', '.join(SITES)}")
        for name, v in (("chip", chip), ("layer", layer)):
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise UserError(f"{name} must be an integer >= 0, got {v!r}")
        root = psd_sqrt(self.cov)
        z = np.stack([
            np.random.default_rng(np.random.SeedSequence(
                [_CHIP_STREAM_TAG, int(chip), int(layer), SITES[site], h])
            ).standard_normal((n_cols, 2))
            for h in range(n_heads)]) if n_heads else np.zeros((0, n_cols, 2))
        bg = self.mean + z @ root.T
        return bg[..., 0], bg[..., 1]

    def to_json(self) -> dict:
        return {"mean": self.mean, "cov": self.cov, "center": self.center,
                "stats": dict(self.stats)}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> StaticPart:
        mean = ff.as_array(ff.require(obj, "mean", where), f"{where}.mean", (2,))
        cov = ff.as_array(ff.require(obj, "cov", where), f"{where}.cov", (2, 2))
        center = ff.require(obj, "center", where)
        if not isinstance(center, (int, float)) or isinstance(center, bool):
            raise UserError(f"{where}.center: expected a number")
        stats = obj.get("stats") or {}
        if not isinstance(stats, dict):
            raise UserError(f"{where}.stats: expected a JSON object")
        try:
            return cls(mean, cov, float(center), stats)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc


def _layout(shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """``(n_heads, n_cols, view)``: columns are the last axis, heads the third from last
    ((B, H, Lq, Lk) scores, (B, H, Lq, Dv) A.V outputs); ``view`` reshapes an
    (n_heads, n_cols) static array to broadcast against ``shape``."""
    if len(shape) >= 3:
        return shape[-3], shape[-1], (shape[-3], 1, shape[-1])
    if len(shape) == 2:
        return 1, shape[-1], (1, shape[-1])
    if len(shape) == 1:
        return 1, shape[0], (shape[0],)
    raise UserError("codes must have at least one axis (the columns)")


def _blocks(slabs: int, rows: int, n: int) -> list[tuple[int, int, int, int]]:
    """``(s0, s1, r0, r1)``: blocks of about :data:`_CHIP_BLOCK` conversions of an array
    viewed as (slabs, rows, n): whole slabs where they fit, else row ranges of one slab
    (each block is contiguous, and one head's per-column values broadcast over it)."""
    per = max(1, _CHIP_BLOCK // n)
    if rows <= per:
        k = max(1, per // rows)
        return [(s, min(s + k, slabs), 0, rows) for s in range(0, slabs, k)]
    step = -(-rows // -(-rows // per))
    return [(s, s + 1, r, min(rows, r + step)) for s in range(slabs) for r in range(0, rows, step)]


def _two_uniform(stream: Any, m: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent arrays of ``m`` uniform ``bits``-bit integers (``bits`` 8 or up to
    16) from whole 64-bit words of the numpy bit generator ``stream``."""
    if bits == 8:
        raw = stream.random_raw((2 * m + 7) // 8).view(np.uint8)
        return raw[:m], raw[m:2 * m]
    raw = stream.random_raw((4 * m + 7) // 8).view(np.uint16)
    raw &= (1 << bits) - 1
    return raw[:m], raw[m:2 * m]


@dataclass
class _CpuChip:
    """One chip's precomputed CPU sampler for arrays of ``n`` columns of ``heads`` heads
    (see :meth:`ChipColumnErrors._draw_cpu`)."""

    gain: np.ndarray  # (heads, 1, n) float32: 2**cb g
    offset: np.ndarray  # (heads, 1, n) float32: 2**cb (b - g center - s_min) + 1
    s_min: int  # the smallest shift floor(c + e + u) - c any column and code can take
    ks: int  # bits of the shift field
    small: bool  # the word fits 16 bits: uint16 arithmetic
    table: Any  # torch int32: float32 bits of clip(cells + s_min + s), (2 n_codes, 2**ks, 2**cb)
    _slabs: dict[tuple[int, int], tuple[Any, ...]] = field(default_factory=dict)

    def slabs(self, slabs: int, rows: int) -> tuple[np.ndarray, np.ndarray, list, np.ndarray, int]:
        """``(gain, offset, blocks, starts, size)`` for an array viewed as (slabs, rows, n):
        the rows repeated per slab (slab s is head s % heads), its :func:`_blocks`, their
        flat starts (then the total) and the largest block's size."""
        key = (slabs, rows)
        if key not in self._slabs:
            which = np.arange(slabs) % self.gain.shape[0]
            n = self.gain.shape[-1]
            blocks = _blocks(slabs, rows, n)
            starts = np.array([(s0 * rows + r0) * n for s0, _, r0, _ in blocks]
                              + [slabs * rows * n])
            self._slabs[key] = (self.gain[which], self.offset[which], blocks, starts,
                                int(np.diff(starts).max()))
        return self._slabs[key]


def _scratch(size: int, dtypes: tuple[Any, ...]) -> list[Any]:
    """Arrays of ``size`` elements of each of ``dtypes`` (None: no array) carved from one
    allocation, each on a 64-byte boundary (one malloc instead of several per call)."""
    nbytes = [0 if dt is None else -(-size * np.dtype(dt).itemsize // 64) * 64 for dt in dtypes]
    raw = np.empty(sum(nbytes), dtype=np.uint8)
    out: list[Any] = []
    at = 0
    for dt, nb in zip(dtypes, nbytes, strict=True):
        out.append(None if dt is None else raw[at:at + size * np.dtype(dt).itemsize].view(dt))
        at += nb
    return out


class ChipColumnErrors:
    """The code errors of one array (``site``) of one layer of one simulated chip.

    A conversion of ideal code ``c`` on column (h, j) becomes::

        out = clip(floor(c + e + u) + r, 0, n_codes - 1),  e = b[h, j] + g[h, j] (c - center)

    with ``u ~ U[0, 1)`` and ``r`` drawn from the per-conversion table's row ``c`` (as
    ``P(c + r | c)``), both fresh per conversion.

    Why ``floor(c + e + u)``: the ideal code stands for an analog value somewhere in its
    LSB bin, and the static error is analog (a comparator offset does not come in whole
    LSB). Adding ``e`` to the bin's position and re-quantizing makes a column's mean code
    error exactly ``e`` (E[floor(x + u)] = x), where rounding ``c + e`` would turn a 0.4 LSB
    offset into none at all and a 0.6 LSB one into a full LSB. ``u`` stands for the MAC's
    position inside its bin, which the ideal code has thrown away; the fit
    (:mod:`charact.lookup.static_fit`) deconvolves the same ``u`` out of ``r``, so it is
    not counted twice.

    ``fixed``: explicit ``(b, g)`` arrays (n_heads, n_cols) instead of draws (tests,
    what-if studies); inputs with more columns than that are refused.
    """

    def __init__(self, residual: CodeErrorTable, static: StaticPart, chip: int = 0,
                 layer: int = 0, site: str = "qk",
                 fixed: tuple[Any, Any] | None = None) -> None:
        if site not in SITES:
            raise UserError(f"unknown array {site!r}; choose from {', '.join(SITES)}")
        self.residual = residual
        self.static = static
        self.n_codes: int = residual.n_codes
        self.chip, self.layer, self.site = int(chip), int(layer), site
        self._fixed = None
        if fixed is not None:
            b, g = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in fixed)
            if b.shape != g.shape or b.ndim != 2:
                raise UserError(f"fixed static errors: b and g must be (heads, columns) "
                                f"arrays of the same shape, got {b.shape} and {g.shape}")
            self._fixed = (b, g)
        self._np: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._torch: dict[tuple, tuple[Any, Any]] = {}
        self._cpu: dict[tuple[int, int], _CpuChip | None] = {}

    def __repr__(self) -> str:
        return (f"ChipColumnErrors(chip={self.chip}, layer={self.layer}, site={self.site!r}, "
                f"n_codes={self.n_codes})")

    def static_for(self, n_heads: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        """This chip's ``(b, g)`` of the first ``n_cols`` columns of ``n_heads`` heads,
        each (n_heads, n_cols), float64. Drawn once per shape and kept."""
        key = (int(n_heads), int(n_cols))
        if key not in self._np:
            if self._fixed is not None:
                b, g = self._fixed
                if n_heads > b.shape[0] or n_cols > b.shape[1]:
                    raise UserError(f"fixed static errors cover {b.shape[0]} head(s) x "
                                    f"{b.shape[1]} columns; got {n_heads} x {n_cols}")
                self._np[key] = (b[:n_heads, :n_cols], g[:n_heads, :n_cols])
            else:
                self._np[key] = self.static.draw(self.chip, self.layer, self.site,
                                                 n_heads, n_cols)
        return self._np[key]

    def column_error(self, ideal: Any) -> np.ndarray:
        """The static error ``e`` (LSB) of each element of ``ideal`` (numpy), by layout."""
        arr = np.asarray(ideal)
        h, n, view = _layout(arr.shape)
        b, g = self.static_for(h, n)
        return b.reshape(view) + g.reshape(view) * (arr - self.static.center)

    def _torch_static(self, like: Any, dtype: Any, torch: Any) -> tuple[Any, Any]:
        h, n, view = _layout(tuple(like.shape))
        key = (h, n, str(like.device), dtype)
        if key not in self._torch:
            # one upload per shape and device; every later call stays on the device
            b, g = self.static_for(h, n)
            self._torch[key] = tuple(torch.as_tensor(a.reshape(view), dtype=dtype,
                                                     device=like.device) for a in (b, g))
        return self._torch[key]

    # sampling
    def sample(self, ideal: Any, rng: Any = None) -> Any:
        """Noisy codes for integer ``ideal`` codes (numpy array or torch tensor, columns on
        the last axis, heads on the third from last), of the same type, shape and dtype.
        ``rng`` as for :meth:`CodeErrorTable.sample`."""
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(ideal, torch.Tensor):
            return self._sample_torch(ideal, rng, torch)
        arr, rng = numpy_codes(ideal, rng)
        if arr.size == 0:
            return arr.copy()
        e = self.column_error(arr)
        shift = np.floor(e + rng.random(arr.shape))
        out = self.residual.sample(arr, rng).astype(np.int64) + shift.astype(np.int64)
        return np.clip(out, 0, self.n_codes - 1).astype(arr.dtype)

    def _sample_torch(self, ideal: Any, rng: Any, torch: Any) -> Any:
        if ideal.dtype.is_floating_point or ideal.dtype.is_complex or ideal.dtype == torch.bool:
            raise UserError(f"ideal codes must be an integer tensor, got {ideal.dtype}")
        if isinstance(rng, (int, np.integer)):
            rng = torch.Generator(device=ideal.device).manual_seed(int(rng))
        if ideal.numel() == 0:
            return ideal.clone()
        # as float32 levels (exact for any code count here): the same draws as the
        # attention path's float levels for the same generator state
        levels = ideal.to(torch.float32).contiguous()
        self.sample_levels_(levels, rng)
        return levels.to(ideal.dtype)

    def sample_levels_(self, levels: Any, rng: Any = None) -> Any:
        """In place, as :meth:`CodeErrorTable.sample_levels_`: ideal codes held as exact
        integers in a contiguous float tensor become this chip's noisy codes.

        On the CPU one pass per block draws both parts (:meth:`_draw_cpu`); elsewhere, and
        for static errors too wide for it, the shift and the residual are drawn apart."""
        torch = sys.modules["torch"]
        check_levels(levels, rng, torch)
        if levels.numel() == 0:
            return levels
        if levels.device.type == "cpu" and self._draw_cpu(levels, rng, torch):
            return levels
        # half-precision levels would round e + u: the shift is worked out in float32
        work = torch.float64 if levels.dtype == torch.float64 else torch.float32
        b, g = self._torch_static(levels, work, torch)
        shift = levels.to(work, copy=True).sub_(self.static.center).mul_(g).add_(b)
        shift.add_(torch.rand(levels.shape, generator=rng, device=levels.device, dtype=work))
        shift.floor_()
        self.residual.sample_levels_(levels, rng)  # c -> c + r
        levels.add_(shift.to(levels.dtype)).clamp_(0, self.n_codes - 1)
        return levels

    def _cpu_chip(self, heads: int, n: int, plan: CpuPlan, torch: Any) -> _CpuChip | None:
        """The CPU sampler's per-chip arrays for ``heads`` x ``n`` columns, built once per
        shape (None where the static errors span too many shifts for its table)."""
        key = (heads, n)
        if key in self._cpu:
            return self._cpu[key]
        b, g = self.static_for(heads, n)
        center, big_n, cb = self.static.center, self.n_codes, plan.bits
        ends = np.stack([b - g * center, b + g * (big_n - 1 - center)])
        # margins of two fraction units keep a float32 rounding of the word off its
        # neighbours: e - s_min >= 2 / 2**cb keeps Z (see _draw_cpu) at 2 or more, and the
        # shift field (at most floor(e - s_min) + 1, a carry) below 2**ks
        margin = 2.0 / (1 << cb)
        s_min = math.floor(float(ends.min()) - margin)
        top = math.floor(float(ends.max()) - s_min + margin) + 1
        ks = top.bit_length()
        word = (big_n - 1).bit_length() + ks + cb
        chip = None
        if 2 * big_n << (ks + cb) <= _MAX_TABLE:
            scale = float(1 << cb)
            shared = _SHIFT_TABLES.setdefault(self.residual, {})
            if (s_min, ks) not in shared:
                shifts = s_min + np.arange(1 << ks)
                values = np.clip(plan.cells[:, None, :] + shifts[None, :, None], 0, big_n - 1)
                shared[(s_min, ks)] = bits_view(
                    torch.as_tensor(values.astype(np.float32).reshape(-1)), torch)
            table = shared[(s_min, ks)]
            chip = _CpuChip(
                gain=(scale * g).astype(np.float32)[:, None, :],
                offset=(scale * (b - g * center - s_min) + 1.0).astype(np.float32)[:, None, :],
                s_min=s_min, ks=ks, small=word <= 16, table=table)
        self._cpu[key] = chip
        return chip

    def _draw_cpu(self, levels: Any, rng: Any, torch: Any) -> bool:
        """This chip's noisy codes for CPU ``levels`` in place, in one pass per block;
        False (nothing done) where :meth:`_cpu_chip` or the residual has no plan for it.

        With M = 2**cb (cb: the residual's cell bits) and e' = e - s_min > 0, one float32
        multiply-add per block, from two per-column rows (:class:`_CpuChip`), gives each
        conversion Y = M e' + 1 and Z = floor(Y) (to float32 rounding, as the shift was
        worked out before). The static shift floor(e' + u) is floor((Z - 1 + T) / M) with
        T = floor(M u + Y - Z), which takes each of 1 .. M-1 with probability 1/M, and 0
        or M with (1 - p) / M and p / M, p = Y - Z. So adding ``u_b`` (cb random bits) to
        Z carries the shift into the word's shift field with T = u_b + 1; for u_b = M - 1
        (the conversions found from the random bytes alone, 1 in M) that is T = M, which
        a Bernoulli(p) draw turns into T = 0 with probability 1 - p. XORing the fraction
        field with ``u_a`` (cb more random bits) leaves a uniform cell index independent of
        the shift; with the code in the top field the word indexes one table of
        ``clip(cell code + s_min + shift)`` (rows c, then the residual's remainder rows,
        :class:`CpuPlan`), and one gather writes the output.
        """
        plan = self.residual.cpu_plan()
        shape = tuple(levels.shape)
        heads, n, _ = _layout(shape)
        fast = None if plan is None else self._cpu_chip(heads, n, plan, torch)
        if fast is None:
            return False
        assert plan is not None
        rows = shape[-2] if len(shape) >= 2 else 1
        work = levels if levels.dtype == torch.float32 else levels.to(torch.float32)
        arr = work.detach().numpy().reshape(-1, rows, n)
        flat = arr.reshape(-1)
        flat_bits = flat.view(np.int32)
        gain, offset, blocks, starts, size = fast.slabs(arr.shape[0], rows)
        cb, ks, big_n = plan.bits, fast.ks, self.n_codes
        code_at = cb + ks  # the code field's lowest bit
        gen = sfc64_generator(rng, torch)
        chosen = CellChoice(gen, flat.size, plan, starts)
        # the whole call's random bits and its tied conversions at once: fewer, longer steps
        u_a_all, u_b_all = _two_uniform(gen.bit_generator, flat.size, cb)
        ties_all = np.flatnonzero(u_b_all == (1 << cb) - 1)
        tie_cut = np.searchsorted(ties_all, starts).tolist()
        tie_u = gen.random(ties_all.size)
        word = np.uint16 if fast.small else np.int32
        y_buf, x_buf, c_buf, i_buf = _scratch(
            size, (np.float32, word, word, np.int32 if fast.small else None))
        if i_buf is None:
            i_buf = x_buf
        # numpy slices and from_numpy: slicing torch tensors costs several times more
        for block, (s0, s1, r0, r1) in enumerate(blocks):
            lv = arr[s0:s1, r0:r1]
            m = lv.size
            start = int(starts[block])
            y = y_buf[:m].reshape(lv.shape)
            torch.addcmul(torch.from_numpy(offset[s0:s1]), torch.from_numpy(lv),
                          torch.from_numpy(gain[s0:s1]), out=torch.from_numpy(y))
            x, code = x_buf[:m], c_buf[:m]
            np.copyto(x, y.reshape(-1), casting="unsafe")  # Y > 0: truncation is floor
            x += u_b_all[start:start + m]
            x ^= u_a_all[start:start + m]
            np.copyto(code, flat[start:start + m], casting="unsafe")
            code <<= code_at
            x |= code
            idx = i_buf[:m]
            if fast.small:
                np.copyto(idx, x)
            lo, hi = tie_cut[block], tie_cut[block + 1]
            if hi > lo:
                # T = M was taken; it stands for T = 0 with probability 1 - p
                t = ties_all[lo:hi] - start
                y_t = y_buf[t]
                down = tie_u[lo:hi] >= y_t - np.floor(y_t)
                idx[t] -= down.astype(np.int32) << cb
            chosen.redirect(block, idx, start, big_n << code_at)
            torch.index_select(fast.table, 0, torch.from_numpy(idx),
                               out=torch.from_numpy(flat_bits[start:start + m]))
        kept = chosen.rest_indices()
        if kept.size:
            assert plan.rest_cdf is not None
            code = (kept >> code_at) - big_n
            shift = (kept >> cb) & ((1 << ks) - 1)
            drawn = cdf_codes(plan.rest_cdf, code, gen)
            flat[chosen.rest_pos] = np.clip(drawn + fast.s_min + shift, 0, big_n - 1)
        if work is not levels:
            levels.copy_(work)
        return True


class PointErrorModel:
    """The error model at one PVT point: the pooled table plus, when structured, the
    static part and the per-conversion table.

    ``table``: P(out | ideal) pooled over columns (what an unstructured model is).
    ``residual``: the per-conversion table (the pooled one when unstructured).
    ``static``: the :class:`StaticPart`, or None.

    It goes into :class:`charact.attention.pipeline.AttentionConfig` as an error model:
    unstructured, it samples exactly as its table does; structured, it must first be bound
    to a chip (:meth:`for_chip`, which :func:`charact.attention.pipeline.bind_chip` does per
    layer), since which column is which is a property of a die.
    """

    def __init__(self, pvt: PVT, table: CodeErrorTable, residual: CodeErrorTable | None = None,
                 static: StaticPart | None = None) -> None:
        if (residual is None) != (static is None):
            raise UserError("a structured point needs both a static part and a residual table")
        if residual is not None and residual.n_codes != table.n_codes:
            raise UserError(f"residual table has {residual.n_codes} codes, the pooled one "
                            f"{table.n_codes}")
        self.pvt = pvt
        self.table = table
        self.static = static
        self.residual = residual if residual is not None else table
        self.n_codes: int = table.n_codes

    @property
    def structured(self) -> bool:
        return self.static is not None

    def __repr__(self) -> str:
        kind = "structured" if self.structured else "unstructured"
        return f"PointErrorModel({self.pvt.label()}, {kind}, n_codes={self.n_codes})"

    def for_chip(self, chip: int, layer: int = 0, site: str = "qk"
                 ) -> ChipColumnErrors | CodeErrorTable:
        """The errors of array ``site`` ("qk" or "av") of ``layer`` on chip ``chip``.
        Unstructured: the table itself (every chip is the same; sampling is unchanged)."""
        if self.static is None:
            return self.table
        return ChipColumnErrors(self.residual, self.static, chip, layer, site)

    def _unbound(self) -> UserError:
        return UserError(f"the error model at {self.pvt.label()} has a per-column static part: "
                         "bind it to a simulated chip first (PointErrorModel.for_chip, or "
                         "charact.attention.pipeline.bind_chip)")

    def sample(self, ideal: Any, rng: Any = None) -> Any:
        """As :meth:`CodeErrorTable.sample` (unstructured models only)."""
        if self.static is not None:
            raise self._unbound()
        return self.table.sample(ideal, rng)

    def sample_levels_(self, levels: Any, rng: Any = None) -> Any:
        """As :meth:`CodeErrorTable.sample_levels_` (unstructured models only)."""
        if self.static is not None:
            raise self._unbound()
        return self.table.sample_levels_(levels, rng)
