"""Cost of error injection in the topkima attention forward pass.

Times, at sequence length 384 and head size 64 (BERT-base's head, the paper's SQuAD
setting), the forward pass of

* plain softmax attention,
* the hardware pipeline without errors (QAT levels, 5-bit ramp ADC, top-5),
* the same with code errors injected on Q.K^T and A.V from a lookup error model,

and prints the ratio error-injected / clean (goal <= 1.5x): the best of interleaved runs in
each of several fresh processes, and the median over the processes, with the load average
(the machine may be shared); and the time of the sampler alone
on the Q.K^T codes. The error model is a file given with --model, else one made from
synthetic samples through the lookup API.

Both pipelines allocate (B, H, SL, SL) temporaries on every call. By default glibc's
malloc hands such blocks back to the kernel when they are freed, and every call then
page-faults them in again, by an amount that depends on the heap's history: the clean
pipeline's best time moved between 13 and 19 ms from one process to the next, which made
the ratio anything from 0.95x to 1.4x. The benchmark therefore asks glibc (mallopt) to keep
freed memory, so the times measure the computation; --system-malloc measures as is.

    python benchmarks/bench_attention.py [--model models/NAME.json] [--threads 1]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from charact.attention.pipeline import AttentionConfig, reference_attention, topkima_attention
from charact.lookup import ErrorModel, error_model_from_samples


def synthetic_table(n_codes: int = 32):
    rng = np.random.default_rng(0)
    ideal = rng.integers(0, n_codes, 500_000)
    noisy = np.clip(ideal + np.rint(rng.normal(0.2, 0.8, ideal.size)).astype(int), 0, n_codes - 1)
    return error_model_from_samples(ideal, noisy, n_codes).table()


def keep_freed_memory() -> bool:
    """Ask glibc's malloc never to return freed memory to the kernel (see the module notes);
    False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def timings(fns: list, repeat: int) -> list[list[float]]:
    """All times of each function; runs are interleaved so load changes hit all alike."""
    for fn in fns:
        fn()  # warm up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return times


def measure(args: argparse.Namespace) -> dict:
    """Best and median times (s) of the four functions in this process."""
    kept = False if args.system_malloc else keep_freed_memory()
    torch.set_num_threads(args.threads)
    table = ErrorModel.load(args.model).table() if args.model else synthetic_table()
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, args.seq, args.dim)
    q, k, v = (torch.randn(shape, generator=g) * 0.3 for _ in range(3))
    clean = AttentionConfig.hardware(k=args.k, av_codes=table.n_codes)
    noisy = clean.with_(error_model=table, av_error=table)
    gen = torch.Generator().manual_seed(1)
    ideal = torch.randint(0, table.n_codes, (args.batch, args.heads, args.seq, args.seq),
                          generator=g, dtype=torch.int32)
    with torch.no_grad():
        runs = timings([
            lambda: reference_attention(q, k, v),
            lambda: topkima_attention(q, k, v, clean),
            lambda: topkima_attention(q, k, v, noisy, generator=gen),
            lambda: table.sample(ideal, gen),
        ], args.repeat)
    names = ("plain", "clean", "noisy", "sample")
    out = {f"best_{n}": min(r) for n, r in zip(names, runs, strict=True)}
    out.update({f"median_{n}": statistics.median(r) for n, r in zip(names, runs, strict=True)})
    out["kept"] = kept
    out["n_sampled"] = ideal.numel()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="code-error model file (default: synthetic)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--processes", type=int, default=5,
                    help="fresh processes to measure in, one after the other (default 5)")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is (times then include page faults)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    load0 = os.getloadavg()[0]
    child_argv = [*sys.argv[1:], "--child"]
    per: list[dict] = []
    for _ in range(max(1, args.processes)):
        done = subprocess.run([sys.executable, __file__, *child_argv], check=True,
                              capture_output=True, text=True)
        per.append(json.loads(done.stdout.strip().splitlines()[-1]))
    ms = {key: statistics.median(p[key] for p in per) for key in per[0] if key != "kept"}
    n_codes_drawn = args.batch * args.heads * args.seq * (args.seq + args.dim)
    print(f"shape B={args.batch} H={args.heads} SL={args.seq} d={args.dim}, k={args.k}, "
          f"{args.threads} thread(s); best of {args.repeat} interleaved runs per process, "
          f"median over {len(per)} processes; load average {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; freed memory "
          f"{'kept' if per[0]['kept'] else 'returned to the kernel'}")
    print(f"plain softmax attention      {1e3 * ms['best_plain']:8.2f} ms")
    print(f"hardware pipeline, no error  {1e3 * ms['best_clean']:8.2f} ms")
    print(f"hardware pipeline, + errors  {1e3 * ms['best_noisy']:8.2f} ms "
          f"({n_codes_drawn / 1e6:.2f} M codes drawn)")
    print(f"  of which sampling the Q.K^T codes alone {1e3 * ms['best_sample']:.2f} ms "
          f"({ms['n_sampled'] / 1e6:.2f} M codes)")
    ratios = [p["best_noisy"] / p["best_clean"] for p in per]
    print("ratio error-injected / clean hardware per process: "
          + " ".join(f"{r:.2f}x" for r in ratios))
    print(f"ratio error-injected / clean hardware: {statistics.median(ratios):.2f}x "
          f"(median of the processes; goal <= 1.5x)")
    print(f"ratio error-injected / plain attention: "
          f"{statistics.median(p['best_noisy'] / p['best_plain'] for p in per):.2f}x")


if __name__ == "__main__":
    main()
