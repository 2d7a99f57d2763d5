"""``charact accuracy``: accuracy of the topkima attention over k, training scheme, crossbar
size and injected error, on a small ViT (Fashion-MNIST by default, digits for quick runs).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from charact.errors import UserError
from charact.outputs import check_name, check_output_dir

QUICK = {
    "dataset": "digits", "n_train": None, "epochs": 12, "lr": 2e-3, "ks": ["2", "5", "all"],
    "seeds": [0],
    "crossbars": ["none", "paper128"], "dim": 32, "depth": 2, "heads": 2,
}
FULL_DEFAULTS = {
    "dataset": "fashion-mnist", "n_train": 60000, "epochs": 4, "lr": 2e-3,
    "ks": ["1", "2", "5", "10", "20", "all"],
    "seeds": [0, 1, 2], "crossbars": ["none", "paper128", "paper256"], "dim": 64, "depth": 2,
    "heads": 4,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "accuracy",
        help="accuracy of top-k in-memory-ADC attention (ViT, Fashion-MNIST)",
        description="Train small ViTs with hardware-faithful attention (QAT, ramp-ADC top-k, "
        "TFCBP) and sweep k, training scheme, crossbar size and injected error over seeds. "
        "Writes results/accuracy/RUN/{accuracy.parquet,accuracy.md,selection_stats.parquet,"
        "provenance.json} and figures. Needs torch: pip install 'charact[torch]'.",
    )
    p.add_argument("--quick", action="store_true",
                   help="scikit-learn digits, 1 seed, k 2/5/all, crossbar none/paper128, the "
                   "shipped error model if any: tens of seconds")
    p.add_argument("--dataset", choices=("fashion-mnist", "digits"), help="default fashion-mnist")
    p.add_argument("--data-root", help="folder of the Fashion-MNIST IDX files "
                   "(default: the Debian package dataset-fashion-mnist)")
    p.add_argument("--n-train", type=int, help="use the first N training images (default "
                   "all: 60000 for fashion-mnist, all digits for --quick)")
    p.add_argument("--n-test", type=int, help="use the first N test images (default all)")
    p.add_argument("--epochs", type=int, help="training epochs (default 4; 12 for --quick)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float,
                   help="peak AdamW learning rate, after a 5%% warm-up, cosine decay, "
                   "gradients clipped to norm 1 (default 2e-3)")
    p.add_argument("--softmax-warmup", type=float, default=0.05,
                   help="fraction of the steps a top-k (TFCBP) model first trains with the "
                   "full softmax (default 0.05)")
    p.add_argument("--dim", type=int, help="model width (default 64)")
    p.add_argument("--depth", type=int, help="encoder blocks (default 2)")
    p.add_argument("--heads", type=int, help="attention heads (default 4)")
    p.add_argument("--k", nargs="+", dest="ks", metavar="K",
                   help="k values, integers or 'all' (default 1 2 5 10 20 all)")
    p.add_argument("--scheme", nargs="+", dest="schemes", choices=("tfcbp", "inference", "full"),
                   help="training schemes (default all three)")
    p.add_argument("--crossbar", nargs="+", dest="crossbars", metavar="SIZE",
                   help="crossbar sizes (Fig. 4(c)): none, R (square), RxC, or paper128/"
                   "paper256 = the paper's 128/256 crossbars scaled to this model: same K "
                   "precision (rows: 64 replica + d_k x 1 ternary cell / 3 cells) and same "
                   "split of the keys over columns (thirds / two thirds + one third; k_i = "
                   "2,2,1 / 3,2 at k 5); on the default ViT (d_k 16, 65 tokens) 80x22 and "
                   "112x44. A literal 128 or 256 holds a whole head here and changes nothing "
                   "(default none paper128 paper256)")
    p.add_argument("--crossbar-k", type=int, default=5, help="k of the sub-top-k runs (default 5)")
    p.add_argument("--error-model", nargs="*", dest="error_models", metavar="MODEL",
                   help="code-error model files (charact.lookup format) injected on Q.K^T and "
                   "A.V at evaluation")
    p.add_argument("--error-k", type=int, default=5, help="k of the error runs (default 5)")
    p.add_argument("--pvt", metavar="CORNER/VDD/TEMP",
                   help="the error models' PVT point, e.g. SS/1/125 (default: each model's "
                   "nominal point)")
    p.add_argument("--chips", type=int,
                   help="simulated chips per error setting: independent draws of the "
                   "per-column static errors, each evaluated with the same trained weights on "
                   "the same test set; reports the mean over chips and the 5th percentile "
                   "(default 1, or 10 when a model has a static part)")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel training processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where data, models and error generators live: auto = cuda when "
                   "torch sees a CUDA GPU, else cpu (default auto). Runs are reproducible per "
                   "device; CPU and GPU numbers differ (error draws, summation order, TF32)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (torch.use_deterministic_algorithms) and no "
                   "TF32, so repeated GPU runs agree; slower, and the GPU still differs "
                   "from the CPU")
    p.add_argument("--stats-queries", type=int, default=16,
                   help="test images whose ramp statistics are recorded per setting (default 16)")
    p.add_argument("--error-on", choices=("both", "qk", "av"), default="both",
                   help="inject the error model on Q.K^T and A.V (both, as the paper does), "
                   "on the top-k ADC only (qk), or on A.V only (av)")
    p.add_argument("--reuse", metavar="RUN_DIR",
                   help="load trained models from an earlier run folder (its models/) where "
                   "data, model, training and seed match, instead of training them")
    p.add_argument("--run", help="run name: one folder name under --out (letters, digits, "
                   "- _ .; default 'quick' or 'default')")
    p.add_argument("--out", default="results/accuracy",
                   help="output root (default results/accuracy)")
    p.set_defaults(func=run)


def _shipped_error_model() -> str | None:
    """The first code-error model shipped in models/ that loads, if any."""
    from charact.lookup import ErrorModel
    from charact.paths import models_dir

    for path in sorted(Path(models_dir()).glob("*.json")):
        try:
            ErrorModel.load(path)
        except UserError:
            continue
        return str(path)
    return None


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError("charact accuracy needs torch: pip install 'charact[torch]'") from exc
    from charact.attention import experiment
    from charact.attention.device import resolve_device
    from charact.attention.settings import parse_crossbar, parse_k, parse_pvt

    base = QUICK if args.quick else FULL_DEFAULTS
    pick = {key: getattr(args, key, None) for key in base}
    pick = {key: (base[key] if val is None else val) for key, val in pick.items()}
    if args.error_models is not None:
        errors = list(args.error_models)
    elif args.quick:
        shipped = _shipped_error_model()
        errors = [shipped] if shipped else []
    else:
        errors = []
    for e in errors:
        if not Path(e).is_file():
            raise UserError(f"error model file not found: {e}")
    # every numeric flag, before any data is loaded or a model trained
    for name in ("n_train", "n_test", "epochs", "jobs", "threads", "batch_size", "dim",
                 "depth", "heads", "crossbar_k", "error_k", "chips"):
        val = pick[name] if name in pick else getattr(args, name, None)
        if val is not None and val < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {val}")
    if not (math.isfinite(pick["lr"]) and pick["lr"] > 0):
        raise UserError(f"--lr must be a finite number > 0, got {pick['lr']}")
    if not (math.isfinite(args.softmax_warmup) and 0 <= args.softmax_warmup < 1):
        raise UserError(f"--softmax-warmup must be in [0, 1), got {args.softmax_warmup}")
    if args.stats_queries < 0:
        raise UserError(f"--stats-queries must be >= 0, got {args.stats_queries}")
    negative = [s for s in pick["seeds"] if s < 0]
    if negative:
        raise UserError(f"--seeds must be integers >= 0, got {negative[0]}")
    # a missing GPU is one line here, before any data is loaded or a model trained
    device = resolve_device(args.device)
    pvt = None if args.pvt is None else parse_pvt(args.pvt)
    if not errors and (pvt is not None or args.chips is not None):
        flag = "--pvt" if pvt is not None else "--chips"
        raise UserError(f"{flag} applies to injected errors; give --error-model MODEL")
    if pvt is not None:
        # every model must have the point: refused here, before any data or training
        experiment.load_error_tables(tuple(errors), pvt)
    run_name = check_name(args.run or ("quick" if args.quick else "default"), "--run")
    # the run folder is checked before training, not when the results are written
    check_output_dir(Path(args.out) / run_name, "--out/--run")
    spec = experiment.AccuracySpec(
        run=run_name,
        dataset=pick["dataset"], data_root=args.data_root,
        n_train=pick["n_train"], n_test=args.n_test, epochs=pick["epochs"],
        batch_size=args.batch_size, lr=pick["lr"], softmax_warmup=args.softmax_warmup,
        dim=pick["dim"], depth=pick["depth"], heads=pick["heads"],
        ks=tuple(parse_k(k) for k in pick["ks"]),
        schemes=tuple(args.schemes or ("tfcbp", "inference", "full")),
        crossbars=tuple(parse_crossbar(c) for c in pick["crossbars"]),
        crossbar_k=args.crossbar_k, error_models=tuple(errors), error_k=args.error_k,
        error_on=args.error_on, pvt=pvt, chips=args.chips,
        seeds=tuple(pick["seeds"]), stats_queries=args.stats_queries, reuse=args.reuse,
        jobs=args.jobs,
        threads=args.threads, out_root=args.out, device=device,
        deterministic=args.deterministic,
    )
    if args.reuse is not None and not (Path(args.reuse) / "models").is_dir():
        raise UserError(f"--reuse {args.reuse}: no models/ folder from an earlier run there")
    if spec.dim % spec.heads:
        raise UserError(f"--dim {spec.dim} is not a multiple of --heads {spec.heads}")
    out = experiment.run_accuracy(spec, argv=sys.argv[1:])
    print(f"wrote {out}/accuracy.md")
    return 0
