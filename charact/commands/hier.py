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
        "disagree; then the conversions paired die for die (the composed column computes "
        "the SPICE die's devices): identical-code rate and equivalence tests (TOST) of "
        "the mean error and of sigma; written as a Markdown report.")
    p.add_argument("--spice", required=True, metavar="DIR", help="full-SPICE sweep folder")
    p.add_argument("--composed", required=True, metavar="DIR",
                   help="composed sweep folder")
    p.add_argument("-o", "--out", required=True, help="Markdown report to write")
    p.add_argument("--tol-mean", type=float, default=0.2,
                   help="agreement of the mean error, LSB (default 0.2)")
    p.add_argument("--tol-sigma", type=float, default=0.2,
                   help="agreement of sigma, relative (default 0.2)")
    p.add_argument("--margin-mean", type=float, default=0.2,
                   help="paired equivalence margin of the mean code error, LSB "
                   "(default 0.2)")
    p.add_argument("--margin-sigma", type=float, default=0.1,
                   help="paired equivalence margin of the sigma ratio, relative "
                   "(default 0.1)")
    p.add_argument("--notes", default=None, help="Markdown file appended as notes")
    p.set_defaults(func=cmd_hier_validate)


def cmd_hier_validate(args: argparse.Namespace) -> int:
    from charact.column.validate import paired_report, write_report
    from charact.errors import UserError
    from charact.outputs import check_output_file

    for name in ("tol_mean", "tol_sigma", "margin_mean", "margin_sigma"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v > 0):
            raise UserError(f"--{name.replace('_', '-')} must be finite and positive")
    if not args.margin_sigma < 1:
        raise UserError("--margin-sigma must be below 1 (a relative margin)")
    check_output_file(args.out, "-o")
    command = "charact " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path, pooled = write_report(args.spice, args.composed, args.out, command,
                                args.tol_mean, args.tol_sigma, args.notes,
                                args.margin_mean, args.margin_sigma)
    cols = ["corner", "vdd", "temp", "range", "n_spice", "n_composed", "mean_spice",
            "mean_composed", "sigma_spice", "sigma_composed", "verdict"]
    fmt = {"float_format": lambda x: f"{x:.3f}", "index": False}
    print(pooled[cols].to_string(**fmt))
    try:
        eq = paired_report(args.spice, args.composed, args.margin_mean, args.margin_sigma)
    except UserError as exc:
        print(f"paired: not possible ({exc})")
    else:
        if eq.empty:
            print("paired: no conversion ran both ways")
        else:
            print("paired (same dies both ways):")
            print(eq[["corner", "vdd", "temp", "pairs", "clusters", "same_code",
                      "mean_d", "sd_d", "p_mean", "equiv_mean", "sigma_ratio", "p_sigma",
                      "equiv_sigma"]].to_string(**fmt))
    print(f"wrote {path}")
    return 0
