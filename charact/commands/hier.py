"""``charact hier-validate``: the composed column against full-column SPICE."""

from __future__ import annotations

import argparse
import math
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hier-validate", help="compare a composed column sweep with a full-SPICE one",
        description="Per corner/VDD/temperature and ideal code: code-error mean and sigma "
        "of the full-SPICE (ima_column) and the composed (ima_column_composed) sweeps, "
        "the fraction of conversions more than one LSB off both ways, and where they "
        "disagree; written as a Markdown report.")
    p.add_argument("--spice", required=True, metavar="DIR", help="full-SPICE sweep folder")
    p.add_argument("--composed", required=True, metavar="DIR",
                   help="composed sweep folder")
    p.add_argument("-o", "--out", required=True, help="Markdown report to write")
    p.add_argument("--tol-mean", type=float, default=0.2,
                   help="agreement of the mean error, LSB (default 0.2)")
    p.add_argument("--tol-sigma", type=float, default=0.2,
                   help="agreement of sigma, relative (default 0.2)")
    p.add_argument("--notes", default=None, help="Markdown file appended as notes")
    p.set_defaults(func=cmd_hier_validate)


def cmd_hier_validate(args: argparse.Namespace) -> int:
    from charact.column.validate import write_report
    from charact.errors import UserError
    from charact.outputs import check_output_file

    if not (math.isfinite(args.tol_mean) and math.isfinite(args.tol_sigma)
            and args.tol_mean > 0 and args.tol_sigma > 0):
        raise UserError("--tol-mean and --tol-sigma must be finite and positive")
    check_output_file(args.out, "-o")
    command = "charact " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path, pooled = write_report(args.spice, args.composed, args.out, command,
                                args.tol_mean, args.tol_sigma, args.notes)
    cols = ["corner", "vdd", "temp", "range", "n_spice", "n_composed", "mean_spice",
            "mean_composed", "sigma_spice", "sigma_composed", "verdict"]
    print(pooled[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {path}")
    return 0
