"""Cost of the hardware attention pipeline against plain attention, in one run.

Times the forward pass (no gradient) of

* ``plain``: plain softmax attention (:func:`charact.attention.pipeline.reference_attention`),
* ``clean``: the hardware pipeline without errors (QAT levels, 5-bit ramp ADC on Q.K^T,
  top-5 by the ramp, 5-bit ADC on A.V),
* ``noisy``: the same with code errors injected on Q.K^T and A.V from a pooled lookup table,
* ``chip``: the same with a structured (per-column static + per-conversion) error model
  bound to one simulated chip,

and prints the ratios against the targets: error-injected / clean hardware <= 1.3x and
clean hardware / plain attention <= 3x. Each time is the median of ``--repeat`` runs after
a warm-up, the functions interleaved so that a change of load hits all of them alike; each
ratio (of the medians) comes with the quartiles of the same ratio taken round by round.
On one CPU thread the clock is the thread's CPU time (``time.thread_time``): on a shared
machine the wall clock also counts the time the thread waits for a core, which moved the
plain attention's median between 9 and 22 ms from one run to the next here; with more
threads, and on the GPU, it is the wall clock.

CPU shape: B 2, H 4, SL 384, d 64 on ``--threads`` threads (default 1). With CUDA (or
``--device cuda``) also B 32 H 12 SL 384 and B 4 H 12 SL 4096 (d 64) on the GPU, timed with
``torch.cuda.synchronize``; without CUDA those lines say they were skipped.

The pipeline allocates (B, H, SL, SL) temporaries on every call; glibc's malloc by default
hands such blocks back to the kernel and page-faults them in again on the next call, by an
amount that depends on the heap's history, so the benchmark asks glibc (mallopt) to keep
freed memory and the times measure the computation (``--system-malloc``: as is).

    python benchmarks/bench_attention_cost.py [--threads 1] [--repeat 15] [--model M.json]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from charact.attention.pipeline import (
    AttentionConfig,
    bind_chip,
    reference_attention,
    topkima_attention,
)
from charact.lookup import PVT, ErrorModel, PointErrorModel, StaticPart, error_model_from_samples

ERROR_TARGET = 1.3  # error-injected / clean hardware
CLEAN_TARGET = 3.0  # clean hardware / plain attention
CPU_SHAPES = ((2, 4, 384, 64),)
GPU_SHAPES = ((32, 12, 384, 64), (4, 12, 4096, 64))


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory (see the module notes); False elsewhere."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def error_models(path: str | None, n_codes: int = 32) -> tuple[object, object]:
    """``(pooled table, structured point)``: from ``path``, else synthetic ones (a table
    from Gaussian-ish samples, a static part of 0.5 LSB offset and 0.02 LSB/code gain
    sigma)."""
    if path:
        model = ErrorModel.load(path)
        point = model.point()
        return point.table, point
    rng = np.random.default_rng(0)
    ideal = rng.integers(0, n_codes, 500_000)
    noisy = np.clip(ideal + np.rint(rng.normal(0.2, 0.8, ideal.size)).astype(int), 0,
                    n_codes - 1)
    table = error_model_from_samples(ideal, noisy, n_codes).table()
    static = StaticPart(np.array([0.1, 0.0]), np.diag([0.25, 0.0004]), (n_codes - 1) / 2)
    return table, PointErrorModel(PVT("NOM", 1.0, 27.0), table, table, static)


def run_times(fns: dict[str, Callable[[], object]], repeat: int,
              sync: Callable[[], None], clock: Callable[[], float]) -> dict[str, list[float]]:
    """Seconds of each function in each of ``repeat`` interleaved rounds, after a warm-up."""
    for fn in fns.values():
        fn()
        fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            sync()
            t0 = clock()
            fn()
            sync()
            times[name].append(clock() - t0)
    return times


def spread(values: list[float]) -> tuple[float, float, float]:
    """``(first quartile, median, third quartile)``."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def bench_shape(shape: tuple[int, int, int, int], device: torch.device, repeat: int,
                table: object, point: object, k: int) -> dict[str, list[float]]:
    b, h, sl, d = shape
    g = torch.Generator(device=device).manual_seed(0)
    q, kk, v = (torch.randn(b, h, sl, d, generator=g, device=device) * 0.3 for _ in range(3))
    clean = AttentionConfig.hardware(k=k, av_codes=32)
    noisy = clean.with_(error_model=table, av_error=table)
    chip = bind_chip(clean.with_(error_model=point, av_error=point), chip=0, layer=0)
    gen = torch.Generator(device=device).manual_seed(1)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    cpu_clock = device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.thread_time if cpu_clock else time.perf_counter

    with torch.no_grad():
        return run_times({
            "plain": lambda: reference_attention(q, kk, v),
            "clean": lambda: topkima_attention(q, kk, v, clean),
            "noisy": lambda: topkima_attention(q, kk, v, noisy, generator=gen),
            "chip": lambda: topkima_attention(q, kk, v, chip, generator=gen),
        }, repeat, sync, clock)


def report(shape: tuple[int, int, int, int], device: torch.device, times: dict[str, list[float]],
           where: str) -> None:
    b, h, sl, d = shape
    t = {name: statistics.median(v) for name, v in times.items()}
    print(f"{device.type} B={b} H={h} SL={sl} d={d} ({where}): plain {1e3 * t['plain']:.2f} ms, "
          f"clean {1e3 * t['clean']:.2f} ms, noisy {1e3 * t['noisy']:.2f} ms, "
          f"chip {1e3 * t['chip']:.2f} ms")
    for label, num, den, target in (
        ("error-injected / clean hardware", "noisy", "clean", ERROR_TARGET),
        ("structured chip / clean hardware", "chip", "clean", ERROR_TARGET),
        ("clean hardware / plain attention", "clean", "plain", CLEAN_TARGET),
    ):
        r = t[num] / t[den]
        # the ratio within each interleaved round: its quartiles show how much the load moved
        q1, _, q3 = spread([a / c for a, c in zip(times[num], times[den], strict=True)])
        verdict = "ok" if r <= target else "ABOVE TARGET"
        print(f"  {label:34s} {r:5.2f}x  per round {q1:.2f}-{q3:.2f}x  "
              f"(target <= {target:g}x: {verdict})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeat", type=int, default=15, help="timed runs per function")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", help="code-error model file (default: synthetic models)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: the CPU shape, plus the GPU shapes when CUDA is available")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is (times then include page faults)")
    args = ap.parse_args()
    kept = False if args.system_malloc else keep_freed_memory()
    torch.set_num_threads(args.threads)
    table, point = error_models(args.model)
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}; median of {args.repeat} runs after a warm-up; "
          f"k={args.k}; freed memory {'kept' if kept else 'returned to the kernel'}")
    if args.device in ("auto", "cpu"):
        where = f"{args.threads} thread(s), " + (
            "thread CPU time" if args.threads == 1 else "wall clock")
        for shape in CPU_SHAPES:
            cpu = torch.device("cpu")
            report(shape, cpu, bench_shape(shape, cpu, args.repeat, table, point, args.k),
                   where)
    if args.device in ("auto", "cuda"):
        if not torch.cuda.is_available():
            print("GPU shapes skipped: CUDA is not available")
        else:
            dev = torch.device("cuda")
            name = torch.cuda.get_device_name(dev)
            for shape in GPU_SHAPES:
                report(shape, dev, bench_shape(shape, dev, args.repeat, table, point, args.k),
                       name)
    print(f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
