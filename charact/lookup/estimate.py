"""From paired (ideal code, converted code) samples to a smoothed probability table and
a per-code Gaussian fit with its goodness of fit.

Smoothing (documented in ``models/README.md``): for every ideal code ``i`` a prior
is built as a discretized Gaussian N(i + mu_i, s_i^2) on the codes 0..n-1, where
the mass beyond either end is folded onto code 0 / n-1 (the ADC saturates).
``mu_i`` and ``s_i^2`` are the count-weighted means of the per-code error mean
and variance over the ideal codes within +-2 of ``i`` (kernel weights 1, 1/2,
1/4), ``s_i`` floored at :data:`SIGMA_FLOOR`. The table row is then
``(counts_i + smoothing * prior_i) / (n_i + smoothing)``: ``smoothing`` acts as
a number of pseudo-samples, so it matters only where samples are thin. Ideal
codes with no sample in the +-2 window get mu/sigma linearly interpolated over the
observed codes (constant beyond the ends). Every ideal code without samples of its
own is flagged ``interpolated``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from charact.errors import UserError

SIGMA_FLOOR = 0.25  # LSB; keeps a perfect-looking code from becoming a point mass
NEIGHBOUR_WEIGHTS = (1.0, 0.5, 0.25)  # kernel over |i - j| = 0, 1, 2
PROB_EPS = 1e-12  # probabilities below this are stored as exact zeros


def count_matrix(ideal_codes: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """``counts[i, j]`` = number of samples with ideal code i converted to code j."""
    ideal = np.asarray(ideal_codes)
    out = np.asarray(codes)
    if ideal.shape != out.shape:
        raise UserError(f"ideal codes {ideal.shape} and converted codes {out.shape} differ in "
                        "shape")
    ideal = ideal.ravel()
    out = out.ravel()
    for name, arr in (("ideal", ideal), ("converted", out)):
        if arr.size and arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise UserError(f"{name} codes must be finite integers")
        elif arr.size and arr.dtype.kind not in "iu":
            raise UserError(f"{name} codes must be integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= n_codes):
            raise UserError(f"{name} codes must lie in 0..{n_codes - 1}, found "
                            f"{int(arr.min())}..{int(arr.max())}")
    flat = ideal.astype(np.int64) * n_codes + out.astype(np.int64)
    return np.bincount(flat, minlength=n_codes * n_codes).reshape(n_codes, n_codes)


def discretized_gaussian(center: np.ndarray, sigma: np.ndarray, n_codes: int) -> np.ndarray:
    """Rows P(code = k) for N(center, sigma^2) rounded to codes, saturating at the ends."""
    center = np.asarray(center, dtype=np.float64)[:, None]
    sigma = np.maximum(np.asarray(sigma, dtype=np.float64), 1e-9)[:, None]
    edges = np.arange(n_codes + 1, dtype=np.float64)[None, :] - 0.5
    cdf = ndtr((edges - center) / sigma)
    cdf[:, 0] = 0.0
    cdf[:, -1] = 1.0
    return np.diff(cdf, axis=1)


def gaussian_fit(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per ideal code: count, mean error, sigma, skewness, and the fit quality of the
    discretized Gaussian (KS distance between the CDFs over codes, mean log-likelihood
    per sample). NaN where a code has too few samples."""
    counts = np.asarray(counts, dtype=np.float64)
    n_codes = counts.shape[0]
    n = counts.sum(axis=1)
    err = np.arange(n_codes)[None, :] - np.arange(n_codes)[:, None]  # out - ideal
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = (counts * err).sum(axis=1) / n
        dev = err - mu[:, None]
        m2 = (counts * dev**2).sum(axis=1)
        sigma = np.sqrt(m2 / (n - 1))
        sigma[n < 2] = np.nan
        pop_sd = np.sqrt(m2 / n)
        skew = (counts * dev**3).sum(axis=1) / n / pop_sd**3
        skew[(n < 3) | ~(pop_sd > 0)] = np.nan
        model = discretized_gaussian(np.arange(n_codes) + np.nan_to_num(mu),
                                     np.maximum(np.nan_to_num(sigma), SIGMA_FLOOR), n_codes)
        emp_cdf = np.cumsum(counts, axis=1) / n[:, None]
        ks = np.abs(emp_cdf - np.cumsum(model, axis=1)).max(axis=1)
        loglik = (counts * np.log(np.maximum(model, 1e-300))).sum(axis=1) / n
    ks[n < 1] = np.nan
    loglik[n < 1] = np.nan
    return {"count": n.astype(np.int64), "mu": mu, "sigma": sigma, "skew": skew, "ks": ks,
            "loglik": loglik}


def smoothed_table(counts: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """``(prob, interpolated)``: the smoothed P(out | ideal) table (see module doc) and the
    flags of ideal codes whose distribution was interpolated from other codes."""
    if not smoothing >= 0:
        raise UserError(f"smoothing must be >= 0, got {smoothing}")
    counts = np.asarray(counts, dtype=np.float64)
    n_codes = counts.shape[0]
    fit = gaussian_fit(counts)
    n = counts.sum(axis=1)
    if not n.any():
        raise UserError("no samples: cannot build an error table")
    mu = np.nan_to_num(fit["mu"])
    var = np.nan_to_num(fit["sigma"] ** 2)
    has_var = n >= 2
    prior_mu = np.full(n_codes, np.nan)
    prior_var = np.full(n_codes, np.nan)
    for i in range(n_codes):
        w_mu = 0.0
        s_mu = 0.0
        w_var = 0.0
        s_var = 0.0
        for d, k in enumerate(NEIGHBOUR_WEIGHTS):
            for j in {i - d, i + d}:
                if 0 <= j < n_codes and n[j] > 0:
                    w = k * n[j]
                    w_mu += w
                    s_mu += w * mu[j]
                    if has_var[j]:
                        w_var += w
                        s_var += w * var[j]
        if w_mu > 0:
            prior_mu[i] = s_mu / w_mu
        if w_var > 0:
            prior_var[i] = s_var / w_var
    idx = np.arange(n_codes)
    seen = ~np.isnan(prior_mu)
    prior_mu = np.interp(idx, idx[seen], prior_mu[seen])
    seen_var = ~np.isnan(prior_var)
    if seen_var.any():
        prior_var = np.interp(idx, idx[seen_var], prior_var[seen_var])
    else:  # a single sample per code everywhere: nothing says how wide; use the floor
        prior_var = np.zeros(n_codes)
    prior = discretized_gaussian(idx + prior_mu, np.maximum(np.sqrt(prior_var), SIGMA_FLOOR),
                                 n_codes)
    denom = n + smoothing
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = np.where(denom[:, None] > 0, (counts + smoothing * prior) / denom[:, None], prior)
    prob[n == 0] = prior[n == 0]
    prob[prob < PROB_EPS] = 0.0
    prob /= prob.sum(axis=1, keepdims=True)
    # every never-observed code is flagged, whether its neighbours or the
    # interpolation over all observed codes gave its distribution
    return prob, n == 0
