"""Composed (hierarchical) column against full-column SPICE: time per conversion for the
same conversions, and whether the error statistics match, in one run.

Full SPICE: the per-job timings of a reference sweep (``ima_column``; the records of its
finished jobs), divided by their successful conversions. Composed: the same spec (operating
points, dies, seeds, so the same patterns) run now as ``ima_column_composed`` in a
scratch folder, with the cell models of an ``ima_cell_mc`` sweep. The one-time cost of
those cell models (their SPICE wall time, from the models' records) is reported apart
and amortized over the same conversions.

Matching statistics (the issue's bar): per corner, pooled over ideal codes, the composed
mean error within 0.2 LSB and sigma within 20 % of full SPICE's, with the composed side
taken from a larger composed sweep if one is given (``--composed``).

    python benchmarks/bench_hier.py --spice results/column_reference \
        --cells results/cell_mc --composed results/column_composed
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def spice_seconds(sweep: Path) -> tuple[float, float, int]:
    """(job wall s, simulator s, ok conversions) over the finished jobs of a sweep (its
    ``jobs/*.json`` records, so a sweep still running counts what it has done)."""
    wall = sim = 0.0
    n = 0
    for f in sorted((sweep / "jobs").glob("*.json")):
        rec = json.loads(f.read_text())
        rows = rec.get("rows", [rec["row"]])
        ok = [r for r in rows if r.get("status") == "ok"]
        if not ok:
            continue
        wall += float(rec["timing"]["wall"])
        sim += float(rec["timing"]["simulator"])
        n += len(ok)
    return wall, sim, n


def run_composed(spec_path: Path, cells: Path, out: Path) -> tuple[float, pd.DataFrame]:
    import tomllib

    from charact.spec import parse_spec
    from charact.sweep import run_sweep

    raw = tomllib.loads(spec_path.read_text())
    raw["block"] = "ima_column_composed"
    raw["name"] = raw.get("name", "bench") + "_composed"
    meas = dict(raw.get("measure", {}))
    meas.pop("calibration", None)  # the composed column calibrates itself
    meas["cell_models"] = str(cells)
    raw["measure"] = meas
    spec = parse_spec(raw, where=str(spec_path), path=spec_path)
    t0 = time.perf_counter()
    res = run_sweep(spec, out, n_jobs=1, progress=False)
    return time.perf_counter() - t0, res.table


def cell_seconds(cells: Path) -> float:
    df = pd.read_parquet(cells / "table.parquet")
    return float(sum(json.loads(s)["info"]["wall_seconds"] for s in df["model_json"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spice", type=Path, default=Path("results/column_reference"))
    ap.add_argument("--spec", type=Path, default=Path("examples/column_reference.toml"),
                    help="the reference sweep's spec (run here in composed mode)")
    ap.add_argument("--cells", type=Path, default=Path("results/cell_mc"))
    ap.add_argument("--composed", type=Path, default=None,
                    help="a larger composed sweep for the statistics (default: the run here)")
    args = ap.parse_args(argv)
    from charact.column.validate import compare, load_table

    wall_s, sim_s, n_s = spice_seconds(args.spice)
    if n_s == 0:
        print(f"no finished reference jobs in {args.spice}: run charact sweep "
              f"{args.spec} first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        wall_c, table_c = run_composed(args.spec, args.cells, Path(tmp) / "composed")
    n_c = int((table_c["status"] == "ok").sum())
    char = cell_seconds(args.cells)
    per_s = wall_s / max(n_s, 1)
    per_c = wall_c / max(n_c, 1)
    per_c_amort = (wall_c + char) / max(n_c, 1)
    print(f"full SPICE : {n_s} conversions, {wall_s:9.1f} s job wall ({sim_s:.1f} s in "
          f"ngspice) -> {per_s:.3g} s/conversion")
    print(f"composed   : {n_c} conversions (the spec's points, dies, patterns), {wall_c:.2f} s "
          f"-> {per_c * 1e3:.3g} ms/conversion (sweep machinery included)")
    print(f"cell models: {char:.1f} s of SPICE once per operating point set")
    print(f"speed-up per conversion            : {per_s / per_c:10.0f}x")
    print(f"speed-up with cell models amortized: {per_s / per_c_amort:10.1f}x over "
          f"{n_c} conversions")
    if per_s > 0:
        n_even = char / max(per_s / 100 - per_c, 1e-12)
        print(f"conversions from which the amortized speed-up reaches 100x: {n_even:.0f}")
    stats_src = table_c
    if args.composed is not None:
        stats_src = pd.read_parquet(args.composed / "table.parquet")
        man = json.loads((args.composed / "manifest.json").read_text())
        n_big = int((stats_src["status"] == "ok").sum())
        wall_big = sum(float(t["wall"]) for t in man["timing"]["per_job"].values())
        print(f"at the size of {args.composed} ({n_big} conversions, {wall_big:.1f} s of "
              f"job wall): full SPICE would take {n_big * per_s / 3600:.1f} h -> "
              f"{n_big * per_s / (wall_big + char):.0f}x with the cell models included")
    spice_tab = load_table(args.spice)[0]
    _, pooled = compare(spice_tab, stats_src)
    print("\nerror statistics, pooled over ideal codes (LSB):")
    ok_all = True
    for _, r in pooled.iterrows():
        match = r["mean_ok"] and r["sigma_ok"]
        ok_all &= bool(match) if r["range"] == "all codes" else True
        print(f"  {r['corner']:4s} {r['range']:12s} mean {r['mean_spice']:+.3f} SPICE / "
              f"{r['mean_composed']:+.3f} composed (d {r['d_mean']:+.3f} +- "
              f"{r['se_d_mean']:.3f}), sigma {r['sigma_spice']:.3f} / "
              f"{r['sigma_composed']:.3f} (ratio {r['sigma_ratio']:.3f}) -> "
              f"{'match' if match else 'no match'} ({r['verdict']})")
    print(f"\nmatching statistics at every corner (all codes): {'yes' if ok_all else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
