"""``charact errortable``: Fig. 4(b) error tables of an IMA column sweep."""

from __future__ import annotations

import argparse
import shlex
import sys


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
