"""Run a sweep: jobs in parallel over processes, each finished job kept at once.

Layout of ``results/<name>/``::

    jobs/<key>.json      one finished job (its row and timing), written atomically by
                         the worker that ran it: a killed sweep loses only running jobs
    work/<key>.<pid>/    the decks and logs of a job (removed on success unless kept);
                         a failed row's reason ends with the log that shows why; those
                         of a dead process that no record names are removed by the
                         next sweep, as are temporary files of dead writers
    table.parquet        one row per sample, in job order, with provenance metadata
    table.csv            on request (+ table.provenance.json)
    manifest.json        spec, technology, code revision, simulator, seeds and timings
    identity.json        the sweep the folder belongs to (``SweepSpec.identity``): a
                         spec with another identity is refused unless forced
    .lock                held (and present) while a sweep writes the folder

Job keys hash the block and its version, the template texts, the technology files,
the parameters, options, operating point, seed and simulator version: rerunning the same
spec redoes only jobs without a file; changing any of those makes new keys.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from charact.blocks import JobContext, JobFailed
from charact.errors import EnvironmentFailure, UserError
from charact.provenance import stamp, write_bytes, write_json, write_table
from charact.runner import NgspiceBatch, Simulator, kill_children
from charact.spec import Job, JobSpec, SweepSpec


@dataclass
class SweepResult:
    out_dir: Path
    table: pd.DataFrame
    ran: int
    reused: int
    failed: int
    wall: float
    backend: str = ""  # the simulator backend the jobs ran on ("auto" resolved)


def make_simulator(backend: str) -> Simulator:
    if backend == "batch":
        return NgspiceBatch()
    if backend == "pyspice":
        from charact.pyspice_backend import PySpiceShared

        return PySpiceShared()
    if backend == "persistent":
        from charact.persistent import NgspicePersistent

        return NgspicePersistent()
    raise UserError(f"unknown backend {backend!r}; use 'batch', 'persistent', 'pyspice' "
                    "or 'auto'")


BACKENDS = ("auto", "batch", "persistent", "pyspice")


class ResultsUnwritable(EnvironmentFailure):
    """The results folder cannot be written (read-only, full disk): the sweep stops."""


def results_error(path: Path, exc: OSError) -> ResultsUnwritable:
    reason = exc.strerror or type(exc).__name__
    return ResultsUnwritable(f"cannot write {path}: {reason}; finished jobs are kept, "
                             "free space or fix permissions and rerun to resume")


#: OSErrors that come from the machine (space, quota, permissions, descriptors), not
#: from the job: every job would fail the same way.
_ENV_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                         errno.EPERM, errno.EMFILE, errno.ENFILE})


def is_environment_oserror(exc: OSError) -> bool:
    return exc.errno in _ENV_ERRNOS


def check_backend(backend: str) -> None:
    """Start the backend's simulator once, before any job: a missing ngspice or shared
    library stops the sweep with :class:`EnvironmentFailure` instead of failing every
    job. ``backend`` is a resolved name (not ``auto``)."""
    make_simulator(backend).version()


_WHERE = re.compile(r"\s*\((?:log|traceback|work): [^()]*\)$")


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def split_reason(reason: str) -> tuple[str, str]:
    """A failed row's reason without, and with only, its trailing ``(log: PATH)``."""
    m = _WHERE.search(reason)
    return (reason[:m.start()], m.group(0).strip()) if m else (reason, "")


def count_failures(table: pd.DataFrame) -> list[tuple[int, str]]:
    """(jobs, the first one's reason) per kind of failure, most frequent first. Reasons
    that differ only in their log and in numbers (the instance line ngspice quotes
    carries each sample's mismatch values) are one kind."""
    if "status" not in table or "reason" not in table:
        return []
    failed = table[table["status"] != "ok"].drop_duplicates("key")
    groups: dict[str, list[str]] = {}
    for reason in failed["reason"].astype(str):
        groups.setdefault(_NUMBER.sub("#", split_reason(reason)[0]), []).append(reason)
    return sorted(((len(v), v[0]) for v in groups.values()), key=lambda t: -t[0])


def _where(out_dir: Path, workdir: Path, deck: str, traceback_written: bool) -> str:
    """`` (log: work/<key>.<pid>/<deck>.log)``: the file that shows why a job failed,
    relative to the results folder; '' when the job left none."""
    if traceback_written:
        kind, path = "traceback", workdir / "traceback.txt"
    elif deck and (workdir / f"{deck}.log").is_file():
        kind, path = "log", workdir / f"{deck}.log"
    elif workdir.is_dir():
        kind, path = "work", workdir
    else:
        return ""
    try:
        rel = path.relative_to(out_dir).as_posix()
    except ValueError:
        rel = str(path)
    return f" ({kind}: {rel})"


class _Deadline:
    """The job's simulator with one time budget for all its decks: the job timeout."""

    def __init__(self, sim: Simulator, budget: float) -> None:
        self.sim, self.budget, self.t0 = sim, budget, time.monotonic()
        self.name = sim.name
        self.expired_in = ""  # the deck that ran out of time
        self.last_deck = ""  # the deck run last: its log explains a failure

    def version(self) -> str:
        return self.sim.version()

    def run(self, deck, workdir: Path, timeout: float = 600.0, raw: bool = False):
        from charact.runner import RunResult

        self.last_deck = deck.name
        left = min(timeout, self.budget - (time.monotonic() - self.t0))
        if left <= 0:
            self.expired_in = deck.name
            return RunResult(False, reason=f"timeout after {self.budget:g} s")
        res = self.sim.run(deck, workdir, timeout=left, raw=raw)
        if not res.ok and res.reason.startswith("timeout"):
            self.expired_in = deck.name
        return res


def work_dir(out_dir: Path, key: str) -> Path:
    """The decks and logs of one attempt at a job. One folder per process: a straggler
    of a killed sweep never shares files with the rerun that resumes it."""
    return out_dir / "work" / f"{key}.{os.getpid()}"


def run_job(spec: SweepSpec | JobSpec, job: Job, out_dir: Path, backend: str = "batch",
            keep_work: bool = False) -> dict[str, Any]:
    """Run one job and write ``jobs/<key>.json``; return the record. Never raises for a
    simulation failure: the record says ``status = "failed"``, why, and which log shows
    it. Raises :class:`EnvironmentFailure` (and writes no record) when the machine cannot
    run the job: simulator missing, work or results folder not writable.

    ``spec`` is the sweep's :meth:`SweepSpec.job_spec` (or the spec itself)."""
    workdir = work_dir(out_dir, job.key)
    sim = _Deadline(make_simulator(backend), spec.timeout)
    ctx = JobContext(tech=spec.tech, point=job.point, params=spec.params,
                     conditions=job.conditions, options=spec.options, workdir=workdir,
                     sim=sim, templates=spec.block.load_templates(spec.tech),
                     timeout=spec.timeout)
    t0 = time.perf_counter()
    status, reason, crashed = "ok", "", ""  # crashed: the traceback of a bench's bug
    try:
        measured = spec.block.simulate(ctx)
    except EnvironmentFailure:
        shutil.rmtree(workdir, ignore_errors=True)  # the same for every job: no result
        raise
    except JobFailed as exc:
        status, reason, measured = "failed", str(exc), {}
        if sim.expired_in:
            reason = f"timeout after {spec.timeout:g} s (deck {sim.expired_in})"
    except OSError as exc:
        if is_environment_oserror(exc):
            shutil.rmtree(workdir, ignore_errors=True)
            raise results_error(Path(exc.filename or workdir), exc) from None
        status, measured, crashed = "failed", {}, traceback.format_exc()
        reason = f"internal error: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in a bench must not stop a long sweep
        status, measured, crashed = "failed", {}, traceback.format_exc()
        reason = f"internal error: {type(exc).__name__}: {exc}"
    if crashed:
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "traceback.txt").write_text(crashed)
        except OSError as exc:
            raise results_error(workdir, exc) from None
    if status != "ok":
        reason += _where(out_dir, workdir, sim.last_deck, bool(crashed))
    wall = time.perf_counter() - t0
    base: dict[str, Any] = {
        "job": job.index, "key": job.key, "corner": job.point.corner,
        "vdd": job.point.vdd, "temp": job.point.temp, **job.conditions,
        "sample": job.sample, "seed": job.point.seed if job.point.seed is not None else -1,
        # the die this job simulated (-1: nominal devices); its mismatch is keyed by
        # (seed, die, device), so the same die number is the same silicon at every point
        "die": job.point.die if job.point.seed is not None else -1,
        "status": status, "reason": reason,
    }
    # A block returns one row, or a list of rows (several conversions in one deck).
    items = measured if isinstance(measured, list) else [measured]
    rows = []
    for i, item in enumerate(items):
        row = dict(base, item=i) if isinstance(measured, list) else dict(base)
        row.update({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in item.items()})
        rows.append(row)
    record = {"row": rows[0], "rows": rows, "timing": {"wall": wall, "simulator": ctx.elapsed},
              "decks": ctx.decks}
    # The folder this record owns ('' none): a later sweep's clean-up leaves it alone.
    kept = (status != "ok" or keep_work) and workdir.is_dir()
    record["work"] = workdir.relative_to(out_dir).as_posix() if kept else ""
    if ORPHANED.is_set():
        # The owner died and the watchdog is killing this job's ngspice: whatever failed
        # now is that kill, not the job. Leave it unfinished for the rerun.
        os._exit(1)
    path = out_dir / "jobs" / f"{job.key}.json"
    if status != "ok":
        previous = _load_record(path)
        if previous is not None and previous["row"].get("status") == "ok":
            return previous  # a finished result is never replaced by a failure
    try:
        write_json(path, record)
    except OSError as exc:
        raise results_error(out_dir / "jobs", exc) from None
    if status == "ok" and not keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return record


def _load_record(path: Path, key: str | None = None) -> dict[str, Any] | None:
    """The record in ``path`` if it is a whole one (of job ``key``), else None: an
    unreadable, torn or malformed record (another tool, a disk error) counts as not
    finished and the job runs again."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if _valid_record(record, key) else None


def _valid_record(record: Any, key: str | None) -> bool:
    """Everything the table and the manifest read from a record is there, typed."""
    if not isinstance(record, dict):
        return False
    row, rows, timing = record.get("row"), record.get("rows"), record.get("timing")
    if not isinstance(row, dict) or not isinstance(row.get("key"), str) \
            or not isinstance(row.get("status"), str) or (key and row["key"] != key):
        return False
    if "rows" in record and (not isinstance(rows, list) or not rows
                             or not all(isinstance(r, dict) for r in rows)):
        return False
    number = (int, float)
    return isinstance(timing, dict) and isinstance(timing.get("simulator"), number) \
        and not isinstance(timing.get("simulator"), bool)


@contextlib.contextmanager
def _lock(out_dir: Path) -> Iterator[None]:
    """Hold ``.lock`` for the sweep and remove it on the way out, whatever ends the
    sweep. Removal is safe because a lock counts only while ``.lock`` still names the
    locked file: one that lost a race with a removal takes the new file instead."""
    path = out_dir / ".lock"
    while True:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a")  # noqa: SIM115 - held for the whole sweep
        except OSError as exc:
            raise results_error(out_dir, exc) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise UserError(f"another sweep is writing {out_dir}; wait for it or use -o") \
                from None
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # removed by the sweep that held it just now: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc: the signal test above is all there is


_TMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")
_WORK = re.compile(r"^([0-9a-f]+)\.(\d+)$")
#: A temporary file without a writer's pid (older versions) is stale after this long.
STALE_TMP_SECONDS = 600.0


def clean_leftovers(out_dir: Path) -> int:
    """Remove what killed sweeps left in ``out_dir``: ``work/<key>.<pid>/`` folders of
    dead processes that no job record names, and temporary files of dead writers.
    Called with the folder's lock held; returns how many entries went."""
    removed = 0
    for folder in (out_dir, out_dir / "jobs", out_dir / "work"):
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            m = _TMP.match(path.name)
            try:
                stale = not pid_alive(int(m.group(1))) if m else \
                    time.time() - path.stat().st_mtime > STALE_TMP_SECONDS
                if stale:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    work = out_dir / "work"
    if not work.is_dir():
        return removed
    for path in work.iterdir():
        m = _WORK.match(path.name)
        if not m or not path.is_dir() or pid_alive(int(m.group(2))):
            continue
        rec = _load_record(out_dir / "jobs" / f"{m.group(1)}.json")
        if rec is not None and _names_work(rec, path.name):
            continue  # a failed job's decks and logs, or kept on request
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _names_work(record: dict[str, Any], name: str) -> bool:
    """Whether a record owns ``work/<name>``: it says so, or (older records) a failed
    row's reason points into it, or it kept its work without saying where."""
    if "work" in record:
        return record["work"] == f"work/{name}"
    if record["row"].get("status") == "ok":
        return True  # --keep-work of an older version: keep rather than guess
    return any(f"work/{name}" in str(r.get("reason", ""))
               for r in record.get("rows", [record["row"]]))


def check_identity(spec: SweepSpec, out_dir: Path, force: bool = False) -> None:
    """Refuse to run ``spec`` into a folder that holds another sweep (see
    :meth:`SweepSpec.identity`; folders of older versions are judged by their manifest's
    name, block and technology fingerprint)."""
    if force:
        return
    mine = spec.identity()
    theirs: dict[str, Any] | None = None
    with contextlib.suppress(OSError, ValueError):
        theirs = json.loads((out_dir / "identity.json").read_text())
    if not isinstance(theirs, dict):
        theirs = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            m = json.loads((out_dir / "manifest.json").read_text())
            theirs = {"sweep": m["sweep"], "block": m["block"]["name"],
                      "technology": m["technology"]["name"],
                      "technology_fingerprint": m["technology"]["fingerprint"]}
    if theirs is None:
        return
    differs = [k for k in ("sweep", "block", "technology_fingerprint", "params", "options")
               if k in theirs and theirs[k] != mine[k]]
    if differs:
        what = {"sweep": "name", "technology_fingerprint": "technology files"}
        raise UserError(
            f"{out_dir} holds sweep {theirs.get('sweep')} (block {theirs.get('block')}, "
            f"technology {theirs.get('technology')}; this spec differs in "
            f"{', '.join(what.get(k, k) for k in differs)}); use -o for another folder or "
            "--force to add to it")


#: Set in a worker whose sweep has died: the job in flight must not be recorded.
ORPHANED = threading.Event()
_WATCHED: set[int] = set()
WATCH_INTERVAL = 0.5  # seconds between two looks at the owner


def _watch_owner(owner: int) -> None:
    """In a worker: once the sweep process ``owner`` is gone (killed, even with -9, and
    even before it is reaped), kill this worker's ngspice processes and exit, instead of
    finishing the job and idling until the pool times out."""
    if owner in _WATCHED:
        return
    _WATCHED.add(owner)
    parent = os.getppid()

    def watch() -> None:
        # A worker whose parent is the owner is re-parented the moment the owner dies.
        while (parent != owner or os.getppid() == owner) and pid_alive(owner):
            time.sleep(WATCH_INTERVAL)
        ORPHANED.set()
        kill_children()
        os._exit(1)

    threading.Thread(target=watch, name="charact-owner-watchdog", daemon=True).start()


class Progress:
    """A one-line progress bar with ETA on a terminal; sparse lines otherwise."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total, self.done, self.t0, self.stream = total, 0, time.perf_counter(), stream
        self.tty = stream.isatty()
        self._last_pct = -1

    def step(self, failed: bool = False) -> None:
        self.done += 1
        el = time.perf_counter() - self.t0
        eta = el / self.done * (self.total - self.done)
        pct = int(100 * self.done / max(self.total, 1))
        text = f"{self.done}/{self.total} jobs  {el:6.1f} s  ETA {eta:6.1f} s"
        if self.tty:
            bar = "#" * (pct // 4) + "." * (25 - pct // 4)
            self.stream.write(f"\r[{bar}] {text}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif pct // 10 != self._last_pct // 10 or self.done == self.total:
            self.stream.write(f"  {text}\n")
            self.stream.flush()
        self._last_pct = pct


def run_sweep(spec: SweepSpec, out_dir: Path, n_jobs: int = 0, backend: str = "batch",
              retry_failed: bool = False, keep_work: bool = False, csv: bool = False,
              progress: bool = True,
              executor: Callable[..., Any] | None = None,
              check_tech: bool = True, force: bool = False) -> SweepResult:
    """Run every unfinished job of ``spec`` and write the table and manifest.

    First, with ``check_tech``, the technology is probed in ngspice at the spec's corners
    (``charact.techcheck``): a wrong section, model or shift parameter ends the sweep in
    one line before anything is written.

    ``n_jobs`` <= 0 means all cores. ``executor`` replaces joblib (for other engines);
    it is called as ``executor(fn, argument_tuples, n_jobs)`` and yields records.
    ``backend = "auto"`` measures the technology's model-load time and keeps ngspice
    alive (``persistent``) when loading dominates, else runs ``batch``.
    Raises :class:`EnvironmentFailure` when the backend cannot start (checked before
    any job) or a job meets a machine problem, and :class:`ResultsUnwritable` (one) when
    the folder cannot be written; jobs finished until then stay in ``jobs/``.
    Raises :class:`UserError` when ``out_dir`` holds another sweep (:func:`check_identity`)
    unless ``force``; the folder then belongs to ``spec``.
    """
    out_dir = Path(out_dir)
    if backend not in BACKENDS:
        make_simulator(backend)  # raises the UserError naming the known ones
    backend_why = ""
    if check_tech:
        from charact.techcheck import check_technology

        check_technology(spec.tech, list(spec.axes["corner"]), mc=spec.samples > 0)
    with _lock(out_dir):
        check_identity(spec, out_dir, force)
        clean_leftovers(out_dir)
        try:
            write_bytes(out_dir / "identity.json",
                        (json.dumps(spec.identity(), indent=2) + "\n").encode())
        except OSError as exc:
            raise results_error(out_dir, exc) from None
        jobs_dir = out_dir / "jobs"
        done: dict[str, dict[str, Any]] = {}
        for job in spec.jobs:
            rec = _load_record(jobs_dir / f"{job.key}.json", job.key)
            if rec is not None and not (retry_failed and rec["row"]["status"] != "ok"):
                done[job.key] = rec
        todo = [j for j in spec.jobs if j.key not in done]
        n_workers = n_jobs if n_jobs > 0 else (os.cpu_count() or 1)
        n_workers = max(1, min(n_workers, len(todo) or 1))
        t0 = time.perf_counter()
        if todo:
            check_backend("batch" if backend == "auto" else backend)
        if backend == "auto" and todo:
            from charact.persistent import choose_backend

            backend, backend_why = choose_backend(spec.tech)
        bar = Progress(len(todo)) if progress and todo else None
        args = task_args(spec, todo, out_dir, backend, keep_work)
        if executor is None:
            executor = _joblib_executor
        for rec in executor(run_job, args, n_workers):
            done[rec["row"]["key"]] = rec
            if bar:
                bar.step(rec["row"]["status"] != "ok")
        wall = time.perf_counter() - t0
        table = assemble_table(spec, done)
        provenance = manifest(spec, out_dir, done, wall, n_workers, backend)
        if backend_why:
            provenance["simulator"]["backend_choice"] = backend_why
        try:
            write_table(table, out_dir / "table.parquet", provenance)
            if csv:
                write_table(table, out_dir / "table.csv", provenance)
            write_json(out_dir / "manifest.json", provenance)
        except OSError as exc:
            raise results_error(out_dir, exc) from None
    failed = sum(1 for r in done.values() if r["row"]["status"] != "ok")
    return SweepResult(out_dir, table, ran=len(todo), reused=len(spec.jobs) - len(todo),
                       failed=failed, wall=wall, backend=backend)


def task_args(spec: SweepSpec, jobs: list[Job], out_dir: Path, backend: str,
              keep_work: bool) -> list[tuple]:
    """The arguments of ``run_job`` per job. Every task carries the slim job spec (one
    object shared by all: pickled per task, its size independent of the job count)."""
    slim = spec.job_spec()
    return [(slim, job, out_dir, backend, keep_work) for job in jobs]


def _joblib_executor(fn: Callable[..., Any], args: list[tuple], n_workers: int):
    if n_workers == 1:
        for a in args:
            yield fn(*a)
        return
    from joblib import Parallel, delayed

    owner = os.getpid()
    yield from Parallel(n_jobs=n_workers, backend="loky", return_as="generator_unordered",
                        batch_size=1, pre_dispatch="2*n_jobs")(
        delayed(_unless_orphaned)(fn, owner, *a) for a in args)


def _unless_orphaned(fn: Callable[..., Any], owner: int, *args: Any) -> Any:
    """Run a queued job only while the sweep that queued it is alive: workers of a killed
    sweep must not go on with its queue beside the rerun that resumes it. A worker also
    watches its owner while it runs (:func:`_watch_owner`)."""
    if not pid_alive(owner):
        return None
    if owner != os.getpid():
        _watch_owner(owner)
    return fn(*args)


def assemble_table(spec: SweepSpec, done: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per job of this spec, in job order (records of other specs are ignored)."""
    # ``job`` is the position in this spec: a record made by a spec with other axes or
    # sample counts (same key, same numbers) carries its old position.
    rows = [dict(r, job=j.index) for j in spec.jobs if j.key in done
            for r in done[j.key].get("rows", [done[j.key]["row"]])]
    df = pd.DataFrame(rows)
    return df.sort_values("job", kind="stable").reset_index(drop=True)


def manifest(spec: SweepSpec, out_dir: Path, done: dict[str, dict[str, Any]], wall: float,
             n_workers: int, backend: str) -> dict[str, Any]:
    from charact.runner import ngspice_version

    timings = {j.key: done[j.key]["timing"] for j in spec.jobs if j.key in done}
    sims = [t["simulator"] for t in timings.values()]
    # The unit of every column the table has: the block's columns and condition axes,
    # columns it names by pattern (one per option value), and the PVT grid's.
    block = spec.block
    names = dict.fromkeys([*block.columns, *block.conditions])
    for j in spec.jobs:
        if j.key in done:
            names.update(dict.fromkeys(done[j.key]["row"]))
    units = {"vdd": "V", "temp": "degC"}
    units.update({c: u for c in names if (u := block.unit(c))})
    return stamp(
        kind="sweep",
        sweep=spec.name,
        spec=spec.to_json(),
        spec_path=str(spec.path) if spec.path else None,
        block={"name": spec.block.name, "version": spec.block.version,
               "templates": {t.path.name: t.sha256
                                     for t in spec.block.load_templates(spec.tech)}},
        technology={"name": spec.tech.name, "source": str(spec.tech.source),
                    "model_lib": str(spec.tech.model_lib),
                    "fingerprint": spec.tech.fingerprint(),
                    "mismatch": spec.tech.mismatch.method,
                    "vdd_nominal": spec.tech.vdd_nominal,
                    "temp_nominal": spec.tech.temp_nominal},
        simulator={"backend": backend, "version": ngspice_version()},
        seed=spec.seed,
        samples=spec.samples,
        jobs=len(spec.jobs),
        timing={"wall_last_run": wall, "workers": n_workers,
                "simulator_total": sum(sims), "per_job": timings},
        out_dir=str(out_dir),
        units=units,
    )


def summarize(table: pd.DataFrame, measure_columns: list[str]) -> pd.DataFrame:
    """Per corner: jobs, failures, and mean/std of each measured column over ok rows."""
    ok = table[table["status"] == "ok"]
    out = table.groupby("corner", sort=False).agg(jobs=("job", "size"))
    out["failed"] = table[table["status"] != "ok"].groupby("corner").size()
    out["failed"] = out["failed"].fillna(0).astype(int)
    for col in measure_columns:
        if col in ok:
            g = pd.to_numeric(ok[col], errors="coerce").groupby(ok["corner"])
            out[f"{col}_mean"] = g.mean()
            out[f"{col}_std"] = g.std()
    return out
