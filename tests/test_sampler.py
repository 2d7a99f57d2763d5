"""The CPU sampler's split of a table into direct cells plus a remainder: exact, drawn with
the table's frequencies code by code, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from charact.lookup import CodeErrorTable, error_model_from_samples
from charact.lookup.error_model import _bernoulli_positions, _cell_tables

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

N_CODES = 32
PER_CODE = 1_000_000


def _table(sigma: float, seed: int = 0) -> CodeErrorTable:
    """A smoothed table fitted to ideal + round(N(0.2, sigma)) samples, clipped."""
    rng = np.random.default_rng(seed)
    ideal = rng.integers(0, N_CODES, 300_000)
    noisy = np.clip(ideal + np.rint(rng.normal(0.2, sigma, ideal.size)).astype(int), 0,
                    N_CODES - 1)
    return error_model_from_samples(ideal, noisy, N_CODES).table()


@pytest.fixture(scope="module")
def narrow() -> CodeErrorTable:
    return _table(0.8)


@pytest.fixture(scope="module")
def wide() -> CodeErrorTable:
    return _table(4.0, seed=1)


def _skewed() -> CodeErrorTable:
    """Odd size, asymmetric, and a probability far below one cell."""
    prob = np.zeros((5, 5))
    prob[:, 0], prob[:, 1], prob[:, 3], prob[:, 4] = 0.5, 0.3 - 3e-7, 3e-7, 0.2
    return CodeErrorTable(prob)


@pytest.mark.parametrize("bits", [8, 10])
def test_cells_plus_remainder_are_the_table_exactly(narrow, wide, bits):
    for table in (narrow, wide, _skewed()):
        split = _cell_tables(table.prob, bits)
        m = 1 << bits
        n = table.n_codes
        count = np.stack([np.bincount(split.cells[i * m:(i + 1) * m], minlength=n)
                          for i in range(n)])
        assert split.cells.shape == (n * m,) and split.bits == bits
        assert 0.0 <= split.q <= n / m
        assert np.all(split.remainder >= 0)
        np.testing.assert_allclose(split.remainder.sum(axis=1), 1.0, atol=1e-12)
        implied = (1.0 - split.q) * count / m + split.q * split.remainder
        np.testing.assert_allclose(implied, table.prob, rtol=0, atol=1e-13)


def test_a_dyadic_table_needs_no_remainder():
    prob = np.full((4, 4), 0.25)
    assert _cell_tables(prob, 8).q == 0.0
    table = CodeErrorTable(prob)
    out = table.sample(torch.zeros(10_000, dtype=torch.int64), torch.Generator().manual_seed(0))
    assert set(torch.unique(out).tolist()) == {0, 1, 2, 3}


def _counts(out: torch.Tensor, ideal: torch.Tensor, code: int, n: int) -> np.ndarray:
    return np.bincount(out[ideal == code].long().numpy(), minlength=n)


def _fit_p(counts: np.ndarray, prob: np.ndarray) -> float:
    """Chi-square p-value of ``counts`` against ``prob``, bins pooled so that each
    expects at least 20 (the pooled tail keeps its mass); 0 when a bin of probability 0
    was drawn, 1 when everything pools into one bin."""
    if np.any(counts[prob == 0]):
        return 0.0
    expected = prob * counts.sum()
    order = np.argsort(expected)
    obs, exp, acc_o, acc_e = [], [], 0.0, 0.0
    for j in order:
        acc_o += counts[j]
        acc_e += expected[j]
        if acc_e >= 20:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0:
        obs[-1] += acc_o
        exp[-1] += acc_e
    if len(obs) < 2:
        return 1.0
    return float(stats.chisquare(np.array(obs), np.array(exp)).pvalue)


@pytest.mark.parametrize("which", ["narrow", "wide"])
def test_frequencies_match_the_table_code_by_code(which, request):
    """10^6 draws per code, through the float-level hot path; the same statistic refuses
    the table shifted by one code, and the table of the neighbouring code."""
    table = request.getfixturevalue(which)
    codes = (0, 5, 16, 31)
    ideal = torch.tensor(codes, dtype=torch.float32).repeat_interleave(PER_CODE)
    ideal = ideal[torch.randperm(ideal.numel(), generator=torch.Generator().manual_seed(2))]
    out = table.sample_levels_(ideal.clone(), torch.Generator().manual_seed(3))
    for c in codes:
        counts = _counts(out, ideal, c, N_CODES)
        assert counts.sum() == PER_CODE
        assert _fit_p(counts, table.prob[c]) > 1e-4, c
        # every bin, also the tails, within 6 binomial sigma (+1 for tiny expectations)
        p = table.prob[c]
        assert np.all(np.abs(counts - PER_CODE * p)
                      <= 6 * np.sqrt(PER_CODE * p * (1 - p)) + 1), c
        # the check can fail: an off-by-one table is refused
        assert _fit_p(counts, np.roll(table.prob[c], 1)) < 1e-12
        other = table.prob[c + 1 if c < 31 else c - 1]
        assert _fit_p(counts, other) < 1e-12


def test_the_remainder_alone_draws_the_remainder_law(wide):
    """Every element through the remainder (q forced to 1 in the positions): the draws follow
    the remainder table, so that path is checked on its own and not only diluted by q."""
    table = wide
    split = table._cells()
    assert split is not None and split.q > 0
    remainder = table._remainder
    ideal = torch.full((PER_CODE,), 9.0)
    out = remainder.sample_levels_(ideal.clone(), torch.Generator().manual_seed(4))
    assert _fit_p(_counts(out, ideal, 9, N_CODES), split.remainder[9]) > 1e-4


def test_the_wider_table_takes_ten_bits_and_the_narrow_one_a_byte(narrow, wide):
    assert narrow._cells().bits == 8
    assert wide._cells().bits == 10
    assert wide._cells().q < _cell_tables(wide.prob, 8).q - 0.02


def test_draws_are_reproducible_and_seed_dependent(narrow):
    ideal = torch.randint(0, N_CODES, (3, 4, 50, 70), generator=torch.Generator().manual_seed(0))
    levels = ideal.to(torch.float32)
    a = narrow.sample_levels_(levels.clone(), torch.Generator().manual_seed(7))
    b = narrow.sample_levels_(levels.clone(), torch.Generator().manual_seed(7))
    c = narrow.sample_levels_(levels.clone(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the integer path draws the same codes for the same generator state
    ints = narrow.sample(ideal.to(torch.int32), torch.Generator().manual_seed(7))
    assert ints.dtype == torch.int32 and torch.equal(ints.to(torch.float32), a)
    # torch's global generator when none is given
    torch.manual_seed(5)
    d = narrow.sample_levels_(levels.clone())
    torch.manual_seed(5)
    assert torch.equal(d, narrow.sample_levels_(levels.clone()))
    # the ideal tensor of sample() is left alone
    assert torch.equal(ideal.to(torch.float32), levels)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_level_dtypes(narrow, dtype):
    levels = torch.randint(0, N_CODES, (20_000,), generator=torch.Generator().manual_seed(1))
    ref = narrow.sample_levels_(levels.to(torch.float32), torch.Generator().manual_seed(2))
    got = narrow.sample_levels_(levels.to(getattr(torch, dtype)),
                                torch.Generator().manual_seed(2))
    assert got.dtype == getattr(torch, dtype)
    assert torch.equal(got.to(torch.float32), ref)


def test_bernoulli_positions_have_the_asked_rate():
    gen = np.random.Generator(np.random.SFC64(0))
    n, q = 2_000_000, 0.013
    pos = _bernoulli_positions(gen, n, q)
    assert np.all(np.diff(pos) > 0) and pos[0] >= 0 and pos[-1] < n
    assert abs(pos.size - n * q) < 6 * np.sqrt(n * q * (1 - q))
    # positions are uniform along the tensor: the same count in each half, within 6 sigma
    half = np.searchsorted(pos, n // 2)
    assert abs(2 * half - pos.size) < 6 * np.sqrt(pos.size)
    # gaps are geometric: P(gap == 1) = q
    ones = np.mean(np.diff(pos) == 1)
    assert abs(ones - q) < 6 * np.sqrt(q / pos.size)
    assert _bernoulli_positions(gen, n, 0.0).size == 0
    assert _bernoulli_positions(gen, 0, q).size == 0
    small = _bernoulli_positions(gen, 5, 0.9)
    assert np.all(small < 5)
