"""Time drawing noisy ADC codes from a code-error model (goal: 10^7 codes well under 1 s).

    python benchmarks/bench_lookup_sampling.py [--n 10000000] [--repeats 3]

The model is a synthetic 32-code table (code = ideal + round(N(0.3, 1.2))), built through
the public API; the ideal codes are a (n,) int32 array / tensor. Prints the best of
``repeats`` runs (the first call also builds the alias tables and is reported apart).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from charact.lookup import PVT, error_model_from_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    ideal_fit = rng.integers(0, 32, 200_000)
    codes = np.clip(ideal_fit + np.round(rng.normal(0.3, 1.2, ideal_fit.size)), 0, 31)
    table = error_model_from_samples(ideal_fit, codes.astype(np.int64), 32,
                                     PVT("NOM", 1.0, 27.0)).table()
    ideal = rng.integers(0, 32, args.n).astype(np.int32)

    def run(label: str, fn) -> None:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        print(f"{label:<22} {args.n:.0e} codes: {best:.3f} s best of {args.repeats} "
              f"({args.n / best / 1e6:.1f} M samples/s); first call {first:.3f} s")

    gen = np.random.default_rng(1)
    run("numpy", lambda: table.sample(ideal, gen))
    try:
        import torch
    except ImportError:
        print("torch not installed: torch timing skipped")
        return
    torch.set_num_threads(1)
    ideal_t = torch.from_numpy(ideal)
    tgen = torch.Generator().manual_seed(1)
    run("torch (1 thread)", lambda: table.sample(ideal_t, tgen))
    torch.set_num_threads(2)
    run("torch (2 threads)", lambda: table.sample(ideal_t, tgen))
    # the clean reference: one uniform draw of the same size, the floor of any sampler
    run("torch.randint alone", lambda: torch.randint(0, 1 << 31, (args.n,), generator=tgen,
                                                     dtype=torch.int32))


if __name__ == "__main__":
    main()
