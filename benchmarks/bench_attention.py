"""Cost of error injection in the topkima attention forward pass.

Times, at sequence length 384 and head size 64 (BERT-base's head, the paper's SQuAD
setting), the forward pass of

* plain softmax attention,
* the hardware pipeline without errors (QAT levels, 5-bit ramp ADC, top-5),
* the same with code errors injected on Q.K^T and A.V from a lookup error model,

and prints the ratio error-injected / clean (goal <= 1.5x). The error model is a file
given with --model, else one made from synthetic samples through the lookup API.

    python benchmarks/bench_attention.py [--model models/NAME.json] [--threads 1]
"""

from __future__ import annotations

import argparse
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


def best_of(fns: list, repeat: int) -> list[float]:
    """Best time of each function; runs are interleaved so load changes hit all alike."""
    for fn in fns:
        fn()  # warm up
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="code-error model file (default: synthetic)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table = ErrorModel.load(args.model).table() if args.model else synthetic_table()
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, args.seq, args.dim)
    q, k, v = (torch.randn(shape, generator=g) * 0.3 for _ in range(3))
    clean = AttentionConfig.hardware(k=args.k, av_codes=table.n_codes)
    noisy = clean.with_(error_model=table, av_error=table)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        t_plain, t_clean, t_noisy = best_of([
            lambda: reference_attention(q, k, v),
            lambda: topkima_attention(q, k, v, clean),
            lambda: topkima_attention(q, k, v, noisy, generator=gen),
        ], args.repeat)
    n_codes_drawn = args.batch * args.heads * args.seq * (args.seq + args.dim)
    print(f"shape B={args.batch} H={args.heads} SL={args.seq} d={args.dim}, k={args.k}, "
          f"{args.threads} thread(s), best of {args.repeat}")
    print(f"plain softmax attention      {1e3 * t_plain:8.2f} ms")
    print(f"hardware pipeline, no error  {1e3 * t_clean:8.2f} ms")
    print(f"hardware pipeline, + errors  {1e3 * t_noisy:8.2f} ms "
          f"({n_codes_drawn / 1e6:.2f} M codes drawn)")
    print(f"ratio error-injected / clean hardware: {t_noisy / t_clean:.2f}x (goal <= 1.5x)")
    print(f"ratio error-injected / plain attention: {t_noisy / t_plain:.2f}x")


if __name__ == "__main__":
    main()
