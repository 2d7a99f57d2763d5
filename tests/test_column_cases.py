"""Column sweeps side by side: per-case spread with its interval, and the paired change
between two cases on the same dies and patterns."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from charact.column.cases import (
    case_stats,
    paired_change,
    sigma_cluster_interval,
    sigma_interval,
)


def _table(errors: np.ndarray, die: np.ndarray, col: np.ndarray, patterns: list[str],
           corner: str = "NOM") -> pd.DataFrame:
    n = errors.size
    ideal = np.full(n, 16)
    return pd.DataFrame({"status": "ok", "corner": corner, "vdd": 1.0, "temp": 27.0,
                         "seed": 5, "die": die, "deck": 0, "col": col,
                         "code_ideal": ideal, "code": ideal + errors, "pattern": patterns})


def test_sigma_interval_covers_the_true_spread_at_its_level():
    rng = np.random.default_rng(0)
    hits = sum(lo <= 2.0 <= hi for _, lo, hi in
               (sigma_interval(rng.normal(0, 2.0, 12)) for _ in range(2000)))
    assert 0.93 <= hits / 2000 <= 0.97
    assert all(np.isnan(v) for v in sigma_interval(np.array([1.0])))


def test_the_column_interval_holds_where_columns_share_an_offset():
    """30 columns x 8 conversions, each column with its own offset (sigma 1.5) plus
    per-conversion noise (1.0): the chi-square interval (independent conversions) covers
    the true spread far too rarely, the interval over columns near its level."""
    rng = np.random.default_rng(1)
    true = np.sqrt(1.5 ** 2 + 1.0 ** 2)
    cols = np.repeat(np.arange(30), 8)
    chi = clu = 0
    reps = 300
    for _ in range(reps):
        e = rng.normal(0, 1.5, 30)[cols] + rng.normal(0, 1.0, cols.size)
        _, lo, hi = sigma_interval(e)
        chi += lo <= true <= hi
        c_lo, c_hi = sigma_cluster_interval(e, cols)
        clu += c_lo <= true <= c_hi
    assert chi / reps < 0.75
    assert 0.88 <= clu / reps <= 0.99
    e = rng.normal(0, 1, 16)
    assert all(np.isnan(v) for v in sigma_cluster_interval(e, np.zeros(16)))  # one column
    lo, hi = sigma_cluster_interval(e, np.arange(16))  # one conversion per column
    assert lo < e.std(ddof=1) < hi


def test_case_stats_and_paired_change():
    die = np.repeat([0, 1], 8)
    col = np.tile(np.arange(8), 2)
    pats = [f"p{i}" for i in range(16)]
    e_u = np.array([5, 2, -10, -6, 2, 2, 2, -1, 1, 6, 0, 1, 2, 0, 2, 4])
    e_t = np.array([0, 2, 0, -4, 1, 1, 0, 1, 1, 3, -1, 0, -1, 0, -2, 0])
    u, t = _table(e_u, die, col, pats), _table(e_t, die, col, pats)
    s = case_stats(t).iloc[0]
    assert s["conversions"] == 16 and s["dies"] == 2
    assert s["sigma"] == pytest.approx(e_t.std(ddof=1))
    assert s["sigma_lo"] < s["sigma"] < s["sigma_hi"]
    assert s["columns"] == 16 and s["sigma_col_lo"] < s["sigma"] < s["sigma_col_hi"]
    assert s["mean_abs"] == pytest.approx(np.abs(e_t).mean())
    pc = paired_change(u, t).iloc[0]
    assert pc["pairs"] == 16 and pc["same_code"] == int((e_u == e_t).sum())
    assert pc["d_abs"] == pytest.approx((np.abs(e_t) - np.abs(e_u)).mean())
    assert pc["p_wilcoxon"] < 0.05
    # another pattern is another conversion: not paired
    t2 = t.copy()
    t2.loc[0, "pattern"] = "other"
    assert paired_change(u, t2).iloc[0]["pairs"] == 15
    # no change at all: p = 1, not a failed test
    assert paired_change(u, u).iloc[0]["p_wilcoxon"] == 1.0


@pytest.mark.parametrize("args", [["x"], ["a=results/none"], ["a=.", "--pair", "a:b"]])
def test_bad_cases_end_in_one_line_and_exit_2(args):
    r = subprocess.run([sys.executable, "-m", "charact.cli", "column-cases", *args],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_sweep_without_its_table_is_refused(tmp_path):
    (tmp_path / "jobs").mkdir()
    r = subprocess.run([sys.executable, "-m", "charact.cli", "column-cases",
                        f"a={tmp_path}"], capture_output=True, text=True)
    assert r.returncode == 2 and "has not finished" in r.stderr
