"""``charact techs``, ``charact render`` and ``charact sweep``."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charact.errors import UserError
from charact.outputs import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("techs", help="list available technologies, check one in ngspice, "
                       "or print the reference of technology-file fields")
    p.add_argument("--check", metavar="TECH",
                   help="probe a technology (shipped name or TOML path) in ngspice: every "
                   "corner section loads, every device conducts, mismatch reaches it")
    p.add_argument("--fields", action="store_true",
                   help="print the reference table of technology-file fields (Markdown)")
    p.set_defaults(func=cmd_techs)

    p = sub.add_parser("render", help="write a block's bench deck for one point (to run by hand)")
    p.add_argument("spec", help="sweep spec TOML; the first job of it is rendered")
    p.add_argument("-o", "--out", default="rendered", help="folder for the deck(s)")
    p.add_argument("--seed", type=int, help="override: Monte-Carlo seed (an integer >= 0)")
    p.add_argument("--die", type=int, default=None,
                   help="render this die of the spec's Monte-Carlo stream (the spec needs "
                   "[montecarlo] samples > 0); beside each deck, <deck>.mismatch.csv lists "
                   "every device's threshold and current-factor shift on that die")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "sweep", help="run a characterization sweep from a spec",
        epilog="exit status: 0 the sweep finished (failed jobs, if any, are counted under "
        "'failures:'); 1 every job failed; 2 user error (bad spec, option or file); "
        "3 environment error (ngspice or its shared library missing or not runnable, "
        "results folder not writable: no job is recorded as failed, finished jobs are "
        "kept); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): finished jobs are "
        "kept, the folder is unlocked, and the workers and their ngspice processes stop")
    p.add_argument("spec", help="sweep spec TOML")
    p.add_argument("-o", "--out", help="results folder (default results/<spec name>)")
    p.add_argument("-j", "--jobs", type=int, default=0, help="parallel jobs (default: all cores)")
    p.add_argument("--backend", default="auto",
                   choices=["auto", "batch", "persistent", "pyspice"],
                   help="simulator backend: batch (one ngspice -b per deck), persistent "
                   "(each worker keeps ngspice and loaded circuits alive: for decks whose "
                   "models take long to load), pyspice, or auto (default: persistent when "
                   "the technology's model load is measured to dominate, else batch)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the jobs on a Dask cluster: a scheduler address "
                   "(tcp://host:8786) or 'local' for a LocalCluster of --jobs processes")
    p.add_argument("--corner", help="override: comma-separated corners")
    p.add_argument("--vdd", help="override: comma-separated supplies (V)")
    p.add_argument("--temp", help="override: comma-separated temperatures (degC)")
    p.add_argument("--samples", type=int,
                   help="override: Monte-Carlo samples per point (an integer >= 0)")
    p.add_argument("--seed", type=int, help="override: Monte-Carlo seed (an integer >= 0)")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="override: a [measure] option, the value in TOML (--set "
                   "conversions=64 --set 'trim=\"offset\"'; a bare word is a string); "
                   "repeatable, checked like the spec's own")
    p.add_argument("--csv", action="store_true", help="also write table.csv")
    p.add_argument("--retry-failed", action="store_true", help="rerun jobs that failed")
    p.add_argument("--keep-work", action="store_true", help="keep decks and logs of all jobs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="run into a results folder that holds another sweep (another name, "
                   "block, technology, parameters or measurement options); its jobs stay, "
                   "the table becomes this spec's, and the folder belongs to this spec")
    p.set_defaults(func=cmd_sweep)


def cmd_techs(args: argparse.Namespace) -> int:
    from charact.tech import fields_table, load_technology, technology_files

    if args.fields:
        print(fields_table(), end="")
        return 0
    if args.check:
        from charact.techcheck import check_technology

        tech = load_technology(args.check)
        for section, probes in check_technology(tech, use_cache=False).items():
            text = "  ".join(f"{p.kind} {p.i_nom * 1e6:.4g} uA" for p in probes)
            print(f"{tech.name} {section}: ok  {text}")
        print(f"{tech.name}: every section loads, every device conducts"
              + (", mismatch reaches every device" if tech.mismatch.method == "pelgrom"
                 else ""))
        return 0

    for name, path in technology_files().items():
        try:
            t = load_technology(name)
            status = f"corners {','.join(t.corners)}  vdd {t.vdd_nominal:g} V  " \
                     f"mismatch {t.mismatch.method}"
        except UserError as exc:
            status = f"unavailable: {exc}"
        print(f"{name:12s} {status}\n{'':12s} {path}")
    return 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--{what} must be comma-separated numbers, got {text!r}") from None


#: Above this many jobs, the job count and an estimate of the expansion time are printed
#: before expanding (a spec of 10^6 jobs takes most of a minute just to be expanded).
ANNOUNCE_JOBS = 20_000
EXPAND_SECONDS_PER_JOB = 6e-5  # measured: 50-70 us per job (key hash, point check)


def _announce_size(name: str) -> Callable[[int], None]:
    def announce(n_jobs: int) -> None:
        if n_jobs > ANNOUNCE_JOBS:
            print(f"{name}: {n_jobs:,} jobs; expanding them takes about "
                  f"{max(1, round(n_jobs * EXPAND_SECONDS_PER_JOB))} s", file=sys.stderr,
                  flush=True)
    return announce


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set OPTION=VALUE`` flags as ``{option: value}``: the value is read as TOML
    (``64``, ``2e-9``, ``"offset"``, ``[1, 2]``); a bare word that is not TOML is a
    string (``trim=offset``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserError(f"--set needs OPTION=VALUE, got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            if not raw.strip() or any(c in raw for c in "[]{}\"'="):
                raise UserError(f"--set {key}: not a TOML value: {raw!r}") from None
            out[key] = raw.strip()
    return out


def load_spec_with_overrides(args: argparse.Namespace, simulator_version: str = ""):
    from charact.spec import parse_spec

    # the flags are checked as flags, so that the message names them and not the spec
    for flag in ("seed", "samples"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            raise UserError(f"--{flag} must be an integer >= 0, got {value}")
    path = Path(args.spec)
    if not path.is_file():
        raise UserError(f"spec file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    data = copy.deepcopy(data)
    cond = data.setdefault("conditions", {})
    if not isinstance(cond, dict):
        raise UserError(f"{path}: [conditions] must be a table")
    if getattr(args, "corner", None):
        cond["corner"] = [c.strip() for c in args.corner.split(",") if c.strip()]
    if getattr(args, "vdd", None):
        cond["vdd"] = _floats(args.vdd, "vdd")
    if getattr(args, "temp", None):
        cond["temp"] = _floats(args.temp, "temp")
    mc = data.setdefault("montecarlo", {})
    if not isinstance(mc, dict):
        raise UserError(f"{path}: [montecarlo] must be a table")
    if getattr(args, "samples", None) is not None:
        mc["samples"] = args.samples
    if getattr(args, "seed", None) is not None:
        mc["seed"] = args.seed
    sets = getattr(args, "set", None) or []
    if sets:
        measure = data.setdefault("measure", {})
        if not isinstance(measure, dict):
            raise UserError(f"{path}: [measure] must be a table")
        measure.update(parse_sets(sets))
    return parse_spec(data, where=str(path), path=path, simulator_version=simulator_version,
                      on_size=_announce_size(str(path)))


def cmd_render(args: argparse.Namespace) -> int:
    from charact.blocks import JobContext
    from charact.blocks.base import JobFailed
    from charact.runner import write_run_dir

    check_output_dir(args.out, "-o")
    spec = load_spec_with_overrides(args)
    job = spec.jobs[0]
    if args.die is not None:
        if job.point.seed is None:
            raise UserError("--die needs a spec with [montecarlo] samples > 0")
        if args.die < 0:
            raise UserError(f"--die must be >= 0, got {args.die}")
        job = dataclasses.replace(job, point=dataclasses.replace(job.point, die=args.die))
    out = Path(args.out)

    class _Recorder:
        """Writes decks instead of running them."""

        name = "render"
        written = 0

        def version(self) -> str:
            return "render"

        def run(self, deck, workdir, timeout=0.0, raw=False):
            path = write_run_dir(deck, workdir)
            _Recorder.written += 1
            print(f"wrote {path}\n  run it: cd {workdir} && ngspice -b {path.name}  "
                  "(prints the .meas results; for waveforms run 'ngspice "
                  f"{path.name}' and use plot, or add -r {deck.name}.raw)")
            from charact.runner import RunResult

            return RunResult(ok=False, reason="rendered only")

    ctx = JobContext(tech=spec.tech, point=job.point, params=spec.params,
                     conditions=job.conditions, options=spec.options, workdir=out,
                     sim=_Recorder(), templates=spec.block.load_templates(spec.tech))
    # The recorder stops the bench after its first deck (later decks depend on the
    # measurements of earlier ones): that, and only that, is the expected failure.
    try:
        spec.block.simulate(ctx)
    except JobFailed as exc:
        if not _Recorder.written:  # the bench stopped before its first deck
            raise UserError(f"{args.spec}: no deck written: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot write the deck under {out}: {exc.strerror or exc}") from None
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    from charact.runner import ngspice_version
    from charact.sweep import count_failures, run_sweep, summarize

    if args.jobs < 0:
        raise UserError("--jobs must be >= 0")
    version = ngspice_version()  # fails early, with install advice, if ngspice is missing
    spec = load_spec_with_overrides(args, simulator_version=version)
    out = Path(args.out) if args.out else Path("results") / spec.name
    print(f"sweep {spec.name}: block {spec.block.name}, technology {spec.tech.name}, "
          f"{len(spec.jobs)} jobs -> {out}")
    executor = None
    if args.scheduler:
        from charact.distributed import dask_executor

        executor = dask_executor(args.scheduler)
    res = run_sweep(spec, out, n_jobs=args.jobs, backend=args.backend,
                    retry_failed=args.retry_failed, keep_work=args.keep_work, csv=args.csv,
                    progress=not args.quiet, executor=executor, force=args.force)
    where = f" on dask {args.scheduler}" if args.scheduler else ""
    print(f"ran {res.ran} jobs, reused {res.reused}, failed {res.failed}, {res.wall:.1f} s"
          f" (backend {res.backend}{where})")
    cols = [c for c in spec.block.summary() if c in res.table]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(summarize(res.table, cols).to_string(float_format=lambda x: f"{x:.4g}"))
    if res.failed:
        print("failures:")
        for n, reason in count_failures(res.table)[:5]:
            print(f"  {n} x {reason}")
    print(f"table: {out / 'table.parquet'}" + (f", {out / 'table.csv'}" if args.csv else ""))
    print(f"manifest: {out / 'manifest.json'}")
    if res.failed and res.failed >= res.ran + res.reused:
        print(f"charact: all {res.failed} jobs failed (reasons above)", file=sys.stderr)
        return 1
    return 0
