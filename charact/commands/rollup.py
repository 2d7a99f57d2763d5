"""``charact rollup``: softmax-macro and attention-module latency/energy (paper eqs. 3-4)."""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import shlex
from typing import Any

from charact import __version__
from charact.errors import UserError

# CLI flag -> roll-up input; values in SI units (seconds), like the TOML.
MACRO_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--d", "macro.d", int, "keys = queries per head (sequence length)"),
    ("--k", "macro.k", int, "top-k"),
    ("--alpha", "macro.alpha", float, "early-stop fraction α in (0, 1]"),
    ("--t-arb", "macro.t_arb", float, "arbiter + encoder delay T_arb (s)"),
    ("--t-wr", "macro.t_wr", float, "Kᵀ write time T_wr (s)"),
    ("--t-nl", "macro.t_nl", float, "digital exp + division per element T_NL (s)"),
    ("--t-pwm", "macro.t_pwm", float, "input pulse time T_pwm (s)"),
    ("--t-ima", "macro.t_ima", float, "full ramp conversion T_ima (s)"),
    ("--t-clk-ima", "macro.t_clk_ima", float, "ramp clock (s)"),
    ("--t-clk-sort", "macro.t_clk_sort", float, "digital sorting clock (s)"),
    ("--e-nl", "energy.e_nl", float, "energy per exp + division (J)"),
    ("--e-sort", "energy.e_sort", float, "energy per sort compare (J)"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rollup",
        help="softmax-macro and attention-module latency/energy (paper eqs. 3-4)",
        description="Evaluate the paper's softmax-macro latency equations (3)-(4), the macro "
        "energies and an attention-module breakdown, from explicit values > measured data "
        "> paper defaults. Values in SI units (s, J). Prints a table and writes CSV, "
        "Markdown and figures.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="roll-up TOML (sections macro, "
                   "energy, arch, measured, sweep); e.g. examples/rollup_paper.toml")
    p.add_argument("--alpha-from", metavar="PARQUET",
                   help="selection_stats.parquet from the attention pipeline (column alpha)")
    p.add_argument("--delays-from", metavar="MODEL.json", action="append", default=[],
                   help="pvt_table lookup model (repeatable: e.g. sense amplifier and "
                   "arbiter/encoder models)")
    p.add_argument("--corner", help="corner of the delay model (e.g. SS)")
    p.add_argument("--vdd", type=float, help="supply of the delay model point (V)")
    p.add_argument("--temp", type=float, help="temperature of the delay model point (°C)")
    p.add_argument("--extrapolate", action="store_true",
                   help="allow the delay model outside its VDD/temperature range")
    for flag, key, typ, text in MACRO_FLAGS:
        p.add_argument(flag, dest=key.replace(".", "__"), type=typ, metavar="X", help=text)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SEC.NAME=VALUE",
                   help="any other input, e.g. --set arch.mux=4 (repeatable)")
    p.add_argument("--seq-lens", metavar="N,N,...",
                   help="sequence lengths of the sweep (default 256,384,512,1024,2048,4096)")
    p.add_argument("--no-figures", action="store_true", help="write tables only")
    p.add_argument("-o", "--outdir", default="results/rollup", help="output folder "
                   "(default results/rollup)")
    p.set_defaults(func=run)


def _explicit_from_args(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    for flag, key, _, _ in MACRO_FLAGS:
        v = getattr(args, key.replace(".", "__"))
        if v is not None:
            out[key] = (v, flag)
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise UserError(f"--set takes SECTION.NAME=VALUE, got {item!r}")
        out[key.strip()] = (value.strip(), f"--set {key.strip()}")
    return out


def _command_line(args: argparse.Namespace) -> str:
    """The command as it was parsed (options that were set), for the provenance header."""
    parts = ["charact", "rollup"]
    for key, value in vars(args).items():
        if key in ("func", "command") or value in (None, False, []):
            continue
        by_key = {k.replace(".", "__"): f for f, k, _, _ in MACRO_FLAGS}
        flag = by_key.get(key) or ("--set" if key == "sets" else "--" + key.replace("_", "-"))
        values = value if isinstance(value, list) else [value]
        for v in values:
            parts += [flag] if v is True else [flag, shlex.quote(str(v))]
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from charact.rollup.inputs import MeasuredSources, gather_inputs, load_config, parse_seq_lens
    from charact.rollup.report import summary_lines, write_outputs
    from charact.rollup.run import DEFAULT_SEQ_LENS, run_rollup

    explicit: dict[str, tuple[Any, str]] = {}
    seq_lens = DEFAULT_SEQ_LENS
    cfg_sources = MeasuredSources()
    if args.config:
        cfg = load_config(args.config)
        explicit.update(cfg.explicit)
        cfg_sources = cfg.sources
        seq_lens = cfg.seq_lens or seq_lens
    explicit.update(_explicit_from_args(args))  # flags override the TOML
    if args.seq_lens:
        seq_lens = parse_seq_lens(args.seq_lens)

    def pick(flag_value: Any, cfg_value: Any) -> Any:
        return cfg_value if flag_value is None else flag_value

    sources = MeasuredSources(
        alpha_from=pick(args.alpha_from, cfg_sources.alpha_from),
        delays_from=tuple(args.delays_from) or cfg_sources.delays_from,
        corner=pick(args.corner, cfg_sources.corner),
        vdd=pick(args.vdd, cfg_sources.vdd),
        temp=pick(args.temp, cfg_sources.temp),
        extrapolate=args.extrapolate or cfg_sources.extrapolate,
    )
    inputs = gather_inputs(explicit, sources)
    result = run_rollup(inputs, seq_lens)  # everything is checked before anything is written

    import numpy
    import pandas

    provenance = {
        "command": _command_line(args),
        "config": args.config or "-",
        "made": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": f"charact {__version__}, python {platform.python_version()}, "
        f"numpy {numpy.__version__}, pandas {pandas.__version__}",
        "seed": "none (deterministic)",
    }
    print("\n".join(summary_lines(result)))
    written = write_outputs(result, args.outdir, provenance, figures=not args.no_figures)
    print(f"\nwrote {len(written)} files to {args.outdir}")
    return 0
