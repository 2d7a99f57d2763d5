"""``charact errortable``: Fig. 4(b) error tables of an IMA column sweep; ``charact
column-cases``: column sweeps side by side."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "errortable", help="error tables (Fig. 4(b)) of an IMA column sweep",
        description="From a column sweep (block ima_column): per corner/VDD/temperature "
        "and ideal value, count, mean error, sigma and quantiles of the converted code "
        "(errortable.csv/.parquet), the MAC transfer and ramp linearity (transfer.csv) "
        "and a plot of simulated against theoretical values (errortable.png).")
    p.add_argument("sweep", metavar="SWEEP_DIR", help="sweep folder or its table.parquet")
    p.add_argument("-o", "--out", default=None, help="output folder (default: the sweep's)")
    p.add_argument("--by", default="code_ideal", choices=["code_ideal", "mac_ideal"],
                   help="ideal value to group by (default code_ideal)")
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    p.set_defaults(func=cmd_errortable)

    p = sub.add_parser(
        "column-cases", help="code error of column sweeps side by side, and paired changes",
        description="Per case (a column sweep folder) and operating point: conversions, "
        "dies, sigma of the code error with its 95 %% interval, mean, mean |error|; with "
        "--pair, the change of |error| between two cases that converted the same patterns "
        "on the same dies (identical codes, clustered SE, Wilcoxon p). Markdown.")
    p.add_argument("cases", nargs="+", metavar="LABEL=SWEEP_DIR",
                   help="a label and a column sweep folder")
    p.add_argument("--pair", action="append", default=[], metavar="BASE:CASE",
                   help="two labels to pair (repeatable)")
    p.add_argument("-o", "--out", default=None, help="write the report to this .md file")
    p.set_defaults(func=cmd_column_cases)


def cmd_errortable(args: argparse.Namespace) -> int:
    from charact.column.errortable import error_table, load_sweep_table, write_error_tables
    from charact.outputs import check_output_dir

    if args.out:
        check_output_dir(args.out, "-o")
    command = "charact " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = write_error_tables(args.sweep, args.out, by=args.by, plot=not args.no_plot,
                               command=command)
    table, _, _ = load_sweep_table(args.sweep)
    errors = error_table(table, args.by)
    summary = errors.groupby(["corner", "vdd", "temp"]).agg(
        values=(args.by, "size"), conversions=("count", "sum"),
        mean_abs_error=("mean_error", lambda s: s.abs().mean()), mean_sigma=("sigma", "mean"))
    print(summary.to_string(float_format=lambda x: f"{x:.3f}"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_column_cases(args: argparse.Namespace) -> int:
    from charact.column.cases import cases_report
    from charact.errors import UserError
    from charact.provenance import write_bytes

    cases: dict[str, str] = {}
    for item in args.cases:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise UserError(f"case {item!r}: write LABEL=SWEEP_DIR")
        if label in cases:
            raise UserError(f"case label {label!r} given twice")
        cases[label] = path
    pairs = []
    for item in args.pair:
        a, sep, b = item.partition(":")
        if not sep or a not in cases or b not in cases:
            raise UserError(f"--pair {item!r}: write BASE:CASE with two of the case labels "
                            f"({', '.join(cases)})")
        pairs.append((a, b))
    if args.out and not args.out.endswith(".md"):
        raise UserError(f"-o {args.out}: the report is markdown, name it *.md")
    command = "charact " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = cases_report(cases, pairs, command)
    if args.out:
        write_bytes(Path(args.out), text.encode())
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
