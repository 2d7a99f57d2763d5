"""Fitting the structured code-error model of one PVT point from per-column conversions.

Model (see :mod:`charact.lookup.structured`): conversion ``i`` of column ``j`` with ideal
code ``c`` reads ``floor(c + e_j(c) + u) + r``, ``e_j(c) = b_j + g_j (c - center)``,
``u ~ U[0, 1)``, ``r`` an integer drawn per ideal code.

Static part, a random-effects model fitted by the method of moments:

1. per column, least squares of ``d = code - code_ideal`` on ``[1, c - center]`` gives
   ``beta_j = (b_j, g_j)`` and its sampling covariance ``V_j = s^2 (X_j' X_j)^-1``, with
   ``s^2`` the residual variance pooled over the point's columns (each column alone has
   too few degrees of freedom for its own);
2. mean = the average of the ``beta_j``; covariance = the sample covariance of the
   ``beta_j`` minus the average ``V_j`` (the spread the columns' own estimation noise
   adds), clipped to positive semi-definite.

Standard errors: of the means, ``sqrt(S / J)``; of the covariance entries, the spread of
the per-column terms ``t_j = J/(J-1) (beta_j - mean)(beta_j - mean)' - V_j`` whose average
the estimate is (``std(t_j) / sqrt(J)``, no normality assumed); of a sigma, by the delta
method ``SE(var) / (2 sigma)``, or ``sqrt(SE(var))`` where the sigma is 0.

Per-conversion part: given the fitted ``e_i`` of each conversion, ``d_i - floor(e_i)`` is
``r_i`` plus a Bernoulli(``frac(e_i)``) step from ``u``; an EM deconvolution (the step's
probabilities are known per conversion) gives ``P(r | c)`` per ideal code without counting
the re-quantization twice. Its fractional counts are smoothed like the pooled table's.

Only with mismatch: a point whose rows are all nominal devices (``die == -1``) has
identical columns, so its covariance is exactly zero and the mean is one pooled line (a
common offset and gain error may still exist). At a point with both, the nominal rows are
left out of the static fit (they are counted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from charact.errors import UserError
from charact.lookup import estimate
from charact.lookup.error_model import CodeErrorTable
from charact.lookup.structured import StaticPart, mid_scale

MIN_CONVERSIONS = 3  # per column: two parameters and at least one degree of freedom
MIN_COLUMNS = 2  # a spread over columns needs two of them
EM_MAX_ITER = 500
EM_TOL = 1e-10


def _sums(column: np.ndarray, x: np.ndarray, d: np.ndarray, n_cols: int) -> dict:
    def s(w: np.ndarray | None) -> np.ndarray:
        return np.bincount(column, weights=w, minlength=n_cols)
    return {"n": s(None), "sx": s(x), "sxx": s(x * x), "sd": s(d), "sxd": s(x * d),
            "sdd": s(d * d)}


def _refuse(label: str, why: str) -> UserError:
    return UserError(f"{label}: cannot fit the per-column static part: {why}; sweep more "
                     "conversions per column or fit the pooled table without it "
                     "(charact fit --unstructured)")


def fit_structure(ideal: np.ndarray, out: np.ndarray, column: np.ndarray, nominal_only: bool,
                  n_codes: int, smoothing: float, label: str
                  ) -> tuple[StaticPart, CodeErrorTable]:
    """The static part and the per-conversion table of one PVT point.

    ``ideal``/``out``: integer codes per conversion (converted codes already clipped to
    0..n_codes-1); ``column``: an integer id of the physical column of each conversion;
    ``nominal_only``: every column has nominal devices. A UserError (one line, naming
    ``label``) when the data cannot separate the columns' offsets and gains.
    """
    ideal = np.asarray(ideal, dtype=np.int64)
    out = np.asarray(out, dtype=np.int64)
    _, column = np.unique(np.asarray(column), return_inverse=True)
    n_cols = int(column.max()) + 1 if column.size else 0
    center = mid_scale(n_codes)
    x = ideal - center
    d = (out - ideal).astype(np.float64)
    if nominal_only:
        # identical devices: one line through every conversion, no spread by construction
        if d.size < MIN_CONVERSIONS or np.unique(ideal).size < 2:
            raise _refuse(label, f"{d.size} nominal conversion(s) over "
                          f"{np.unique(ideal).size} ideal code(s) (need >= {MIN_CONVERSIONS} "
                          "over >= 2 codes)")
        st = _sums(np.zeros(d.size, dtype=np.int64), x, d, 1)
    else:
        if n_cols < MIN_COLUMNS:
            raise _refuse(label, f"{n_cols} column(s) with mismatch (need >= {MIN_COLUMNS})")
        st = _sums(column, x, d, n_cols)
        short = st["n"] < MIN_CONVERSIONS
        if short.any():
            raise _refuse(label, f"{int(short.sum())} of {n_cols} columns have fewer than "
                          f"{MIN_CONVERSIONS} conversions (fewest: {int(st['n'].min())})")
    n, sx, sxx = st["n"], st["sx"], st["sxx"]
    det = n * sxx - sx * sx
    flat = det <= 1e-9 * np.maximum(n * sxx, 1.0)
    if flat.any():
        raise _refuse(label, f"{int(flat.sum())} column(s) converted a single ideal code "
                      "only (offset and gain error need >= 2 codes per column)")
    b = (sxx * st["sd"] - sx * st["sxd"]) / det
    g = (n * st["sxd"] - sx * st["sd"]) / det
    rss = np.maximum(st["sdd"] - b * st["sd"] - g * st["sxd"], 0.0)
    dof = float((n - 2).sum())
    s2 = float(rss.sum() / dof) if dof > 0 else 0.0
    # (X'X)^-1 per column, times the pooled s^2
    inv = np.stack([np.stack([sxx, -sx], -1), np.stack([-sx, n], -1)], -2) / det[:, None, None]
    v = s2 * inv
    beta = np.stack([b, g], axis=-1)
    n_conv = int(d.size)
    if nominal_only:
        mean = beta[0]
        cov = np.zeros((2, 2))
        mean_se = np.sqrt(np.diag(v[0]))
        var_se = np.zeros((2, 2))
        clipped = False
        n_columns = int(n_cols)
    else:
        j = beta.shape[0]
        mean = beta.mean(axis=0)
        dev = beta - mean
        terms = j / (j - 1) * dev[:, :, None] * dev[:, None, :] - v
        raw = terms.mean(axis=0)
        var_se = terms.std(axis=0, ddof=1) / np.sqrt(j)
        s_beta = dev.T @ dev / (j - 1)
        mean_se = np.sqrt(np.diag(s_beta) / j)
        lam, vec = np.linalg.eigh((raw + raw.T) / 2)
        clipped = bool(lam.min() < 0)
        cov = (vec * np.clip(lam, 0.0, None)) @ vec.T
        n_columns = j
    col_idx = np.zeros(d.size, dtype=np.int64) if nominal_only else column
    e_hat = b[col_idx] + g[col_idx] * x
    counts, iters = residual_counts(ideal, d, e_hat, n_codes)
    prob, interpolated = estimate.smoothed_table(counts, smoothing)
    fit = estimate.gaussian_fit(counts)
    per_code = np.bincount(ideal, minlength=n_codes)
    fit.pop("count")
    residual = CodeErrorTable(prob, count=per_code, interpolated=interpolated, fit=fit)
    stats = _stats(mean, cov, raw if not nominal_only else cov, mean_se, var_se, n_columns,
                   n_conv, s2, dof, nominal_only, clipped, iters)
    return StaticPart(mean, cov, center, stats), residual


def _sigma_se(var: float, var_se: float) -> float:
    """SE of sqrt(var) by the delta method; at var 0 (clipped) sqrt(SE(var)), a bound."""
    if var > 0:
        return var_se / (2 * np.sqrt(var))
    return float(np.sqrt(var_se))


def _stats(mean: np.ndarray, cov: np.ndarray, raw: np.ndarray, mean_se: np.ndarray,
           var_se: np.ndarray, n_columns: int, n_conv: int, s2: float, dof: float,
           nominal_only: bool, clipped: bool, iters: int) -> dict[str, Any]:
    return {
        "n_columns": int(n_columns), "conversions": n_conv,
        "mean_b": float(mean[0]), "mean_b_se": float(mean_se[0]),
        "mean_g": float(mean[1]), "mean_g_se": float(mean_se[1]),
        "sigma_b": float(np.sqrt(cov[0, 0])),
        "sigma_b_se": float(_sigma_se(cov[0, 0], var_se[0, 0])),
        "sigma_g": float(np.sqrt(cov[1, 1])),
        "sigma_g_se": float(_sigma_se(cov[1, 1], var_se[1, 1])),
        "cov_bg": float(cov[0, 1]), "cov_bg_se": float(var_se[0, 1]),
        "var_b_raw": float(raw[0, 0]), "var_g_raw": float(raw[1, 1]),
        # per-conversion scatter about the column's own line (LSB), re-quantization included
        "residual_sigma": float(np.sqrt(s2)),
        "residual_sigma_se": float(np.sqrt(s2) / np.sqrt(2 * dof)) if dof > 0 else None,
        "residual_dof": int(dof),
        "nominal_only": bool(nominal_only), "psd_clipped": clipped, "em_iterations": iters,
    }


def residual_counts(ideal: np.ndarray, d: np.ndarray, e_hat: np.ndarray, n_codes: int
                    ) -> tuple[np.ndarray, int]:
    """Expected counts ``N[c, c + r]`` of the integer per-conversion error ``r`` (clipped
    to the codes), deconvolved from the re-quantization of the static part, and the EM
    iterations it took.

    ``d_i - floor(e_i)`` is ``r_i`` (w.p. ``1 - frac(e_i)``) or ``r_i + 1`` (w.p.
    ``frac(e_i)``); EM finds the ``P(r | c)`` that makes the data most likely.
    """
    m = np.floor(e_hat)
    f = e_hat - m
    r0 = np.round(d - m).astype(np.int64)
    lo = int(r0.min()) - 1
    width = int(r0.max()) - lo + 1
    i0 = ideal * width + (r0 - lo)
    i1 = i0 - 1
    size = n_codes * width
    n_c = np.bincount(ideal, minlength=n_codes).astype(np.float64)
    denom = np.where(n_c > 0, n_c, 1.0)[:, None]

    def m_step(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
        acc = np.bincount(i0, w0, size) + np.bincount(i1, w1, size)
        return (acc.reshape(n_codes, width) / denom).ravel()

    pi = m_step(1.0 - f, f)  # start: each conversion split by its own step probabilities
    iters = 0
    for iters in range(1, EM_MAX_ITER + 1):  # noqa: B007 (reported)
        a = (1.0 - f) * pi[i0]
        b = f * pi[i1]
        s = a + b
        s = np.where(s > 0, s, 1.0)
        new = m_step(a / s, b / s)
        done = np.abs(new - pi).max() < EM_TOL
        pi = new
        if done:
            break
    pi = pi.reshape(n_codes, width) * n_c[:, None]
    counts = np.zeros((n_codes, n_codes))
    cols = np.clip(np.arange(n_codes)[:, None] + lo + np.arange(width)[None, :], 0, n_codes - 1)
    np.add.at(counts, (np.repeat(np.arange(n_codes), width), cols.ravel()), pi.ravel())
    return counts, iters
