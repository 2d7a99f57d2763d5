"""``charact demo``: the whole chain, small, on the default technology.

1. Monte-Carlo sweep of the StrongARM sense amplifier (NOM and SS, two supplies).
2. Calibration and a Monte-Carlo sweep of a small in-memory-ADC column at NOM (real
   ngspice, FreePDK45), converting stratified random patterns.
3. Fits: the column's code-error model and the sense amplifier's PVT table; the error
   table and a Fig. 4(b)-style plot.
4. An accuracy run of top-k attention (quick mode) with the fitted error model injected
   into three simulated chips.
5. The latency/energy roll-up fed by the α measured in step 4, the sense-amplifier delay
   from step 3 and T_arb from the shipped arbiter/encoder model when there is one.
6. Gain cells: a tiny write and readout sweep in real ngspice (NOM, two dies), their fits
   into lookup models, and the decode roll-up (latency and energy per generated token
   against context length, gain cells beside topkima) fed by them and by the shipped
   multiply and retention models; with torch, a quick run of the byte-level language model
   with gain-cell attention (``charact lm --quick``).

Each step is the same ``charact`` subcommand a user would type; the specs are written to
``OUT/specs/`` so every step can be rerun alone. Steps 1-2 resume like any sweep.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from charact.errors import UserError

SA_SPEC = """\
# Demo: StrongARM sense amplifier, offset/delay/energy over two corners and supplies.
schema = "charact.sweep/1"
name = "demo_sense_amp"
block = "sense_amp"
technology = "{tech}"
[conditions]
corner = ["NOM", "SS"]
vdd = [0.8, 1.0]
temp = [27]
vcm = [0.4]
[montecarlo]
samples = 3
seed = 1
[measure]
delta_v = [1e-3, 1e-2, 1e-1]
delay_ref = 1e-2
"""

COLUMN_CAL_SPEC = """\
# Demo: calibration of the replica ramp of a 4-dimension column at NOM (nominal devices).
schema = "charact.sweep/1"
name = "demo_column_calibration"
block = "ima_calibration"
technology = "{tech}"
[conditions]
corner = ["NOM"]
[montecarlo]
samples = 0
[measure]
n_dims = 4
"""

COLUMN_SPEC = """\
# Demo: a 4-dimension in-memory-ADC column, 4 columns per deck, four Monte-Carlo dies at
# NOM, each converting 16 stratified random patterns (every code twice over the dies;
# four conversions per physical column, so the fit can separate a column's static error
# from its per-conversion noise).
schema = "charact.sweep/1"
name = "demo_column"
block = "ima_column"
technology = "{tech}"
[conditions]
corner = ["NOM"]
[montecarlo]
samples = 4
seed = 3
[measure]
n_dims = 4
n_cols = 4
conversions = 16
patterns = "stratified"
calibration = "{cal}"
[run]
timeout = 1800
"""

GC_WRITE_SPEC = """\
# Demo: gain-cell write time and energy per cell, two stored levels, two dies at NOM.
schema = "charact.sweep/1"
name = "demo_gc_write"
block = "gc_write"
technology = "{tech}"
[conditions]
corner = ["NOM"]
vdd = [1.0]
temp = [27]
v_store = [0.45, 0.9]
[montecarlo]
samples = 2
seed = 1
[measure]
v_from = 0.0
t_wwl = 5e-9
"""

GC_READOUT_SPEC = """\
# Demo: charge-to-pulse readout, five input charges (the last saturates), two dies at NOM.
schema = "charact.sweep/1"
name = "demo_gc_readout"
block = "gc_readout"
technology = "{tech}"
[conditions]
corner = ["NOM"]
vdd = [1.0]
temp = [27]
[montecarlo]
samples = 2
seed = 1
[measure]
q_in = [0.0, 30e-15, 60e-15, 100e-15, 200e-15]
i_ref = 10e-6
t_max = 15e-9
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole chain, small: sweeps, fits, accuracy, roll-ups")
    p.add_argument("-o", "--out", default="results/demo", help="output folder")
    p.add_argument("-j", "--jobs", type=int, default=0, help="parallel jobs (default all cores)")
    p.add_argument("--technology", default="freepdk45", help="technology name or TOML path")
    p.add_argument("--skip-accuracy", action="store_true", help="leave out the torch step")
    p.set_defaults(func=cmd_demo)


def _step(title: str, argv: list[str]) -> None:
    from charact.cli import main

    print(f"\n=== {title}\n$ charact {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    status = main(argv)
    if status != 0:
        raise UserError(f"demo step failed ({title}): charact {' '.join(argv)}")
    print(f"--- {title}: {time.perf_counter() - t0:.1f} s", flush=True)


def _shipped_digital_model() -> Path | None:
    from charact.paths import models_dir

    for name in ("digital_freepdk45.json",):
        path = models_dir() / name
        if path.is_file():
            return path
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from charact.outputs import check_output_dir
    from charact.tech import load_technology

    if args.jobs < 0:
        raise UserError(f"--jobs must be >= 0, got {args.jobs}")
    check_output_dir(args.out, "-o")  # before the first sweep, not at its end
    tech = load_technology(args.technology)  # fails early on a bad technology
    tech_ref = args.technology if not args.technology.endswith(".toml") \
        else str(Path(args.technology).resolve())
    out = Path(args.out)
    specs, sweeps, models = out / "specs", out / "sweeps", out / "models"
    specs.mkdir(parents=True, exist_ok=True)
    jobs = ["-j", str(args.jobs)] if args.jobs else []
    t0 = time.perf_counter()

    sa = specs / "sense_amp.toml"
    sa.write_text(SA_SPEC.format(tech=tech_ref))
    _step("1. sense-amplifier Monte-Carlo sweep",
          ["sweep", str(sa), "-o", str(sweeps / "sense_amp"), "--quiet", *jobs])

    cal = specs / "column_calibration.toml"
    cal.write_text(COLUMN_CAL_SPEC.format(tech=tech_ref))
    _step("2a. column ramp calibration",
          ["sweep", str(cal), "-o", str(sweeps / "column_calibration"), "--quiet", *jobs])
    col = specs / "column.toml"
    col.write_text(COLUMN_SPEC.format(tech=tech_ref,
                                      cal=str((sweeps / "column_calibration").resolve())))
    _step("2b. column Monte-Carlo conversions",
          ["sweep", str(col), "-o", str(sweeps / "column"), "--quiet", *jobs])

    _step("3a. fit the column's code-error model",
          ["fit", str(sweeps / "column"), "-o", str(models / "column.json")])
    _step("3b. fit the sense amplifier's PVT table",
          ["fit", str(sweeps / "sense_amp"), "-o", str(models / "sense_amp.json"),
           "--kind", "pvt_table"])
    _step("3c. error table and Fig. 4(b)-style plot",
          ["errortable", str(sweeps / "column"), "-o", str(out / "errortable")])
    _step("3d. model summary",
          ["show", str(models / "column.json"), "--plot", str(out / "column_model.png")])

    rollup = ["rollup", "-o", str(out / "rollup"),
              "--delays-from", str(models / "sense_amp.json"),
              "--corner", "NOM", "--vdd", "1.0", "--temp", "27"]
    if not args.skip_accuracy:
        _step("4. accuracy with the fitted error model injected (quick)",
              ["accuracy", "--quick", "--error-model", str(models / "column.json"),
               "--chips", "3", "--out", str(out / "accuracy"), "--run", "quick"])
        rollup += ["--alpha-from", str(out / "accuracy" / "quick" / "selection_stats.parquet")]
    digital = _shipped_digital_model()
    if digital is not None:
        rollup += ["--delays-from", str(digital)]
    _step("5. latency/energy roll-up", rollup)

    t_gc = time.perf_counter()
    gcw, gcr = specs / "gc_write.toml", specs / "gc_readout.toml"
    gcw.write_text(GC_WRITE_SPEC.format(tech=tech_ref))
    gcr.write_text(GC_READOUT_SPEC.format(tech=tech_ref))
    _step("6a. gain-cell write sweep",
          ["sweep", str(gcw), "-o", str(sweeps / "gc_write"), "--quiet", *jobs])
    _step("6b. gain-cell readout sweep",
          ["sweep", str(gcr), "-o", str(sweeps / "gc_readout"), "--quiet", *jobs])
    _step("6c. fit the gain-cell write model",
          ["fit", str(sweeps / "gc_write"), "-o", str(models / "gc_write.json")])
    _step("6d. fit the gain-cell readout model",
          ["fit", str(sweeps / "gc_readout"), "-o", str(models / "gc_readout.json")])
    # multiply and retention come from the shipped models (--shipped-models fills them in)
    decode = ["decode", "-o", str(out / "decode"), "--shipped-models",
              "--gc-write", str(models / "gc_write.json"),
              "--gc-readout", str(models / "gc_readout.json"),
              "--lengths", "64,256,1024,4096"]
    if not args.skip_accuracy:  # topkima's early stop as measured in step 4
        decode += ["--alpha-from", str(out / "accuracy" / "quick" / "selection_stats.parquet")]
    _step("6e. decode roll-up: gain cells and topkima per generated token", decode)
    if not args.skip_accuracy:
        _step("6f. gain-cell attention in a small language model (ideal / gain cell / "
              "mapped / adapted)", ["lm", "--quick", "-o", str(out / "lm")])
    gc_seconds = time.perf_counter() - t_gc

    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s on technology {tech.name}")
    print(f"  sweep tables      {sweeps}/*/table.parquet (+ manifest.json)")
    print(f"  lookup models     {models}/column.json, {models}/sense_amp.json")
    print(f"  error table       {out / 'errortable'}/ (CSV, Parquet, plot)")
    print(f"  model plot        {out / 'column_model.png'}")
    if not args.skip_accuracy:
        print(f"  accuracy          {out / 'accuracy' / 'quick'}/ (accuracy.md, figures, "
              "selection_stats.parquet)")
    print(f"  roll-up           {out / 'rollup'}/ (tables, rollup.md, figures)")
    print(f"  gain-cell models  {models}/gc_write.json, {models}/gc_readout.json "
          f"(step 6: {gc_seconds:.0f} s)")
    print(f"  decode roll-up    {out / 'decode'}/ (decode_per_token.csv, report.md, "
          "decode_vs_length.png, provenance.json)")
    if not args.skip_accuracy:
        print(f"  language model    {out / 'lm'}/ (lm.csv, summary.csv, report.md)")
    return 0
