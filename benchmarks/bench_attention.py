"""Cost of error injection in the topkima attention forward pass.

Times, at sequence length 384 and head size 64 (BERT-base's head, the paper's SQuAD
setting), the forward pass of

* plain softmax attention,
* the hardware pipeline without errors (QAT levels, 5-bit ramp ADC, top-5),
* the same with code errors injected on Q.K^T and A.V from a lookup error model,

and prints the ratio error-injected / clean (goal <= 1.5x), best and median of interleaved
runs with the load average (the machine may be shared), and the time of the sampler alone
on the Q.K^T codes. The error model is a file given with --model, else one made from
synthetic samples through the lookup API.

    python benchmarks/bench_attention.py [--model models/NAME.json] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    args = ap.parse_args()
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
    load0 = os.getloadavg()[0]
    with torch.no_grad():
        runs = timings([
            lambda: reference_attention(q, k, v),
            lambda: topkima_attention(q, k, v, clean),
            lambda: topkima_attention(q, k, v, noisy, generator=gen),
            lambda: table.sample(ideal, gen),
        ], args.repeat)
    t_plain, t_clean, t_noisy, t_sample = (min(r) for r in runs)
    m_clean, m_noisy = (statistics.median(r) for r in runs[1:3])
    n_codes_drawn = args.batch * args.heads * args.seq * (args.seq + args.dim)
    print(f"shape B={args.batch} H={args.heads} SL={args.seq} d={args.dim}, k={args.k}, "
          f"{args.threads} thread(s), best (median) of {args.repeat}; load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"plain softmax attention      {1e3 * t_plain:8.2f} ms")
    print(f"hardware pipeline, no error  {1e3 * t_clean:8.2f} ms ({1e3 * m_clean:.2f})")
    print(f"hardware pipeline, + errors  {1e3 * t_noisy:8.2f} ms ({1e3 * m_noisy:.2f}) "
          f"({n_codes_drawn / 1e6:.2f} M codes drawn)")
    print(f"  of which sampling the Q.K^T codes alone {1e3 * t_sample:.2f} ms "
          f"({ideal.numel() / 1e6:.2f} M codes)")
    print(f"ratio error-injected / clean hardware: {t_noisy / t_clean:.2f}x best, "
          f"{m_noisy / m_clean:.2f}x median (goal <= 1.5x)")
    print(f"ratio error-injected / plain attention: {t_noisy / t_plain:.2f}x")


if __name__ == "__main__":
    main()
