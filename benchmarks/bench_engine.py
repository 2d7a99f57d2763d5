"""Engine benchmark: orchestration overhead over bare ``ngspice -b`` on identical decks,
the speed-up of 2 parallel jobs over 1, and the PySpice shared-library backend.

    .venv/bin/python benchmarks/bench_engine.py [--jobs-per-run 24]

Prints ratios measured in this one run. Run it on an otherwise idle machine: the ratios
compare wall times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from charact.runner import ngspice_path, ngspice_version
from charact.spec import parse_spec
from charact.sweep import run_sweep

SPEC = """
schema = "charact.sweep/1"
name = "bench_sa"
block = "sense_amp"
technology = "freepdk45"
[conditions]
corner = ["NOM"]
vdd = [1.0]
temp = [27]
vcm = [0.4]
[montecarlo]
samples = {samples}
seed = {seed}
"""


def sweep_wall(samples: int, seed: int, n_jobs: int, out: Path, backend: str = "batch",
               keep: bool = False) -> float:
    spec = parse_spec(tomllib.loads(SPEC.format(samples=samples, seed=seed)),
                      simulator_version=ngspice_version())
    t0 = time.perf_counter()
    res = run_sweep(spec, out, n_jobs=n_jobs, backend=backend, keep_work=keep, progress=False)
    wall = time.perf_counter() - t0
    assert res.failed == 0, res.table["reason"].tolist()
    return wall


def bare_wall(work: Path) -> tuple[float, int]:
    """Run every deck the sweep wrote with plain ngspice -b, one after another."""
    decks = sorted(work.glob("*/*.cir"))
    script = "\n".join(f'cd "{d.parent}" && {ngspice_path()} -b "{d.name}" > /dev/null 2>&1'
                       for d in decks)
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - t0, len(decks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs-per-run", type=int, default=24)
    args = ap.parse_args()
    n = args.jobs_per_run
    tmp = Path(tempfile.mkdtemp(prefix="charact-bench-"))
    print(f"# {ngspice_version()}, {os.cpu_count()} cores, {n} sense-amplifier MC jobs "
          f"(4 decks each) per measurement")
    try:
        sweep_wall(2, 99, 1, tmp / "warm")  # warm the file cache and imports
        t1 = sweep_wall(n, 1, 1, tmp / "j1", keep=True)
        tb, decks = bare_wall(tmp / "j1" / "work")
        print(f"bare ngspice -b, {decks} decks sequential : {tb:8.2f} s")
        print(f"charact sweep -j 1                     : {t1:8.2f} s")
        print(f"orchestration overhead                 : {100 * (t1 - tb) / tb:+7.1f} %"
              "   (goal <= 5 %)")
        t2 = sweep_wall(n, 2, 2, tmp / "j2")
        t1b = sweep_wall(n, 3, 1, tmp / "j1b")
        print(f"charact sweep -j 2 / -j 1 (new seeds)  : {t2:8.2f} s / {t1b:8.2f} s")
        print(f"speed-up 2 jobs over 1                 : {t1b / t2:8.2f} x   (goal >= 1.9 x)")
        try:
            tp = sweep_wall(n, 4, 1, tmp / "py", backend="pyspice")
            tb4 = sweep_wall(n, 4, 1, tmp / "py_b")
            print(f"pyspice shared-library backend, -j 1   : {tp:8.2f} s "
                  f"({tp / tb4:.2f} x the batch backend's {tb4:.2f} s)")
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"pyspice backend unavailable: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
