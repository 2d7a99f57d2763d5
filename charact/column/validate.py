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
over all codes of a point, the same tests give the point's verdict. Conversions that
ran both ways on identical patterns (same seeds) are also compared one by one.
"""

from __future__ import annotations

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


def _errors(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["status"] == "ok"].copy()
    ok["error"] = ok["code"].astype(float) - ok["code_ideal"].astype(float)
    for c in ("vdd", "temp"):
        ok[c] = ok[c].astype(float).round(9)
    return ok


def load_table(sweep: str | Path, block: str | None = None
               ) -> tuple[pd.DataFrame, Path, str]:
    """A column sweep's table, or, while the sweep is still running (no table yet),
    the rows of its finished jobs (``jobs/*.json``); the last item says which.
    ``block`` (``ima_column`` or ``ima_column_composed``) refuses a sweep of the other."""
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
    s_ok, c_ok = _errors(spice), _errors(composed)
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
    s, c = _errors(spice), _errors(composed)
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
            "leakage from a DC sweep, pulse-edge charge from a nominal transient, per-device "
            "log-current spread from Monte-Carlo instances; bitline parasitics from a "
            "nominal bench; SA offset from Monte-Carlo instances (parallel bisection) at "
            "the column's typical decision common mode, nominal offset and delay from "
            "nominal decks (`charact.column.cells`). The column integrates both bitlines "
            "exactly for the separable I(V) model, draws one standard score per device "
            "and die, calibrates itself with the procedure of `charact.column.calibration`, and "
            "decides every ramp cycle (`charact.column.composed`). Not modelled: SA noise "
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
           extra: str = "") -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The Markdown report and its two tables."""
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
    if not pairs.empty:
        lines += ["", "## Identical patterns", "",
                  "Conversions that ran both ways on the same patterns (same seeds); their "
                  "devices differ (independent Monte-Carlo draws), so this measures the "
                  "spread of the pairs, not a bias; the MAC-phase differential ``v_mac`` "
                  "of a pair differs by the cells' mismatch only, so its mean difference "
                  "is the composed MAC phase's bias (in SPICE LSB):", ""]
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


def write_report(spice_dir: str | Path, composed_dir: str | Path, out: str | Path,
                 command: str, tol_mean: float = TOL_MEAN, tol_sigma: float = TOL_SIGMA,
                 notes: str | Path | None = None) -> tuple[Path, pd.DataFrame]:
    """Write the Markdown report (atomically); return its path and the pooled table."""
    from charact.provenance import atomic_path

    extra = ""
    if notes is not None:
        p = Path(notes)
        if not p.is_file():
            raise UserError(f"notes file not found: {p}")
        extra = p.read_text()
    text, _, pooled = report(spice_dir, composed_dir, command, tol_mean, tol_sigma, extra)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out, pooled


__all__ = ["TOL_MEAN", "TOL_SIGMA", "compare", "load_table", "paired", "report",
           "write_report"]
