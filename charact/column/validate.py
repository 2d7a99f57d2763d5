"""Agreement of the composed column with full-column SPICE.

Both inputs are column sweep tables (``ima_column`` and ``ima_column_composed``: same
format); a sweep that records the other block (the two folders swapped, say) is
refused. Per operating point and ideal code, over conversions with status "ok", the code
error ``code - code_ideal`` of each side: count, mean, sigma, and the fraction more than
one LSB off; then the differences. A code *agrees* when the composed mean is within
``tol_mean`` LSB of the SPICE mean and the composed sigma within ``tol_sigma`` (relative)
of the SPICE sigma. Where it does not, the difference may still lie within the sampling
error of the two estimates (the SPICE side is usually thin: a few dies): the verdict
then says "within sampling error" (Welch's t-test of the means and the F-test of the
variances at 95 %), and only the remaining codes are called disagreements. Pooled
over all codes of a point, the same tests give the point's verdict.

**Paired** (:func:`paired_equivalence`): since the composed column computes die d of
seed s from the device scores of SPICE die d of seed s (``charact.column.composed.
keyed_die``) and converts the same patterns, the two tables join conversion for
conversion on (corner, vdd, temp, seed, die, deck, col). Per operating point, pooled over
the ideal codes: the rate of identical codes, the paired difference of the code errors
``d = e_composed - e_spice`` (mean, sd, n), and two equivalence tests (TOST, two one-sided
tests at alpha = 5 %), each with its p-value (equivalence shown when p < alpha) and the
smallest difference it could detect at 80 % power:

* mean error: ``|mean d| < 0.2 LSB``, a paired t-test with a cluster-robust standard
  error. Conversions of one column of one die share that column's SA and replica rows,
  so they are not independent; the clusters are (seed, die, col) and the degrees of
  freedom clusters - 1 (with one conversion per cluster, the plain paired t-test).
* sigma: ``0.9 < sigma_composed / sigma_spice < 1.1``, a Wald test of the log ratio whose
  standard error comes from a paired cluster bootstrap (clusters resampled with both
  sides of every pair, so the strong correlation of the two errors of a pair, which is
  what makes the paired test sharper than an F-test, and the clustering are kept).
  The Pitman-Morgan test of paired variances would also use the pairing, but assumes
  independent pairs.

The "smallest difference" (``mdd``) is the true difference a two-sided test at the same
alpha finds with 80 % power, ``(t_{1-alpha/2} + t_{0.8}) SE``; ``margin80`` is the
smallest equivalence margin the TOST would establish with 80 % power were the truth 0,
``(t_{1-alpha} + t_{0.9}) SE``: a margin below it cannot be shown with this n.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charact.column.errortable import PVT, REQUIRED
from charact.errors import UserError
from charact.tables import check_block, manifest_block, read_manifest, read_sweep

TOL_MEAN = 0.2  # LSB
TOL_SIGMA = 0.2  # relative
MARGIN_MEAN = 0.2  # LSB: the paired equivalence margin of the mean error
MARGIN_SIGMA = 0.10  # relative: of the sigma ratio
ALPHA = 0.05
POWER = 0.80
N_BOOT = 2000
#: A conversion pair: the same operating point, die, deck and column.
PAIR_KEYS = PVT + ["seed", "die", "deck", "col"]
CLUSTER = ["seed", "die", "col"]  # one column of one die: one SA, one set of replica rows


def _stats(e: np.ndarray) -> dict[str, float]:
    n = e.size
    return {"n": n, "mean": float(e.mean()) if n else math.nan,
            "sigma": float(e.std(ddof=1)) if n > 1 else math.nan,
            "frac_over_1lsb": float((np.abs(e) > 1).mean()) if n else math.nan}


def _verdict(s: dict[str, float], c: dict[str, float], tol_mean: float,
             tol_sigma: float) -> dict[str, Any]:
    from scipy import stats

    d_mean = c["mean"] - s["mean"]
    vs = s["sigma"] ** 2 / s["n"] if s["n"] > 1 else math.inf
    vc = c["sigma"] ** 2 / c["n"] if c["n"] > 1 else math.inf
    se_d = math.sqrt(vs + vc)
    if s["sigma"] == 0 and c["sigma"] == 0:
        ratio = 1.0
    else:
        ratio = c["sigma"] / s["sigma"] if s["sigma"] > 0 else math.inf
    mean_ok = abs(d_mean) <= tol_mean
    sigma_ok = math.isfinite(ratio) and abs(ratio - 1) <= tol_sigma
    # 95 % tests of "same distribution": Welch's t for the means, F for the variances
    if math.isfinite(se_d) and se_d > 0:
        df = (vs + vc) ** 2 / ((vs ** 2 / (s["n"] - 1)) + (vc ** 2 / (c["n"] - 1)))
        m_stat = abs(d_mean) <= stats.t.ppf(0.975, max(df, 1.0)) * se_d
    else:
        m_stat = abs(d_mean) == 0
    if s["n"] > 1 and c["n"] > 1 and s["sigma"] > 0 and c["sigma"] > 0:
        lo, hi = stats.f.ppf([0.025, 0.975], c["n"] - 1, s["n"] - 1)
        s_stat = bool(lo <= ratio ** 2 <= hi)
    else:  # a side without spread: only a small spread on the other side is compatible
        s_stat = max(s["sigma"], c["sigma"]) < 1.0 if math.isfinite(ratio) or \
            s["sigma"] == 0 else False
    if mean_ok and sigma_ok:
        verdict = "agrees"
    elif (mean_ok or m_stat) and (sigma_ok or s_stat):
        verdict = "within sampling error"
    else:
        verdict = "disagrees"
    return {"d_mean": d_mean, "se_d_mean": se_d, "sigma_ratio": ratio,
            "mean_ok": mean_ok, "sigma_ok": sigma_ok, "verdict": verdict}


def conversion_errors(df: pd.DataFrame) -> pd.DataFrame:
    """The "ok" rows of a column table with ``error`` = code - code_ideal (LSB) and the
    operating point rounded for grouping."""
    ok = df[df["status"] == "ok"].copy()
    ok["error"] = ok["code"].astype(float) - ok["code_ideal"].astype(float)
    for c in ("vdd", "temp"):
        ok[c] = ok[c].astype(float).round(9)
    return ok


def load_table(sweep: str | Path, block: str | None = None, finished: bool = False
               ) -> tuple[pd.DataFrame, Path, str]:
    """A column sweep's table, or, while the sweep is still running (no table yet),
    the rows of its finished jobs (``jobs/*.json``); the last item says which.
    ``block`` (``ima_column`` or ``ima_column_composed``) refuses a sweep of the other;
    ``finished`` refuses a sweep without its table."""
    d = Path(sweep)
    if finished and not ((d / "table.parquet").is_file() or d.suffix == ".parquet"):
        raise UserError(f"{sweep}: no sweep table (the sweep has not finished)")
    df, folder, source, _ = _load(sweep, block)
    return df, folder, source


def _load(sweep: str | Path, block: str | None
          ) -> tuple[pd.DataFrame, Path, str, dict[str, Any]]:
    """:func:`load_table` plus the sweep's manifest ({} when it has none yet)."""
    d = Path(sweep)
    what = f"{block} sweep table" if block else "column sweep table"
    if (d / "table.parquet").is_file() or d.suffix == ".parquet":
        st = read_sweep(d, REQUIRED, block=block or ("ima_column", "ima_column_composed"),
                        what=what)
        return st.table, st.folder, st.path.name, st.manifest
    # a running sweep: its manifest, if any, is from an earlier run of the same folder
    man = (read_manifest(d) if d.is_dir() else None) or {}
    check_block(manifest_block(man), block, d, what)
    jobs = sorted((d / "jobs").glob("*.json")) if d.is_dir() else []
    rows = []
    for f in jobs:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        rows += rec.get("rows", [rec.get("row", {})])
    if not rows:
        raise UserError(f"no sweep table nor finished jobs at {d}")
    df = pd.DataFrame(rows).sort_values(["job", "item"] if "item" in rows[0] else ["job"])
    return (df.reset_index(drop=True), d, f"{len(jobs)} finished jobs (sweep still running)",
            man)


def compare(spice: pd.DataFrame, composed: pd.DataFrame, tol_mean: float = TOL_MEAN,
            tol_sigma: float = TOL_SIGMA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per point and ideal code, per point pooled) comparison tables."""
    s_ok, c_ok = conversion_errors(spice), conversion_errors(composed)
    if s_ok.empty or c_ok.empty:
        raise UserError("both tables need successful conversions")
    points = sorted(set(map(tuple, s_ok[PVT].to_numpy().tolist()))
                    & set(map(tuple, c_ok[PVT].to_numpy().tolist())))
    if not points:
        raise UserError("the SPICE and composed tables share no operating point")
    per_code, pooled = [], []
    for pt in points:
        sel_s = (s_ok[PVT] == pd.Series(pt, index=PVT)).all(axis=1)
        sel_c = (c_ok[PVT] == pd.Series(pt, index=PVT)).all(axis=1)
        gs, gc = s_ok[sel_s], c_ok[sel_c]
        key = dict(zip(PVT, pt, strict=True))
        for code in sorted(set(gs["code_ideal"]) & set(gc["code_ideal"])):
            s = _stats(gs.loc[gs["code_ideal"] == code, "error"].to_numpy())
            c = _stats(gc.loc[gc["code_ideal"] == code, "error"].to_numpy())
            per_code.append({**key, "code_ideal": int(code),
                             **{f"{k}_spice": v for k, v in s.items()},
                             **{f"{k}_composed": v for k, v in c.items()},
                             **_verdict(s, c, tol_mean, tol_sigma)})
        for label, lo, hi in (("all codes", 0, 31), ("codes 4..27", 4, 27)):
            es = gs.loc[gs["code_ideal"].between(lo, hi), "error"].to_numpy()
            ec = gc.loc[gc["code_ideal"].between(lo, hi), "error"].to_numpy()
            if es.size < 2 or ec.size < 2:
                continue
            s, c = _stats(es), _stats(ec)
            row = {**key, "range": label, **{f"{k}_spice": v for k, v in s.items()},
                   **{f"{k}_composed": v for k, v in c.items()},
                   **_verdict(s, c, tol_mean, tol_sigma)}
            for col in ("t_cal", "t_step", "volts_per_mac"):
                if col in gs and col in gc:
                    row[f"{col}_spice"] = float(pd.to_numeric(gs[col]).mean())
                    row[f"{col}_composed"] = float(pd.to_numeric(gc[col]).mean())
            pooled.append(row)
    return pd.DataFrame(per_code), pd.DataFrame(pooled)


def paired(spice: pd.DataFrame, composed: pd.DataFrame) -> pd.DataFrame:
    """Conversions of identical patterns on both sides (same seed, die, deck, column)."""
    keys = PVT + ["seed", "deck", "col", "pattern"]
    # sweeps since device-keyed mismatch name the die (the seed is the stream's)
    keys += ["die"] if "die" in spice and "die" in composed else []
    if not all(k in spice and k in composed for k in keys):
        return pd.DataFrame()
    s, c = conversion_errors(spice), conversion_errors(composed)
    m = s[keys + ["code", "code_ideal"]].merge(c[keys + ["code"]], on=keys,
                                               suffixes=("_spice", "_composed"))
    if m.empty:
        return pd.DataFrame()
    m["d_code"] = m["code_composed"] - m["code_spice"]
    out = m.groupby(PVT).agg(conversions=("d_code", "size"),
                             same_code=("d_code", lambda d: float((d == 0).mean())),
                             within_1=("d_code", lambda d: float((d.abs() <= 1).mean())),
                             mean_d_code=("d_code", "mean"),
                             sigma_d_code=("d_code", "std")).reset_index()
    # the MAC-phase differential of the same pattern, in SPICE LSB
    if all(k in spice and k in composed for k in ("v_mac", "volts_per_mac", "lsb_mac")):
        v = s[keys + ["v_mac", "volts_per_mac", "lsb_mac"]].merge(
            c[keys + ["v_mac"]], on=keys, suffixes=("_spice", "_composed"))
        lsb_v = pd.to_numeric(v["volts_per_mac"]) * pd.to_numeric(v["lsb_mac"])
        v["d_v_mac"] = (pd.to_numeric(v["v_mac_composed"])
                        - pd.to_numeric(v["v_mac_spice"])) / lsb_v
        g = v.groupby(PVT)["d_v_mac"].agg(["mean", "std"]).reset_index()
        g.columns = PVT + ["mean_d_v_mac", "sigma_d_v_mac"]
        out = out.merge(g, on=PVT, how="left")
    return out


# -- paired equivalence ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Tost:
    """One two-one-sided-tests equivalence result: ``low < estimate < high`` shown at
    ``alpha`` when ``p < alpha`` (p the larger one-sided p-value)."""

    estimate: float
    se: float
    df: float
    low: float
    high: float
    p: float
    ci_lo: float  # the 1 - 2 alpha interval (inside the margins iff p < alpha)
    ci_hi: float
    mdd: float  # the smallest true difference a two-sided alpha test finds at 80 % power
    margin80: float  # the smallest margin this TOST shows at 80 % power if the truth is 0
    n: int
    clusters: int

    @property
    def equivalent(self) -> bool:
        return bool(self.p < ALPHA)


def _tost(est: float, se: float, df: float, low: float, high: float, n: int, g: int,
          alpha: float, power: float, scale=None) -> Tost:
    """TOST of ``est`` (standard error ``se``, t with ``df``) against (low, high); with
    ``scale`` (exp for a log ratio) the interval and the detectable differences are
    returned on the original scale, relative to 1."""
    from scipy.stats import t as dist

    if not (df >= 1 and math.isfinite(se) and math.isfinite(est)):
        nan = math.nan
        return Tost(est, se, df, low, high, nan, nan, nan, nan, nan, n, g)
    if se > 0:
        p = max(float(dist.sf((est - low) / se, df)), float(dist.cdf((est - high) / se, df)))
    else:  # no spread at all: the estimate is exact
        p = 0.0 if low < est < high else 1.0
    q = float(dist.ppf(1 - alpha, df))
    lo, hi = est - q * se, est + q * se
    mdd = (float(dist.ppf(1 - alpha / 2, df)) + float(dist.ppf(power, df))) * se
    m80 = (q + float(dist.ppf(1 - (1 - power) / 2, df))) * se
    if scale is not None:
        lo, hi, mdd, m80 = scale(lo), scale(hi), scale(mdd) - 1, scale(m80) - 1
    return Tost(est, se, df, low, high, p, lo, hi, mdd, m80, n, g)


def _cluster_ids(clusters: np.ndarray | None, n: int) -> np.ndarray:
    """Cluster labels (any hashable values, one per observation) as 0..G-1."""
    if clusters is None:
        return np.arange(n)
    return np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)


def cluster_mean(x: np.ndarray, clusters: np.ndarray | None = None
                 ) -> tuple[float, float, int]:
    """(mean, cluster-robust standard error, clusters) of ``x``: the sandwich estimate
    ``G/(G-1) sum_g (sum_{i in g} (x_i - mean))^2 / N^2``; one observation per cluster
    gives the usual ``s / sqrt(N)``."""
    x = np.asarray(x, float)
    ids = _cluster_ids(clusters, x.size)
    g = int(ids.max()) + 1 if x.size else 0
    if x.size == 0:
        return math.nan, math.nan, 0
    m = float(x.mean())
    if g < 2:
        return m, math.nan, g
    sums = np.bincount(ids, weights=x - m, minlength=g)
    return m, math.sqrt(g / (g - 1) * float((sums ** 2).sum())) / x.size, g


def tost_mean(d: np.ndarray, clusters: np.ndarray | None = None,
              margin: float = MARGIN_MEAN, alpha: float = ALPHA,
              power: float = POWER) -> Tost:
    """Equivalence of the mean of the paired differences ``d`` to 0 within +-margin:
    paired t-test, cluster-robust standard error, clusters - 1 degrees of freedom."""
    m, se, g = cluster_mean(d, clusters)
    return _tost(m, se, g - 1, -margin, margin, int(np.size(d)), g, alpha, power)


def tost_sigma_ratio(e_ref: np.ndarray, e_new: np.ndarray,
                     clusters: np.ndarray | None = None, margin: float = MARGIN_SIGMA,
                     alpha: float = ALPHA, power: float = POWER, n_boot: int = N_BOOT,
                     seed: int = 0) -> Tost:
    """Equivalence of ``sd(e_new) / sd(e_ref)`` to 1 within +-margin for paired samples:
    a Wald TOST of the log ratio against (log(1 - margin), log(1 + margin)), its
    standard error from a paired cluster bootstrap (``n_boot`` resamples of whole
    clusters, both members of every pair together; ``seed`` fixes them). The returned
    estimate is the log ratio; ``ci_lo``/``ci_hi`` are ratios and ``mdd``/``margin80``
    relative deviations of the ratio."""
    a, b = np.asarray(e_ref, float), np.asarray(e_new, float)
    ids = _cluster_ids(clusters, a.size)
    g = int(ids.max()) + 1 if a.size else 0
    lo, hi = math.log(1 - margin), math.log(1 + margin)
    nan = math.nan
    if a.size < 3 or g < 2:
        return Tost(nan, nan, nan, lo, hi, nan, nan, nan, nan, nan, int(a.size), g)
    sa, sb = a.std(ddof=1), b.std(ddof=1)
    if sa == 0 and sb == 0:  # both exact: the ratio is 1 by convention
        return _tost(0.0, 0.0, g - 1, lo, hi, int(a.size), g, alpha, power, math.exp)
    if sa == 0 or sb == 0:
        return Tost(math.inf if sa == 0 else -math.inf, nan, g - 1, lo, hi, 1.0, nan, nan,
                    nan, nan, int(a.size), g)
    est = math.log(sb / sa)
    # per cluster: count, sums and sums of squares of both sides; a resample is a
    # multiset of clusters, so its variances follow from weighted cluster totals
    n_g = np.bincount(ids, minlength=g).astype(float)
    s1a, s1b = np.bincount(ids, a, g), np.bincount(ids, b, g)
    s2a, s2b = np.bincount(ids, a * a, g), np.bincount(ids, b * b, g)
    rng = np.random.default_rng(seed)
    w = np.stack([np.bincount(rng.integers(0, g, g), minlength=g) for _ in range(n_boot)])
    n = w @ n_g

    def var(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        return ((w @ s2) - (w @ s1) ** 2 / n) / np.maximum(n - 1, 1)

    with np.errstate(divide="ignore", invalid="ignore"):
        boot = 0.5 * np.log(var(s1b, s2b) / var(s1a, s2a))
    boot = boot[np.isfinite(boot)]
    se = float(boot.std(ddof=1)) if boot.size > 1 else nan
    return _tost(est, se, g - 1, lo, hi, int(a.size), g, alpha, power, math.exp)


def join_pairs(spice: pd.DataFrame, composed: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """SPICE and composed conversions joined on :data:`PAIR_KEYS` (both "ok"), with
    ``e_spice``, ``e_composed`` and ``d = e_composed - e_spice``; pairs whose patterns
    differ (another pattern stream: not the same conversion) are dropped and counted."""
    missing = [k for k in PAIR_KEYS if k not in spice or k not in composed]
    if missing:
        raise UserError(f"paired validation: the tables lack {', '.join(missing)}")
    s, c = conversion_errors(spice), conversion_errors(composed)
    extra = ["pattern"] if "pattern" in s and "pattern" in c else []
    m = s[PAIR_KEYS + ["code", "code_ideal", "error"] + extra].merge(
        c[PAIR_KEYS + ["code", "error"] + extra], on=PAIR_KEYS,
        suffixes=("_spice", "_composed"))
    dropped = 0
    if extra:
        same = m["pattern_spice"] == m["pattern_composed"]
        dropped = int((~same).sum())
        m = m[same]
    m = m.rename(columns={"error_spice": "e_spice", "error_composed": "e_composed"})
    m["d"] = m["e_composed"] - m["e_spice"]
    return m.reset_index(drop=True), dropped


def paired_equivalence(spice: pd.DataFrame, composed: pd.DataFrame,
                       margin_mean: float = MARGIN_MEAN,
                       margin_sigma: float = MARGIN_SIGMA, alpha: float = ALPHA,
                       power: float = POWER, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per operating point, pooled over the ideal codes: the pairs' identical-code rate
    and the two TOSTs (see the module doc). Empty when no conversion pairs."""
    m, dropped = join_pairs(spice, composed)
    rows = []
    for pt, g in m.groupby(PVT, sort=True):
        cl = g[CLUSTER].astype(str).agg("|".join, axis=1).to_numpy()
        same, se_same, n_cl = cluster_mean((g["d"] == 0).to_numpy(float), cl)
        w1, se_w1, _ = cluster_mean((g["d"].abs() <= 1).to_numpy(float), cl)
        tm = tost_mean(g["d"].to_numpy(), cl, margin_mean, alpha, power)
        ts = tost_sigma_ratio(g["e_spice"].to_numpy(), g["e_composed"].to_numpy(), cl,
                              margin_sigma, alpha, power, n_boot)
        rows.append({
            **dict(zip(PVT, pt, strict=True)), "pairs": len(g), "clusters": n_cl,
            "dies": int(g[["seed", "die"]].drop_duplicates().shape[0]),
            "dropped": dropped, "same_code": same, "se_same_code": se_same,
            "within_1": w1, "se_within_1": se_w1,
            "mean_d": tm.estimate, "sd_d": float(g["d"].std(ddof=1)) if len(g) > 1
            else math.nan, "se_d": tm.se, "p_mean": tm.p, "mdd_mean": tm.mdd,
            "margin80_mean": tm.margin80, "equiv_mean": tm.equivalent,
            "sigma_spice": float(g["e_spice"].std(ddof=1)) if len(g) > 1 else math.nan,
            "sigma_composed": float(g["e_composed"].std(ddof=1)) if len(g) > 1
            else math.nan,
            "sigma_ratio": math.exp(ts.estimate) if math.isfinite(ts.estimate) else
            (math.inf if ts.estimate > 0 else math.nan),
            "ratio_lo": ts.ci_lo, "ratio_hi": ts.ci_hi, "p_sigma": ts.p,
            "mdd_sigma": ts.mdd, "margin80_sigma": ts.margin80,
            "equiv_sigma": ts.equivalent})
    return pd.DataFrame(rows)


def _fmt(v: Any, nd: int = 2) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{nd}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"
    return str(v)


def _md_table(df: pd.DataFrame, cols: list[tuple[str, str]], nd: int = 2) -> list[str]:
    out = ["| " + " | ".join(h for _, h in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(_fmt(r[c], nd) for c, _ in cols) + " |")
    return out


def _sweep_line(name: str, d: Path, df: pd.DataFrame, source: str,
                man: dict[str, Any]) -> str:
    ok = int((df["status"] == "ok").sum())
    spec = man.get("spec", {}) if isinstance(man.get("spec"), dict) else {}
    mc = spec.get("montecarlo", {})
    return (f"- {name}: `{d}` (sweep `{man.get('sweep', '?')}`, block "
            f"`{spec.get('block', '?')}`, created {man.get('created', '?')}, code "
            f"{man.get('code_revision', '?')}, {mc.get('samples', '?')} dies per point, seed "
            f"{mc.get('seed', '?')}, {ok} conversions ok of {len(df)}, from {source})")


def _job_seconds(d: Path) -> tuple[float, int]:
    """Job wall seconds and ok conversions over a sweep's finished job records."""
    wall, n = 0.0, 0
    for f in sorted((d / "jobs").glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        rows = rec.get("rows", [rec.get("row", {})])
        ok = sum(1 for r in rows if r.get("status") == "ok")
        if ok:
            wall += float(rec.get("timing", {}).get("wall", 0.0))
            n += ok
    return wall, n


def paired_section(s_df: pd.DataFrame, c_df: pd.DataFrame, c_man: dict[str, Any],
                   margin_mean: float = MARGIN_MEAN,
                   margin_sigma: float = MARGIN_SIGMA) -> list[str]:
    """The report's paired part: identical-code rate and the two TOSTs per point."""
    try:
        eq = paired_equivalence(s_df, c_df, margin_mean, margin_sigma)
    except UserError as exc:
        return ["", "## Paired conversions (same dies both ways)", "", f"Not possible: {exc}."]
    out = ["", "## Paired conversions (same dies both ways)", ""]
    if eq.empty:
        return out + ["No conversion ran both ways (same operating point, seed, die, deck, "
                      "column and pattern).", ""]
    block = c_man.get("block") if isinstance(c_man.get("block"), dict) else {}
    try:
        old = int(str(block.get("version", "3"))) < 3
    except ValueError:
        old = False
    if old:
        out += ["**The composed sweep predates keyed dies** (block version "
                f"{block.get('version')}): its dies were drawn by an rng, so the pairs "
                "below are the same patterns on different silicon; rerun it.", ""]
    out += [f"Pairs join on {', '.join(PAIR_KEYS)} (dropped for differing patterns: "
            f"{int(eq['dropped'].iloc[0])}). d = composed error - SPICE error (LSB). "
            f"TOST at alpha {ALPHA:g}: the mean of d within +-{margin_mean:g} LSB (paired "
            "t, cluster-robust SE over die-columns); sigma composed / sigma SPICE within "
            f"+-{margin_sigma:.0%} (Wald on the log ratio, SE from a paired cluster "
            f"bootstrap of {N_BOOT} resamples). **equiv.** when p < {ALPHA:g}; mdd: the "
            f"smallest true difference a two-sided test finds at {POWER:.0%} power; "
            "margin80: the smallest margin this n shows at that power (a margin below it "
            "cannot be shown). Rates with their cluster-robust standard errors.", ""]
    t = eq.copy()
    t["same"] = [f"{a:.3f} +- {b:.3f}" for a, b in zip(t["same_code"], t["se_same_code"],
                                                       strict=True)]
    t["w1"] = [f"{a:.3f} +- {b:.3f}" for a, b in zip(t["within_1"], t["se_within_1"],
                                                     strict=True)]
    t["ratio_ci"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                     zip(t["sigma_ratio"], t["ratio_lo"], t["ratio_hi"], strict=True)]
    out += _md_table(t, [
        ("corner", "corner"), ("vdd", "VDD"), ("temp", "T"), ("pairs", "pairs"),
        ("clusters", "die-cols"), ("dies", "dies"), ("same", "same code"),
        ("w1", "within 1"), ("mean_d", "mean d"), ("sd_d", "sd d"), ("se_d", "SE"),
        ("p_mean", "p mean"), ("mdd_mean", "mdd"), ("margin80_mean", "margin80"),
        ("equiv_mean", "mean equiv."), ("sigma_spice", "sigma S"),
        ("sigma_composed", "sigma C"), ("ratio_ci", "ratio [90 %]"), ("p_sigma", "p sigma"),
        ("mdd_sigma", "mdd"), ("margin80_sigma", "margin80"),
        ("equiv_sigma", "sigma equiv.")], nd=3)
    return out + [""]


def method_notes(s_path: Path, c_path: Path, s_df: pd.DataFrame,
                 c_df: pd.DataFrame, c_manifest: dict[str, Any] | None = None) -> list[str]:
    """How the composed side was made, what it leaves out, the sampling limits of the
    comparison and the time per conversion both ways. ``c_manifest`` is the composed
    sweep's manifest (read from ``c_path`` when not given)."""
    out = ["## How the composed side is made", ""]
    man = c_manifest
    if man is None:
        try:
            man = read_manifest(c_path) or {}
        except UserError:
            man = {}
    meas = (man.get("spec") or {}).get("measure", {}) if isinstance(man.get("spec"), dict) \
        else {}
    cells = str(meas.get("cell_models", "inline"))
    out += [f"Cell models: `{cells}`; calibration: `{meas.get('calibration', 'model')}`. "
            "Read stacks (MAC cell, replica row, merged calibration rows): nominal I(V) and "
            "leakage from a DC sweep, pulse-edge charge from nominal transients (against "
            "the pulse width and the bitline voltage), per-device log-current spread "
            "from Monte-Carlo instances; bitline parasitics from a nominal bench; SA "
            "offset from Monte-Carlo instances (parallel bisection) at "
            "the column's typical decision common mode, nominal offset and delay from "
            "nominal decks (`charact.column.cells`). The column integrates both bitlines "
            "exactly for the separable I(V) model, computes each die from the keyed "
            "device scores of the same SPICE die through the sensitivities fitted on the "
            "cell benches, calibrates itself with the procedure of "
            "`charact.column.calibration`, and decides every ramp cycle "
            "(`charact.column.composed`). Not modelled: SA noise "
            "and kickback (an SA bench with the inputs on the bitline capacitance instead "
            "of ideal sources gave the same offsets), leakage mismatch, the calibration "
            "stack's on-state capacitance (absorbed by the self-calibration).", ""]
    cell_s = math.nan
    p = Path(cells)
    if (p / "table.parquet").is_file():
        try:
            t = read_sweep(p, ("status", "model_json"), block="ima_cell_mc",
                           what="ima_cell_mc table").table
            recs = [json.loads(x) for x in t.loc[t["status"] == "ok", "model_json"]]
            cell_s = sum(float(r["info"]["wall_seconds"]) for r in recs)
            lines_sa = [f"{r['corner']}: SA offset sigma "
                        + "/".join(f"{1e3 * v:.1f}" for v in r["sa"]["sigma"])
                        + f" mV ({r['sa']['n_mc']} instances at "
                        + "/".join(f"{v:g}" for v in r["sa"]["vcm"])
                        + f" V common mode), MAC read stack sigma_ln "
                        f"{r['stacks']['mac']['sigma_ln']:.3f}" for r in recs]
            out += ["Cell-level results: " + "; ".join(lines_sa) + ".", ""]
        except (OSError, ValueError, KeyError, TypeError, UserError):
            cell_s = math.nan
    out += ["## Where the error comes from", "",
            "The SA offset dominates the code error. The offset each conversion implies, "
            "from its crossing cycle, the ramp start ``v_cal`` and the mean step "
            "(conversions that crossed in the first cycle or never are left out), gives "
            "the SA offset spread as the column sees it, both ways:", ""]
    for name, df in (("SPICE", s_df), ("composed", c_df)):
        for corner, g in df[df["status"] == "ok"].groupby("corner"):
            if not {"cross_cycle", "v_cal", "ramp_step"} <= set(g.columns):
                continue
            cc = pd.to_numeric(g["cross_cycle"]).to_numpy()
            st = pd.to_numeric(g["ramp_step"]).to_numpy(float)
            vc = pd.to_numeric(g["v_cal"]).to_numpy(float)
            m = cc > 0
            off = (cc[m] + 0.5) * st[m] - vc[m]
            if off.size > 1:
                out.append(f"- {name} {corner}: {off.size} conversions, implied offset mean "
                           f"{1e3 * off.mean():+.1f} mV, sigma {1e3 * off.std(ddof=1):.1f} mV "
                           f"(+-{100 / math.sqrt(2 * (off.size - 1)):.0f} %)")
    out += ["", "## Sampling limits", ""]
    ok = s_df[s_df["status"] == "ok"]
    for corner, g in ok.groupby("corner"):
        e = g["code"].astype(float) - g["code_ideal"].astype(float)
        n = e.size
        out.append(f"- {corner}: {n} SPICE conversions; the standard error of their pooled "
                   f"mean error is {e.std(ddof=1) / math.sqrt(n):.2f} LSB and of their sigma "
                   f"about {100 / math.sqrt(2 * max(n - 1, 1)):.0f} %, so a 0.2 LSB / 20 % "
                   "agreement can only be confirmed to that precision.")
    out.append("")
    ws, ns = _job_seconds(s_path)
    wc, nc = _job_seconds(c_path)
    if ns and nc:
        per_s, per_c = ws / ns, wc / nc
        out += ["## Time per conversion", "",
                f"Full SPICE {per_s:.3g} s ({ns} conversions, job wall); composed "
                f"{1e3 * per_c:.3g} ms ({nc} conversions, job wall, sweep machinery "
                f"included): {per_s / per_c:.0f}x per conversion."]
        if math.isfinite(cell_s):
            out.append(f"The cell models took {cell_s:.0f} s once; with them, the "
                       f"{nc} composed conversions cost {wc + cell_s:.0f} s against "
                       f"{nc * per_s / 3600:.1f} h of full SPICE: "
                       f"{nc * per_s / (wc + cell_s):.0f}x. Measured on a shared 2-core "
                       "machine; `benchmarks/bench_hier.py` times both in one run.")
        out.append("")
    return out


def report(spice_dir: str | Path, composed_dir: str | Path, command: str,
           tol_mean: float = TOL_MEAN, tol_sigma: float = TOL_SIGMA,
           extra: str = "", margin_mean: float = MARGIN_MEAN,
           margin_sigma: float = MARGIN_SIGMA) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The Markdown report and its two (unpaired) tables; the paired part is
    :func:`paired_equivalence`'s."""
    from charact.provenance import stamp

    # each side must be the sweep it claims to be: a swapped pair would invert the report
    s_df, s_path, s_src, s_man = _load(spice_dir, "ima_column")
    c_df, c_path, c_src, c_man = _load(composed_dir, "ima_column_composed")
    per_code, pooled = compare(s_df, c_df, tol_mean, tol_sigma)
    pairs = paired(s_df, c_df)
    st = stamp()
    lines = ["# Composed column against full-column SPICE", "",
             f"Made by `{command}` ({st['created']}, charact {st['charact_version']}, code "
             f"{st['code_revision']}).", "",
             _sweep_line("full SPICE", s_path, s_df, s_src, s_man),
             _sweep_line("composed", c_path, c_df, c_src, c_man), "",
             f"Error = converted code - ideal code (LSB). A code **agrees** when the composed "
             f"mean error is within {tol_mean:g} LSB of SPICE's and its sigma within "
             f"{tol_sigma:.0%} of SPICE's; **within sampling error** when it misses that "
             "but the two samples are still compatible at 95 % (Welch's t-test for the "
             "means, F-test for the variances: the SPICE side is thin, a few dies per "
             "point); otherwise it **disagrees**, and the composed mode is not to be "
             "trusted there. At 95 %, about one code in twenty disagrees by chance alone.",
             ""]
    lines += ["## Per operating point (pooled over ideal codes)", ""]
    lines += _md_table(pooled, [
        ("corner", "corner"), ("vdd", "VDD"), ("temp", "T"), ("range", "codes"),
        ("n_spice", "n SPICE"), ("n_composed", "n comp."),
        ("mean_spice", "mean SPICE"), ("mean_composed", "mean comp."),
        ("sigma_spice", "sigma SPICE"), ("sigma_composed", "sigma comp."),
        ("frac_over_1lsb_spice", ">1 LSB SPICE"), ("frac_over_1lsb_composed", ">1 LSB comp."),
        ("d_mean", "d mean"), ("se_d_mean", "SE"), ("sigma_ratio", "sigma ratio"),
        ("verdict", "verdict")])
    cal_cols = [c for c in ("t_cal", "t_step", "volts_per_mac") if f"{c}_spice" in pooled]
    if cal_cols:
        lines += ["", "Calibration and transfer (mean over conversions; the composed side "
                  "uses its own calibration unless its spec names a SPICE one):", ""]
        first = pooled[pooled["range"] == "all codes"]
        cols = [("corner", "corner")]
        for c in cal_cols:
            cols += [(f"{c}_spice", f"{c} SPICE"), (f"{c}_composed", f"{c} comp.")]
        lines += _md_table(first, cols, nd=4)
    lines += paired_section(s_df, c_df, c_man, margin_mean, margin_sigma)
    if not pairs.empty:
        lines += ["", "## Identical patterns", "",
                  "Conversions that ran both ways on the same patterns (same seeds). The "
                  "MAC-phase differential ``v_mac`` of a pair differs by what the composed "
                  "MAC phase gets wrong (and, for composed sweeps before keyed dies, by "
                  "the cells' mismatch), so its mean difference is the composed MAC "
                  "phase's bias (in SPICE LSB):", ""]
        cols = [("corner", "corner"), ("conversions", "pairs"), ("same_code", "same code"),
                ("within_1", "within 1 LSB"), ("mean_d_code", "code: mean (C - S)"),
                ("sigma_d_code", "sigma")]
        if "mean_d_v_mac" in pairs:
            cols += [("mean_d_v_mac", "v_mac: mean (C - S), LSB"),
                     ("sigma_d_v_mac", "sigma, LSB")]
        lines += _md_table(pairs, cols)
    lines += ["", "## Per ideal code", ""]
    for pt, g in per_code.groupby(PVT, sort=True):
        counts = g["verdict"].value_counts()
        lines += [f"### {pt[0]}, {pt[1]:g} V, {pt[2]:g} C", "",
                  "Verdicts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".", ""]
        bad = g[g["verdict"] == "disagrees"]["code_ideal"].tolist()
        lines.append("Disagrees at ideal codes: " + (", ".join(map(str, bad)) if bad
                                                      else "none") + ".")
        lines.append("")
        lines += _md_table(g, [
            ("code_ideal", "code"), ("n_spice", "n S"), ("n_composed", "n C"),
            ("mean_spice", "mean S"), ("mean_composed", "mean C"),
            ("sigma_spice", "sigma S"), ("sigma_composed", "sigma C"),
            ("frac_over_1lsb_spice", ">1 S"), ("frac_over_1lsb_composed", ">1 C"),
            ("d_mean", "d mean"), ("sigma_ratio", "ratio"), ("verdict", "verdict")])
        lines.append("")
    lines += method_notes(s_path, c_path, s_df, c_df, c_man)
    if extra:
        lines += ["## Notes", "", extra.strip(), ""]
    return "\n".join(lines) + "\n", per_code, pooled


def paired_report(spice_dir: str | Path, composed_dir: str | Path,
                  margin_mean: float = MARGIN_MEAN,
                  margin_sigma: float = MARGIN_SIGMA) -> pd.DataFrame:
    """:func:`paired_equivalence` of two sweep folders (or tables)."""
    s_df, _, _ = load_table(spice_dir, "ima_column")
    c_df, _, _ = load_table(composed_dir, "ima_column_composed")
    return paired_equivalence(s_df, c_df, margin_mean, margin_sigma)


def write_report(spice_dir: str | Path, composed_dir: str | Path, out: str | Path,
                 command: str, tol_mean: float = TOL_MEAN, tol_sigma: float = TOL_SIGMA,
                 notes: str | Path | None = None, margin_mean: float = MARGIN_MEAN,
                 margin_sigma: float = MARGIN_SIGMA) -> tuple[Path, pd.DataFrame]:
    """Write the Markdown report (atomically); return its path and the pooled table
    (the paired one: :func:`paired_report`)."""
    from charact.provenance import atomic_path

    extra = ""
    if notes is not None:
        p = Path(notes)
        if not p.is_file():
            raise UserError(f"notes file not found: {p}")
        extra = p.read_text()
    text, _, pooled = report(spice_dir, composed_dir, command, tol_mean, tol_sigma, extra,
                             margin_mean, margin_sigma)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out, pooled


__all__ = ["MARGIN_MEAN", "MARGIN_SIGMA", "PAIR_KEYS", "TOL_MEAN", "TOL_SIGMA", "Tost",
           "cluster_mean", "compare", "conversion_errors", "join_pairs", "load_table", "paired",
           "paired_equivalence", "paired_report", "paired_section", "report", "tost_mean",
           "tost_sigma_ratio", "write_report"]
