"""The CPU samplers' exact paths, each forced on its own: the remainder rows read inside the
one gather and the inverse-CDF draws of the remainder's remainder (pooled tables), and the
structured chip's one-gather word (its 16-bit and 32-bit forms, the tied conversions, the
remainder rows shifted by the static error). Each draws about 10^5 to 10^6 conversions per
case and compares them with the exact law by a chi-square test and a per-bin binomial bound;
the same statistic refuses a law that is off by what a missing step would change."""

from __future__ import annotations

import numpy as np
import pytest
from test_sampler import _fit_p, _table

from charact.lookup import CodeErrorTable
from charact.lookup.error_model import _bernoulli_positions, _cdf, _cell_tables, cdf_codes
from charact.lookup.structured import ChipColumnErrors, StaticPart

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

N_CODES = 32
CENTER = 15.5


@pytest.fixture(scope="module")
def narrow() -> CodeErrorTable:
    return _table(0.8)  # a byte per cell


@pytest.fixture(scope="module")
def wide() -> CodeErrorTable:
    return _table(4.0, seed=1)  # 10 bits per cell


def _check(counts: np.ndarray, prob: np.ndarray, where: object) -> None:
    total = counts.sum()
    assert _fit_p(counts, prob) > 1e-4, where
    assert np.all(np.abs(counts - total * prob)
                  <= 6 * np.sqrt(total * prob * (1 - prob)) + 1), where


def _counts(out: torch.Tensor, ideal: torch.Tensor, code: int) -> np.ndarray:
    return np.bincount(out[ideal == code].long().numpy(), minlength=N_CODES)


def _shuffled_codes(codes: tuple[int, ...], per_code: int, seed: int) -> torch.Tensor:
    ideal = torch.tensor(codes, dtype=torch.float32).repeat_interleave(per_code)
    return ideal[torch.randperm(ideal.numel(), generator=torch.Generator().manual_seed(seed))]


# --- pooled tables -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["narrow", "wide"])
@pytest.mark.parametrize("second", ["cells", "cdf"])
def test_conversions_sent_to_the_remainder_draw_its_law(which, second, request):
    """Every conversion forced into the remainder (q = 1): read in the remainder's own cells
    (its remainder by inverse CDF), or all by inverse CDF (q2 = 1); either way the draws
    follow the remainder law, which the table's own law would not pass."""
    table = request.getfixturevalue(which)
    plan = table.cpu_plan()
    split = table._cells()
    assert plan is not None and split is not None and plan.q > 0
    assert plan.bits == split.bits and plan.cells.shape == (2 * N_CODES, 1 << plan.bits)
    codes = (3, 16, 30)
    ideal = _shuffled_codes(codes, 300_000, seed=5)
    forced = plan._replace(q=1.0) if second == "cells" else plan._replace(
        q=1.0, q2=1.0, rest_cdf=_cdf(split.remainder))
    copy = CodeErrorTable(table.prob)
    copy._plan = forced
    out = copy.sample_levels_(ideal.clone(), torch.Generator().manual_seed(6))
    for c in codes:
        counts = _counts(out, ideal, c)
        _check(counts, split.remainder[c], (which, second, c))
        assert _fit_p(counts, table.prob[c]) < 1e-9, (which, second, c)


def test_the_remainder_split_shares_the_cell_bits(narrow, wide):
    for table in (narrow, wide):
        plan = table.cpu_plan()
        split = table._cells()
        inner = _cell_tables(split.remainder, split.bits)
        assert plan.q2 == inner.q and 0 < plan.q2 < 0.25
        np.testing.assert_array_equal(plan.cells[N_CODES:].reshape(-1), inner.cells)
        np.testing.assert_allclose(plan.rest_cdf[:, -1], 1.0)


def test_a_dyadic_table_has_no_remainder_rows_to_read():
    table = CodeErrorTable(np.full((4, 4), 0.25))
    plan = table.cpu_plan()
    assert plan.q == 0.0 and plan.rest_cdf is None
    out = table.sample_levels_(torch.zeros(40_000), torch.Generator().manual_seed(0))
    assert np.all(np.abs(np.bincount(out.long().numpy(), minlength=4) - 10_000) < 600)


def test_inverse_cdf_draws_follow_the_rows_and_never_an_impossible_code():
    prob = np.zeros((3, 6))
    prob[0, [1, 3]] = 0.25, 0.75  # zeros inside and at both ends
    prob[1, 5] = 1.0
    prob[2] = [0.1, 0.0, 0.2, 0.3, 0.4, 0.0]
    cdf = _cdf(prob)
    assert np.all(cdf[:, -1] == 1.0) and cdf[0, 3] == 1.0 and cdf[2, 4] == 1.0
    gen = np.random.Generator(np.random.SFC64(1))
    for row in range(3):
        out = cdf_codes(cdf, np.full(200_000, row), gen)
        assert out.dtype == np.int32
        _check(np.bincount(out, minlength=6), prob[row], row)


def test_positions_of_a_short_run_are_drawn_one_uniform_each():
    gen = np.random.Generator(np.random.SFC64(2))
    q, n, runs = 0.05, 1500, 400
    hits = np.zeros(n)
    total = 0
    for _ in range(runs):
        pos = _bernoulli_positions(gen, n, q)
        assert np.all(np.diff(pos) > 0) and (pos.size == 0 or (pos[0] >= 0 and pos[-1] < n))
        hits[pos] += 1
        total += pos.size
    assert abs(total - runs * n * q) < 6 * np.sqrt(runs * n * q * (1 - q))
    # uniform along the run: the same count in each half, within 6 sigma
    assert abs(hits[: n // 2].sum() - hits[n // 2:].sum()) < 6 * np.sqrt(total)


# --- structured chips ----------------------------------------------------------------------

def _exact_law(resid: np.ndarray, code: int, e: float) -> np.ndarray:
    """P(out | ideal code, static error e) of clip(floor(c + e + u) + r), r ~ row ``code``
    of ``resid`` as P(c + r | c)."""
    fl = np.floor(e)
    frac = e - fl
    p = np.zeros(N_CODES)
    for o1 in range(N_CODES):
        for shift, w in ((fl, 1.0 - frac), (fl + 1, frac)):
            p[int(np.clip(o1 + shift, 0, N_CODES - 1))] += resid[code, o1] * w
    return p


# offsets: none, exactly one fraction unit (every tied conversion on the boundary), a half,
# nearly a whole LSB, negative ones, with gain errors; all within a few LSB
SMALL_B = np.array([[0.0, 1 / 256, 0.5, 0.999, -0.3, 0.2, -1.7, 1.25]])
SMALL_G = np.array([[0.0, 0.0, 0.0, 0.0, 0.02, -0.015, 0.01, 0.03]])
CODES = (0, 5, 20, 31)


def _chip(residual: CodeErrorTable, b: np.ndarray, g: np.ndarray) -> ChipColumnErrors:
    return ChipColumnErrors(residual, StaticPart(np.zeros(2), np.zeros((2, 2)), CENTER),
                            fixed=(b, g))


def _chip_draws(chip: ChipColumnErrors, per_code: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    rows = per_code * len(CODES)
    pick = torch.randint(0, len(CODES), (rows, chip._fixed[0].shape[1]),
                         generator=torch.Generator().manual_seed(seed))
    codes = torch.tensor(CODES)[pick].float().contiguous()
    return codes, chip.sample_levels_(codes.clone(), torch.Generator().manual_seed(seed + 1))


def _check_chip(resid: np.ndarray, codes: torch.Tensor, out: torch.Tensor, b: np.ndarray,
                g: np.ndarray, cell_bits: int) -> None:
    """Per column and code: the exact law passes; a static error 0.25 LSB off is refused,
    and so is the law a missing tie step gives (the top cell_bits of u alone, i.e.
    P(carry) = (floor(2**cell_bits frac) + 1) / 2**cell_bits) where it differs enough."""
    m = 1 << cell_bits
    for j in range(b.shape[1]):
        for c in CODES:
            counts = np.bincount(out[:, j][codes[:, j] == c].long().numpy(),
                                 minlength=N_CODES)
            e = b[0, j] + g[0, j] * (c - CENTER)
            _check(counts, _exact_law(resid, c, e), (j, c))
            if 2 < c + e < N_CODES - 3:
                assert _fit_p(counts, _exact_law(resid, c, e + 0.25)) < 1e-6, (j, c)
                frac = e - np.floor(e)
                untied = np.floor(e) + (np.floor(m * frac) + 1) / m
                if untied - e > 0.02:
                    assert _fit_p(counts, _exact_law(resid, c, untied)) < 1e-6, (j, c)


@pytest.mark.parametrize("which", ["narrow", "wide"])
def test_chip_word_draws_the_exact_law(which, request):
    """The CPU word path, 16-bit (byte cells) and 32-bit (10-bit cells), per column and
    code: floor(c + e + u) plus the residual."""
    residual = request.getfixturevalue(which)
    chip = _chip(residual, SMALL_B, SMALL_G)
    plan = residual.cpu_plan()
    fast = chip._cpu_chip(1, SMALL_B.shape[1], plan, torch)
    assert fast is not None and fast.small == (plan.bits == 8)
    codes, out = _chip_draws(chip, 150_000, seed=7)
    assert out.dtype == torch.float32 and torch.equal(out, out.round())
    _check_chip(residual.prob, codes, out, SMALL_B, SMALL_G, plan.bits)


def test_chip_ties_are_drawn_exactly(narrow):
    """With 2-bit cells (a residual of -1, 0, 0, +1 in four cells, exact) one conversion in
    four is tied; the laws still match exactly, and the statistic refuses the untied law."""
    resid = np.zeros((N_CODES, N_CODES))
    cells = np.zeros((2 * N_CODES, 4), dtype=np.int32)
    for c in range(N_CODES):
        row = np.clip([c - 1, c, c, c + 1], 0, N_CODES - 1)
        cells[c] = row
        np.add.at(resid[c], row, 0.25)
    table = CodeErrorTable(resid)
    table._plan = narrow.cpu_plan()._replace(bits=2, q=0.0, q2=0.0, cells=cells,
                                              rest_cdf=None)
    chip = _chip(table, SMALL_B, SMALL_G)
    assert chip._cpu_chip(1, SMALL_B.shape[1], table.cpu_plan(), torch).small
    codes, out = _chip_draws(chip, 60_000, seed=11)
    _check_chip(resid, codes, out, SMALL_B, SMALL_G, 2)


def test_chip_remainder_rows_carry_the_static_shift(narrow):
    """Every conversion forced into the residual's remainder rows (q = 1): the draws are the
    remainder law, shifted by the column's static error."""
    copy = CodeErrorTable(narrow.prob)
    copy._plan = narrow.cpu_plan()._replace(q=1.0)
    chip = _chip(copy, SMALL_B, SMALL_G)
    codes, out = _chip_draws(chip, 100_000, seed=9)
    remainder = narrow._cells().remainder
    for j in range(SMALL_B.shape[1]):
        for c in CODES:
            counts = np.bincount(out[:, j][codes[:, j] == c].long().numpy(),
                                 minlength=N_CODES)
            e = SMALL_B[0, j] + SMALL_G[0, j] * (c - CENTER)
            _check(counts, _exact_law(remainder, c, e), (j, c))


def test_chip_codes_are_the_same_in_every_float_dtype(narrow):
    chip = _chip(narrow, SMALL_B, SMALL_G)
    codes = torch.tensor(CODES)[torch.randint(0, len(CODES), (3000, SMALL_B.shape[1]),
                                              generator=torch.Generator().manual_seed(3))]
    ref = chip.sample_levels_(codes.float(), torch.Generator().manual_seed(4))
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        got = chip.sample_levels_(codes.to(dtype), torch.Generator().manual_seed(4))
        assert got.dtype == dtype and torch.equal(got.float(), ref), dtype


def test_chip_heads_and_batches_use_their_own_columns(narrow):
    """(B, H, L, n) levels: every slab takes its head's columns (slab s is head s % H)."""
    heads, n = 3, 5
    b = np.linspace(-2.0, 2.0, heads * n).reshape(heads, n)
    chip = _chip(narrow, b, np.zeros((heads, n)))
    ideal = torch.full((4, heads, 4000, n), 16.0)
    out = chip.sample_levels_(ideal.clone(), torch.Generator().manual_seed(8))
    mean_shift = (out - ideal).mean(dim=(0, 2)).numpy()
    resid_mean = float(narrow.mean_error()[16])
    assert np.all(np.abs(mean_shift - (b + resid_mean)) < 0.03)


def test_static_errors_too_wide_for_the_word_take_the_general_path(narrow):
    b = np.array([[1e7, -1e7, 0.4]])
    chip = _chip(narrow, b, np.zeros_like(b))
    assert chip._cpu_chip(1, 3, narrow.cpu_plan(), torch) is None
    ideal = torch.full((2000, 3), 12.0)
    out = chip.sample_levels_(ideal.clone(), torch.Generator().manual_seed(0))
    assert torch.all(out[:, 0] == N_CODES - 1) and torch.all(out[:, 1] == 0)
    assert abs(float((out[:, 2] - ideal[:, 2]).mean()) - 0.4 - narrow.mean_error()[12]) < 0.1
