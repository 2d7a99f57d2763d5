"""``charact lm``: a small byte-level language model on Debian's fortunes text with ideal
sliding-window attention, gain-cell attention, and gain-cell attention after the
co-designed mapping and a short fine-tune, over windows, retention conditions, seeds and
simulated chips.

Spec (``--spec FILE.toml``, ``schema = "charact.lm/1"``; command-line options override
it)::

    [model]      d_model, n_layers, n_heads, context, mlp_ratio
    [train]      steps, batch, lr, weight_decay, warmup, grad_clip   (the ideal model)
    [finetune]   the same fields, plus spread = true|false           (the adapted model)
    [study]      windows, seeds, chips, variants, eval_seqs, calib_seqs, categories,
                 retentions = [{t_token = 1e-7, temp = 27}, ...], adapt_retention = {...}
    [hardware]   GainCellConfig fields (not window, t_token, temp, retention: set per row)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from charact.errors import UserError
from charact.outputs import check_output_dir

SCHEMA = "charact.lm/1"
QUICK = {"model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "context": 32},
         "train": {"steps": 60, "batch": 16}, "finetune": {"steps": 10, "batch": 16},
         "study": {"windows": [8], "chips": 2, "eval_seqs": 16, "calib_seqs": 16,
                   "retentions": [{"t_token": 0.0}, {"t_token": 1e-7, "temp": 27.0}]}}
_PER_ROW = ("window", "t_token", "temp", "retention")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lm",
        help="byte-level language model with gain-cell attention (fortunes text)",
        description="Train a small byte-level transformer on Debian's fortunes text with "
        "sliding-window softmax attention, then evaluate it on gain-cell attention "
        "(lookup models), after the co-designed mapping, and after a short fine-tune with "
        "the hardware in the loop, over windows, retention conditions, seeds and simulated "
        "chips. Writes DIR/{lm.csv,summary.csv,report.md,provenance.json}. Needs torch.",
    )
    p.add_argument("--spec", metavar="FILE.toml", help="study spec (schema charact.lm/1), "
                   "e.g. examples/gaincell_lm.toml")
    p.add_argument("--quick", action="store_true",
                   help="a tiny model and study (seconds; for trying the command)")
    p.add_argument("--windows", type=int, nargs="+", metavar="W", help="sliding windows")
    p.add_argument("--t-token", type=float, nargs="+", metavar="S",
                   help="seconds per token of the retention conditions (0: no droop), "
                   "each at --temp")
    p.add_argument("--temp", type=float, nargs="+", metavar="C",
                   help="temperatures of the retention conditions (default 27)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds")
    p.add_argument("--chips", type=int, help="simulated chips per gain-cell row")
    p.add_argument("--variants", nargs="+", metavar="V",
                   help="rows: ideal gaincell mapped adapted (default all)")
    p.add_argument("--steps", type=int, help="training steps of the ideal model")
    p.add_argument("--finetune-steps", type=int, help="fine-tune steps of the adapted model")
    p.add_argument("--eval-seqs", type=int, help="held-out windows evaluated")
    p.add_argument("--d-model", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--context", type=int)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    p.set_defaults(func=run)


def _section(doc: dict, name: str) -> dict:
    sec = doc.get(name, {})
    if not isinstance(sec, dict):
        raise UserError(f"[{name}] must be a table")
    return dict(sec)


def _build(cls: type, values: dict, where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from exc


def _retention(obj: Any, where: str) -> Any:
    from charact.attention.lm import Retention

    if not isinstance(obj, dict) or "t_token" not in obj:
        raise UserError(f"{where}: a retention condition is {{t_token = S, temp = C}}")
    vals = {k: obj[k] for k in obj}
    for k, v in vals.items():
        if k not in ("t_token", "temp") or isinstance(v, bool) or not isinstance(v, int | float):
            raise UserError(f"{where}: {k} = {v!r} (fields t_token, temp: numbers)")
    return _build(Retention, {k: float(v) for k, v in vals.items()}, where)


def build_spec(doc: dict, args: argparse.Namespace | None = None) -> Any:
    """An :class:`LMStudySpec` from a spec document and command-line overrides; any
    problem is one UserError."""
    from charact.attention.gaincell import GainCellConfig
    from charact.attention.lm import LMConfig, LMStudySpec, LMTrainConfig

    schema = doc.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise UserError(f"spec schema {schema!r} is not {SCHEMA!r}")
    unknown = sorted(set(doc) - {"schema", "model", "train", "finetune", "study", "hardware"})
    if unknown:
        raise UserError(f"unknown spec section {unknown[0]!r}")
    model, train, ft = (_section(doc, n) for n in ("model", "train", "finetune"))
    study, hw = _section(doc, "study"), _section(doc, "hardware")
    a = args
    if a is not None:
        for key, val in (("d_model", a.d_model), ("n_layers", a.layers), ("n_heads", a.heads),
                         ("context", a.context)):
            if val is not None:
                model[key] = val
        if a.steps is not None:
            train["steps"] = a.steps
        if a.finetune_steps is not None:
            ft["steps"] = a.finetune_steps
        for key, val in (("windows", a.windows), ("seeds", a.seeds), ("chips", a.chips),
                         ("variants", a.variants), ("eval_seqs", a.eval_seqs)):
            if val is not None:
                study[key] = val
        if a.t_token is not None or a.temp is not None:
            temps = a.temp or [27.0]
            tts = a.t_token if a.t_token is not None else [1e-7]
            study["retentions"] = [{"t_token": t, "temp": c} for c in temps for t in tts]
    bad = sorted(set(hw) & set(_PER_ROW))
    if bad:
        raise UserError(f"[hardware] {bad[0]} is set per row ([study] windows/retentions)")
    spread = ft.pop("spread", False)
    if not isinstance(spread, bool):
        raise UserError(f"[finetune] spread must be true or false, got {spread!r}")
    kw: dict[str, Any] = {
        "model": _build(LMConfig, model, "[model]"),
        "train": _build(LMTrainConfig, train, "[train]"),
        "hardware": _build(GainCellConfig, hw, "[hardware]"),
        "finetune_spread": spread,
    }
    if ft:
        kw["finetune"] = _build(LMTrainConfig, {"steps": 150, "lr": 1e-3, "warmup": 10, **ft},
                                "[finetune]")
    for key in ("windows", "seeds", "variants", "categories"):
        if key in study:
            val = study.pop(key)
            if not isinstance(val, list):
                raise UserError(f"[study] {key} must be a list")
            kw[key] = tuple(val)
    if "retentions" in study:
        val = study.pop("retentions")
        if not isinstance(val, list):
            raise UserError("[study] retentions must be a list of {t_token, temp}")
        kw["retentions"] = tuple(_retention(r, "[study] retentions") for r in val)
    if "adapt_retention" in study:
        kw["adapt_retention"] = _retention(study.pop("adapt_retention"),
                                           "[study] adapt_retention")
    extra = sorted(set(study) - {f.name for f in fields(LMStudySpec)})
    if extra:
        raise UserError(f"[study]: unknown field {extra[0]!r}")
    return _build(LMStudySpec, {**study, **kw}, "[study]")


def _read_spec(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file not found: {path}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a valid TOML file ({exc})") from exc


def _merge(base: dict, over: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in over.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def summarize(rows: Any) -> Any:
    """Per (variant, window, retention): bits per byte, perplexity and next-byte accuracy
    as mean, std and count over seeds x chips, and the mean evaluation standard error."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(rows)
    keys = ["variant", "window", "retention"]
    out = []
    for key, g in df.groupby(keys, sort=False):
        rec = dict(zip(keys, key, strict=True))
        n = len(g)
        rec["n"] = n
        rec["seeds"] = g["seed"].nunique()
        for col in ("bpc", "ppl", "accuracy"):
            vals = g[col].to_numpy(dtype=float)
            rec[col] = float(vals.mean())
            rec[f"{col}_std"] = float(vals.std(ddof=1)) if n > 1 else math.nan
            rec[f"{col}_se"] = float(vals.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            rec[f"{col}_eval_se"] = float(np.mean(g[f"{col}_se"]))
        out.append(rec)
    return pd.DataFrame(out)


def _fmt(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(summary: Any, prov: dict) -> str:
    """``report.md``: what ran and the table."""
    spec = prov["spec"]
    m, t, ft = spec["model"], spec["train"], spec["finetune"]
    hw = spec["hardware"]
    lines = [
        "# Byte-level language model with gain-cell attention", "",
        f"Command: `{prov['command']}`", "",
        f"Created {prov['created']} ({prov['charact_version']}, revision "
        f"{prov['code_revision']}), {prov['wall_seconds']} s on {prov['threads']} thread(s).",
        "",
        f"Data: Debian `fortunes` (all categories unless listed: "
        f"{', '.join(spec['categories']) or 'all'}), split by entry (seed 0): "
        f"{prov['facts']['train_bytes']} training bytes, {prov['facts']['test_bytes']} "
        f"held-out bytes, of which {spec['eval_seqs']} windows of {m['context']} bytes are "
        "evaluated (all positions).", "",
        f"Model: {m['n_layers']} layers, d_model {m['d_model']}, {m['n_heads']} heads, "
        f"context {m['context']}, MLP x{m['mlp_ratio']}. Ideal training: {t['steps']} steps "
        f"of {t['batch']} windows, AdamW lr {t['lr']}. Fine-tune of `adapted`: {ft['steps']} "
        f"steps, lr {ft['lr']}, gain-cell effects in the loop "
        f"({'with' if spec['finetune_spread'] else 'without'} the per-chip spreads), at "
        f"retention {spec['adapt_retention']['t_token']:g} s/token, "
        f"{spec['adapt_retention']['temp']:g} C.", "",
        "Variants: `ideal` = sliding-window softmax (trained); `gaincell` = its weights on "
        "the gain-cell hardware as they are; `mapped` = the co-designed mapping (per-head "
        "Q/K/V range gains, score and output gains); `adapted` = mapped, then fine-tuned. "
        f"Hardware: Q {hw['n_bits_q']}-bit pulse magnitude + sign, K/V {hw['n_bits_kv']}-bit "
        "stored levels, multiply surface, hard-sigmoid readout, retention droop, per-cell and "
        "per-column spreads of the shipped FreePDK45 gain-cell models; "
        f"seeds {', '.join(map(str, spec['seeds']))}, {spec['chips']} simulated chips per "
        "seed.", "",
        "Spread: `± std` over seeds x chips (n rows); `eval SE` = the standard error of the "
        "mean over the evaluated windows (the same windows in every row, so differences "
        "between rows are more certain than it says).", "",
        "| variant | W | retention | n | bits/byte | eval SE | perplexity | next-byte acc % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, r in summary.iterrows():
        lines.append(
            f"| {r['variant']} | {r['window']} | {r['retention']} | {r['n']} | "
            f"{_fmt(r['bpc'], r['bpc_std'], 3)} | {r['bpc_eval_se']:.3f} | "
            f"{_fmt(r['ppl'], r['ppl_std'], 2)} | "
            f"{_fmt(100 * r['accuracy'], 100 * r['accuracy_std'], 1)} |")
    lines += ["", "Retention: `none` = no droop; `T s@C` = T seconds per token at C "
              "(a key j tokens old has been held j x T).", "",
              "Mapping chosen per layer and head (score gain, output gain, relative error "
              "of the hardware output against the ideal one on the calibration windows):", ""]
    for key, layers in prov["facts"]["mapping"].items():
        for i, lay in enumerate(layers):
            lines.append(f"- {key} layer {i}: score gain "
                         f"{', '.join(f'{g:g}' for g in lay['score_gain'])}; output gain "
                         f"{', '.join(f'{g:.2f}' for g in lay['output_gain'])}; rel. error "
                         f"{', '.join(f'{e:.2f}' for e in lay['rel_error'])}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError as exc:
        raise UserError("charact lm needs torch: pip install 'charact[torch]'") from exc
    from charact.attention.text import fortune_dir
    from charact.provenance import stamp, write_json, write_table

    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    doc = _read_spec(args.spec) if args.spec else {}
    if args.quick:
        doc = _merge(QUICK, doc)
    spec = build_spec(doc, args)
    out = check_output_dir(args.outdir, "--outdir")
    fortune_dir()  # the text must be there before any training
    spec.check_tables()
    torch.set_num_threads(args.threads)
    from charact.attention.lm import run_study

    t0 = time.perf_counter()
    rows, facts = run_study(spec)
    wall = round(time.perf_counter() - t0, 1)
    import pandas as pd

    from charact.attention.gaincell import load_hardware

    table = pd.DataFrame(rows)
    summary = summarize(rows)
    hw_sources = {}
    if any(v != "ideal" for v in spec.variants):
        hw = load_hardware(spec.hardware.with_(window=spec.windows[0]))
        hw_sources = {"models": hw.sources, "multiply_rank_residual": hw.rank_residual}
    prov = stamp(spec=spec.as_dict(), spec_file=args.spec, facts=facts, wall_seconds=wall,
                 threads=args.threads, torch=torch.__version__, gaincell=hw_sources,
                 seeds="training seeds as listed; batches seed s, calibration 10000+s, "
                 "fine-tune batches 20000+s and draws 30000+s, chip c of seed s = 1000 s + c "
                 "(layer l: generator seed 1000003 chip + l + 1), conversion noise 40000+chip")
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "lm.csv", prov)
    write_table(summary, out / "summary.csv", prov)
    from charact.provenance import atomic_path

    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(summary, prov))
    write_json(out / "provenance.json", prov)
    print(summary[["variant", "window", "retention", "n", "bpc", "bpc_std", "accuracy"]]
          .to_string(index=False), file=sys.stdout)
    print(f"wrote {out}/report.md")
    return 0
