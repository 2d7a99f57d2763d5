"""Per-job throughput of a large sweep against a small one: what each parallel task
carries must not grow with the number of jobs.

    .venv/bin/python benchmarks/bench_payload.py [--tasks 600] [--workers 2] [--payload slim]

Runs the first ``--tasks`` jobs of a 1,000-job and of a 100,000-job sense-amplifier spec
through the sweep's own loky executor, with a fake simulator that answers each deck
from its text at once (so the measured time is the orchestration: pickling, dispatch,
deck rendering, the job record). Prints the pickled size of one task and jobs per
second for both, and their ratio (1.0: no slowdown with size). ``--payload full``
sends the whole spec with every task, as earlier versions did, for comparison.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_sweep import SPEC, FakeSim  # noqa: E402

import charact.sweep as sweep  # noqa: E402
from charact.spec import parse_spec  # noqa: E402


def fake_job(*args):
    """run_job with the fake simulator (set in the worker that runs it)."""
    sweep.make_simulator = lambda backend: FakeSim()
    return sweep.run_job(*args)


def spec_of(n_jobs: int):
    return parse_spec(tomllib.loads(SPEC.format(name=f"payload{n_jobs}", corners='["NOM"]',
                                                vdd="1.0", samples=n_jobs,
                                                tech="freepdk45")))


def throughput(n_jobs: int, tasks: int, workers: int, payload: str) -> tuple[float, int]:
    """(jobs per second, bytes pickled per task) for the first ``tasks`` jobs."""
    spec = spec_of(n_jobs)
    with tempfile.TemporaryDirectory(prefix="charact-payload-") as tmp:
        args = sweep.task_args(spec, spec.jobs[:tasks], Path(tmp), "batch", False)
        if payload == "full":
            args = [(spec, *a[1:]) for a in args]
        size = len(pickle.dumps(args[0]))
        # warm the pool (worker start, imports) on jobs that are not timed
        list(sweep._joblib_executor(fake_job, args[:2 * workers], workers))
        t0 = time.perf_counter()
        done = sum(1 for _ in sweep._joblib_executor(fake_job, args[2 * workers:], workers))
        return done / (time.perf_counter() - t0), size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=600, help="jobs timed per sweep size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--payload", choices=["slim", "full"], default="slim")
    args = ap.parse_args()
    rates = {}
    for n in (1_000, 100_000):
        tasks = min(args.tasks, n)
        rate, size = throughput(n, tasks, args.workers, args.payload)
        rates[n] = rate
        print(f"{n:>7} jobs in the spec: {size / 1e3:9.1f} kB per task, "
              f"{rate:7.1f} jobs/s ({args.workers} workers, {args.payload} payload)")
    print(f"throughput 100k / 1k: {rates[100_000] / rates[1_000]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
