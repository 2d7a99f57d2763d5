"""``charact decode``: latency and energy per generated token against context length, for
gain-cell attention and topkima side by side (:mod:`charact.rollup.decode`)."""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import platform
import shlex
from pathlib import Path
from typing import Any

from charact import __version__
from charact.errors import UserError

MODEL_FLAGS: tuple[tuple[str, str], ...] = (
    ("write", "gc_write pvt_table: write time and energy per cell"),
    ("readout", "gc_readout grid_table: T_max (t_sat) and readout energy (gain)"),
    ("multiply", "gc_multiply grid_table: charge per pair multiply"),
    ("retention", "gc_retention grid_table: retention time at 27 and 85 °C"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode roll-up: latency/energy per generated token vs context length "
        "(gain cells and topkima)",
        description="Latency and energy per generated token against context length L, for "
        "gain-cell attention (sliding window W, values from fitted gain-cell models) and "
        "topkima (growing KV cache, paper eqs. 3-4 with one query), with the gain cells' "
        "retention check at 27 and 85 °C. Values in SI units (s, J). Prints a table and "
        "writes CSV, Markdown, a figure and provenance.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="decode TOML (sections decode, "
                   "macro, energy, arch, models, sweep); e.g. examples/decode_rollup.toml")
    for kind, text in MODEL_FLAGS:
        p.add_argument(f"--gc-{kind}", metavar="MODEL.json", help=text)
    p.add_argument("--shipped-models", action="store_true",
                   help="take every gain-cell model not given from models/gaincell_*")
    p.add_argument("--corner", help="corner of the model point (default NOM)")
    p.add_argument("--vdd", type=float, help="supply of the model point, V (default 1.0)")
    p.add_argument("--temp", type=float, help="temperature of the model point, °C (default 27)")
    p.add_argument("--extrapolate", action="store_true",
                   help="allow the models outside their characterized range")
    p.add_argument("--alpha-from", metavar="PARQUET",
                   help="topkima: selection_stats.parquet of the attention pipeline")
    p.add_argument("--delays-from", metavar="MODEL.json", action="append", default=[],
                   help="topkima: pvt_table delay/energy model (repeatable)")
    p.add_argument("--window", type=int, metavar="W", help="gain-cell window (tokens)")
    p.add_argument("--layers", type=int, metavar="N", help="layers of the model")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SEC.NAME=VALUE",
                   help="any input, e.g. --set decode.gc_pulse_frac=0.3 or --set macro.k=8")
    p.add_argument("--lengths", metavar="N,N,...",
                   help="context lengths (default 64,128,...,8192)")
    p.add_argument("--no-figures", action="store_true", help="write tables only")
    p.add_argument("-o", "--outdir", default="results/decode",
                   help="output folder (default results/decode)")
    p.set_defaults(func=run)


def _explicit(args: argparse.Namespace) -> tuple[dict[str, tuple[Any, str]],
                                                 dict[str, tuple[Any, str]]]:
    dec: dict[str, tuple[Any, str]] = {}
    rollup: dict[str, tuple[Any, str]] = {}
    if args.window is not None:
        dec["window"] = (args.window, "--window")
    if args.layers is not None:
        dec["n_layers"] = (args.layers, "--layers")
    for item in args.sets:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise UserError(f"--set takes SECTION.NAME=VALUE, got {item!r}")
        target = dec if section == "decode" else rollup
        target[name if section == "decode" else key.strip()] = (value.strip(),
                                                                f"--set {key.strip()}")
    return dec, rollup


def _command_line(args: argparse.Namespace) -> str:
    parts = ["charact", "decode"]
    for key, value in vars(args).items():
        if key in ("func", "command") or value in (None, False, []):
            continue
        flag = "--set" if key == "sets" else "--" + key.replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            parts += [flag] if v is True else [flag, shlex.quote(str(v))]
    return " ".join(parts)


def _model_record(path: str) -> dict[str, Any]:
    """A model file's checksum and the command that made it (for the provenance)."""
    import json

    raw = Path(path).read_bytes()
    rec: dict[str, Any] = {"path": path, "sha256": hashlib.sha256(raw).hexdigest()}
    try:
        prov = json.loads(raw).get("provenance", {})
        rec["made_by"] = prov.get("command", "")
        sweep = prov.get("sweep") or {}
        if sweep.get("command"):
            rec["sweep"] = sweep["command"]
    except (ValueError, AttributeError):
        pass
    return rec


def run(args: argparse.Namespace) -> int:
    from charact.outputs import check_output_dir
    from charact.rollup.decode import (
        DEFAULT_LENGTHS,
        GainCellModels,
        gather_decode_inputs,
        load_decode_config,
        parse_lengths,
        run_decode,
        shipped_gaincell_models,
    )
    from charact.rollup.decode_report import summary_lines, write_decode_outputs
    from charact.rollup.inputs import MeasuredSources

    check_output_dir(args.outdir, "-o")  # before any work
    dec: dict[str, tuple[Any, str]] = {}
    rollup: dict[str, tuple[Any, str]] = {}
    cfg_models: dict[str, Any] = {}
    lengths = DEFAULT_LENGTHS
    if args.config:
        cfg = load_decode_config(args.config)
        dec.update(cfg.explicit_decode)
        rollup.update(cfg.explicit_rollup)
        cfg_models = cfg.models
        lengths = cfg.lengths or lengths
    flag_dec, flag_rollup = _explicit(args)
    dec.update(flag_dec)  # flags override the TOML
    rollup.update(flag_rollup)
    if args.lengths:
        lengths = parse_lengths(args.lengths)

    def pick(flag: Any, key: str, default: Any = None) -> Any:
        return flag if flag is not None else cfg_models.get(key, default)

    corner = str(pick(args.corner, "corner", "NOM"))
    try:
        vdd = float(pick(args.vdd, "vdd", 1.0))
        temp = float(pick(args.temp, "temp", 27.0))
    except (TypeError, ValueError):
        raise UserError("[models] vdd and temp must be numbers") from None
    extrapolate = bool(args.extrapolate or cfg_models.get("extrapolate", False))
    paths = {kind: pick(getattr(args, f"gc_{kind}"), f"gc_{kind}") for kind, _ in MODEL_FLAGS}
    if args.shipped_models or cfg_models.get("shipped", False):
        shipped = shipped_gaincell_models()
        for kind in paths:
            paths[kind] = paths[kind] or getattr(shipped, kind)
    models = GainCellModels(corner=corner, vdd=vdd, temp=temp, extrapolate=extrapolate,
                            **paths)
    delays = tuple(args.delays_from) or tuple(cfg_models.get("delays_from", ()))
    sources = MeasuredSources(
        alpha_from=pick(args.alpha_from, "alpha_from"), delays_from=delays,
        corner=corner if delays else None, vdd=vdd if delays else None,
        temp=temp if delays else None, extrapolate=extrapolate)
    setup = gather_decode_inputs(dec, rollup, models, sources)
    result = run_decode(setup, lengths)  # everything is checked before anything is written

    import matplotlib
    import numpy
    import pandas

    from charact.provenance import code_revision

    model_files = {kind: _model_record(p) for kind, p in models.given().items()}
    for p in delays:
        model_files[f"topkima delays {Path(p).name}"] = _model_record(p)
    provenance: dict[str, Any] = {
        "command": _command_line(args),
        "config": args.config or "-",
        "made": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code_revision": code_revision(),
        "versions": f"charact {__version__}, python {platform.python_version()}, "
        f"numpy {numpy.__version__}, pandas {pandas.__version__}, "
        f"matplotlib {matplotlib.__version__}",
        "model_point": f"{corner}, {vdd:g} V, {temp:g} °C",
        "gain-cell models": ", ".join(f"{k}={v['path']}" for k, v in model_files.items()
                                      if not k.startswith("topkima")) or "none (defaults)",
        "seed": "none (deterministic)",
        "model_files": model_files,
    }
    print("\n".join(summary_lines(result)))
    written = write_decode_outputs(result, args.outdir, provenance,
                                   figures=not args.no_figures)
    print(f"\nwrote {len(written)} files to {args.outdir}")
    return 0
