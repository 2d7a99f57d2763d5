"""``charact fit``, ``charact export`` and ``charact show``: lookup models from sweeps."""

from __future__ import annotations

import argparse
import hashlib
import math
import shlex
from pathlib import Path

from charact.errors import UserError
from charact.outputs import check_output_dir, check_output_file

KINDS = ("auto", "code_error", "pvt_table", "grid_table")
# A code-error model holds n_codes x n_codes tables per PVT point (and the fit builds
# larger intermediates): 1024 codes is a 10-bit ADC, far beyond the 5-bit column.
MIN_CODES, MAX_CODES, DEFAULT_CODES = 2, 1024, 32
DEFAULT_SMOOTHING = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit", help="fit a sweep folder into a lookup-model file",
        description="Fit a sweep's table.parquet into a versioned lookup-model file: a "
        "code-error model (P(code | ideal code) per PVT point) when the table has "
        "'code_ideal', else a PVT table of mean/sigma of its numeric measurements.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR")
    p.add_argument("-o", "--output", required=True, metavar="models/NAME.json",
                   help="the model file to write (.json)")
    p.add_argument("--kind", choices=KINDS, default="auto",
                   help="auto: code_error if the table has code_ideal, grid_table if the "
                   "sweep's block declares lookup axes (the gain-cell blocks), else pvt_table")
    p.add_argument("--values", default=None, metavar="COL1,COL2",
                   help="pvt_table: the columns to tabulate (default: all numeric "
                   "measurement columns)")
    p.add_argument("--by", default=None, metavar="COL1,COL2",
                   help="pvt_table: condition columns (e.g. vcm) that split each value; "
                   "default: the spec's [conditions] axes found in the table. grid_table: "
                   "the interpolation axes; default: the block's lookup axes")
    p.add_argument("--n-codes", type=int, default=None,
                   help=f"code_error only (refused for a pvt_table): number of ADC codes, "
                   f"{MIN_CODES} to {MAX_CODES} (default {DEFAULT_CODES})")
    p.add_argument("--smoothing", type=float, default=None,
                   help="code_error only (refused for a pvt_table): pseudo-samples of the "
                   "Gaussian prior per ideal code, finite and >= 0 "
                   f"(default {DEFAULT_SMOOTHING:g})")
    p.add_argument("--unstructured", action="store_true",
                   help="code_error only: fit only the table pooled over columns, without "
                   "the per-column static part (offset, gain error) that is fitted when the "
                   "table has seed, die, col")
    p.set_defaults(func=run_fit)

    p = subparsers.add_parser(
        "export", help="write a model's or a sweep's error table as CSV/Parquet",
        description="Write the error table (one row per ideal code per PVT point: count, "
        "mean error, sigma, quantiles) or a PVT table (one row per grid point per value) "
        "of a model file or a sweep folder, with its provenance.")
    p.add_argument("source", metavar="MODEL_OR_SWEEP")
    p.add_argument("--csv", action="store_true", help="write CSV (the default)")
    p.add_argument("--parquet", action="store_true", help="write Parquet")
    p.add_argument("-o", "--outdir", default=None, metavar="OUTDIR",
                   help="output folder (default: next to the input)")
    p.add_argument("--n-codes", type=int, default=DEFAULT_CODES,
                   help=f"sweep input: number of ADC codes, {MIN_CODES} to {MAX_CODES}")
    p.set_defaults(func=run_export)

    p = subparsers.add_parser(
        "show", help="summarise a model file, optionally plot it",
        description="Print a model file's summary; --plot writes a Fig. 4(b)-style figure "
        "(converted against ideal code) or, for a PVT table, the values against VDD.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--plot", default=None, metavar="PATH.png", help="write the figure here")
    p.set_defaults(func=run_show)


def _command_line(args: argparse.Namespace, positional: str) -> str:
    """The command as parsed (sys.argv is not the argv when called as cli.main([...]))."""
    parts = ["charact", args.command, shlex.quote(str(getattr(args, positional)))]
    for key, value in sorted(vars(args).items()):
        if key in ("func", "command", positional) or value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise UserError("an empty column list was given")
    return cols


def _condition_columns(manifest: dict, table_columns: list[str]) -> list[str]:
    """The spec's extra sweep axes (a comparator's vcm, say) present in the table."""
    spec = manifest.get("spec")
    conds = spec.get("conditions") if isinstance(spec, dict) else None
    if not isinstance(conds, dict):
        return []
    # the spec's [conditions] also holds the corner/vdd/temp axes: those are the grid
    return [c for c in conds if c in table_columns and c not in ("corner", "vdd", "temp")]


def _short_list(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _fit_pvt(table, manifest: dict, prov: dict, values: list[str] | None,
             by: list[str] | None, units: dict[str, str]):
    from charact.lookup import fit as fitting

    if by is None:
        conditions = _condition_columns(manifest, list(table.columns))
        # an axis with a single value splits nothing: it would only rename every value
        by = [c for c in conditions if table[c].nunique() > 1]
        if values is None:
            values = fitting.measurement_columns(table, conditions)
    return fitting.fit_pvt_table(table, values, prov, by=by, units=units)


def _fit_grid(table, manifest: dict, prov: dict, values: list[str] | None,
              axes: list[str] | None, units: dict[str, str]):
    from charact.lookup.grid_table import block_lookup_axes, fit_grid_table

    axes = axes or block_lookup_axes(manifest)
    if not axes:
        raise UserError("a grid_table fit needs its axes: --by COL1,COL2 (this sweep's block "
                        "declares none)")
    return fit_grid_table(table, axes, values, prov, units=units,
                          conditions=_condition_columns(manifest, list(table.columns)))


def _load_model(path):
    from charact.lookup import export

    return export.load_model(path)


def _check_n_codes(n_codes: int) -> int:
    if not MIN_CODES <= n_codes <= MAX_CODES:
        raise UserError(f"--n-codes must be {MIN_CODES} to {MAX_CODES}, got {n_codes}")
    return n_codes


def run_fit(args: argparse.Namespace) -> int:
    from charact.lookup import fit as fitting
    from charact.lookup.grid_table import block_lookup_axes

    out = Path(args.output)
    if out.suffix.lower() != ".json":
        raise UserError(f"the model file name must end in .json: {out}")
    check_output_file(out, "-o")
    if args.n_codes is not None:
        _check_n_codes(args.n_codes)
    if args.smoothing is not None and not (math.isfinite(args.smoothing)
                                           and args.smoothing >= 0):
        raise UserError(f"--smoothing must be a finite number >= 0, got {args.smoothing}")
    sweep = fitting.read_sweep_folder(args.sweep_dir)
    table, manifest = sweep.table, sweep.manifest
    kind = args.kind
    if kind == "auto":
        kind = "code_error" if "code_ideal" in table.columns else \
            "grid_table" if block_lookup_axes(manifest) else "pvt_table"
    prov = fitting.provenance_from_sweep(sweep)
    prov["command"] = _command_line(args, "sweep_dir")
    if kind == "code_error":
        if args.values or args.by:
            raise UserError("--values/--by apply to pvt_table fits, not code_error")
        model = fitting.fit_error_model(
            table, DEFAULT_CODES if args.n_codes is None else args.n_codes, prov,
            smoothing=DEFAULT_SMOOTHING if args.smoothing is None else args.smoothing,
            nominal_vdd=sweep.vdd_nominal, nominal_temp=sweep.temp_nominal,
            structured=False if args.unstructured else None)
    else:
        # a PVT or grid table has no codes and no prior: refused rather than silently ignored
        given = [f for f, v in (("--n-codes", args.n_codes), ("--smoothing", args.smoothing),
                                ("--unstructured", args.unstructured or None))
                 if v is not None]
        if given:
            raise UserError(f"{', '.join(given)} apply to code_error fits; this is a "
                            f"{kind} fit (the table has no 'code_ideal' column)")
        if kind == "grid_table":
            model = _fit_grid(table, manifest, prov, _split(args.values), _split(args.by),
                              sweep.units)
        else:
            model = _fit_pvt(table, manifest, prov, _split(args.values), _split(args.by),
                             sweep.units)
    model.save(out)
    if kind == "code_error":
        print(f"wrote {out}: code_error model, {len(model.points)} PVT point(s), "
              f"{model.n_codes} codes, {model.provenance['rows_total']} rows "
              f"({model.provenance['rows_failed']} failed, excluded), "
              + ("per-column static part" if model.structured else "pooled tables only"))
    elif kind == "grid_table":
        print(f"wrote {out}: grid_table model, corners {', '.join(model.corners)}, axes "
              f"{', '.join(model.axes)}, {len(model.names)} value(s): "
              f"{_short_list(model.names)}")
    else:
        print(f"wrote {out}: pvt_table model, corners {', '.join(model.corners)}, "
              f"{len(model.names)} value(s): {_short_list(model.names)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from charact.lookup import export, fileformat
    from charact.lookup import fit as fitting
    from charact.lookup.error_model import ErrorModel
    from charact.lookup.grid_table import GridTableModel, block_lookup_axes

    src = Path(args.source)
    formats = [s for s, on in (("csv", args.csv), ("parquet", args.parquet)) if on] or ["csv"]
    _check_n_codes(args.n_codes)
    if args.outdir:
        check_output_dir(args.outdir, "-o")
    if src.is_dir():
        sweep = fitting.read_sweep_folder(src)
        table, manifest = sweep.table, sweep.manifest
        prov = fitting.provenance_from_sweep(sweep)
        if "code_ideal" in table.columns:
            # a sweep's error table is the raw empirical one: no smoothing, observed codes
            # the static part where the sweep has enough per column (a diagnostic export,
            # not a model: a thin sweep still exports its raw table)
            model = fitting.fit_error_model(table, args.n_codes, prov, smoothing=0.0,
                                            nominal_vdd=sweep.vdd_nominal,
                                            nominal_temp=sweep.temp_nominal, fallback=True)
            frame = export.error_table_frame(model, observed_only=True)
            stem = "error_table"
        elif block_lookup_axes(manifest):
            model = _fit_grid(table, manifest, prov, None, None, sweep.units)
            frame = model.frame()
            stem = "grid_table"
        else:
            model = _fit_pvt(table, manifest, prov, None, None, sweep.units)
            frame = export.pvt_table_frame(model)
            stem = "pvt_table"
        outdir = Path(args.outdir) if args.outdir else src
        digest = prov["sweep"]["table_sha256"]
    else:
        src = fileformat.resolve_model_path(src)  # a path, or the name of a shipped model
        model = _load_model(src)
        if isinstance(model, ErrorModel):
            frame = export.error_table_frame(model)
            stem = f"{src.stem}.error_table"
        elif isinstance(model, GridTableModel):
            frame = model.frame()
            stem = f"{src.stem}.grid_table"
        else:
            frame = export.pvt_table_frame(model)
            stem = f"{src.stem}.pvt_table"
        outdir = Path(args.outdir) if args.outdir else src.parent
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
    check_output_dir(outdir, "output folder")
    provenance = fileformat.default_provenance(
        command=_command_line(args, "source"), source=str(src), source_sha256=digest,
        columns_note="errors and quantiles are converted - ideal code, in LSB"
        if stem.endswith("error_table") else "mean/sigma over samples per grid point",
        model_provenance=model.provenance)
    written = []
    for fmt in formats:
        written += export.write_table(frame, outdir / f"{stem}.{fmt}", provenance)
    print(f"{len(frame)} rows -> " + ", ".join(str(p) for p in written))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from charact.lookup import export
    from charact.lookup import grid_table as grid
    from charact.lookup.error_model import ErrorModel

    model = _load_model(args.model)
    if args.plot:
        # checked before the summary is printed: a refused plot prints only the error
        if not str(args.plot).lower().endswith(".png"):
            raise UserError(f"--plot writes a PNG; give a .png path, not {args.plot}")
        check_output_file(args.plot, "--plot")
    is_grid = isinstance(model, grid.GridTableModel)
    print(grid.summary(model, args.model) if is_grid else export.summary(model, args.model))
    if args.plot:
        from charact.lookup import plot

        title = Path(args.model).name
        if is_grid:
            grid.plot(model, args.plot, title=title)
        elif isinstance(model, ErrorModel):
            plot.plot_error_model(model, args.plot, title=title)
        else:
            plot.plot_pvt_table(model, args.plot, title=title)
        print(f"figure -> {args.plot}")
    return 0
