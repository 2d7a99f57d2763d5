"""Run a sweep's jobs on a Dask cluster (``charact sweep SPEC --scheduler ADDRESS``).

The same jobs, keys, seeds and table as on one machine; only where the jobs run
changes. Workers need the same environment as the machine that starts the sweep
(charact, ngspice and the technology's model files at the same paths: one container
image or one shared virtual environment), but not the results folder: a worker runs
its job in a scratch folder and sends back the record (and, for a failed job or with
``--keep-work``, its decks and logs); the machine that started the sweep writes
``jobs/<key>.json`` the moment a record arrives. Killing that process loses only the
jobs still running, exactly as locally, and a rerun (local or on any cluster) resumes.

``--scheduler local`` starts a ``LocalCluster`` of ``--jobs`` single-threaded worker
processes on this machine (useful to test a setup).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from charact.errors import EnvironmentFailure, UserError
from charact.provenance import atomic_path, write_json

#: A failed job's decks and logs come back with its record, up to this many bytes.
MAX_WORK_BYTES = 5_000_000


def _remote_job(spec: Any, job: Any, backend: str, keep_work: bool
                ) -> tuple[dict[str, Any] | EnvironmentFailure, dict[str, bytes]]:
    """Runs on a worker: the job in a scratch folder; its record and work files, by
    path relative to that folder (``work/<key>.<pid>/...``, the path a failed row's
    reason names). An environment failure comes back in place of the record: raised
    here, dask would log it as a failed task with its traceback."""
    from charact.sweep import results_error, run_job, work_dir

    try:
        scratch = Path(tempfile.mkdtemp(prefix="charact-dask-"))
    except OSError as exc:
        return results_error(Path(tempfile.gettempdir()), exc), {}
    try:
        try:
            record = run_job(spec, job, scratch, backend, keep_work)
        except EnvironmentFailure as exc:
            return exc, {}
        files: dict[str, bytes] = {}
        work = work_dir(scratch, job.key)
        total = 0
        if work.is_dir():
            for path in sorted(work.rglob("*")):
                if path.is_file() and total + path.stat().st_size <= MAX_WORK_BYTES:
                    files[path.relative_to(scratch).as_posix()] = path.read_bytes()
                    total += path.stat().st_size
        return record, files
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _store(out_dir: Path, record: dict[str, Any], files: dict[str, bytes]) -> None:
    """Write what a worker sent back, atomically, as ``run_job`` does locally."""
    from charact.sweep import results_error

    key = record["row"]["key"]
    try:
        for rel, data in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                continue  # only ever below the results folder
            with atomic_path(out_dir / rel) as tmp:
                tmp.write_bytes(data)
        write_json(out_dir / "jobs" / f"{key}.json", record)
    except OSError as exc:
        raise results_error(out_dir / "jobs", exc) from None


def _client(scheduler: str, n_workers: int, processes: bool = True,
            connect_timeout: float = 30.0):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--scheduler needs dask.distributed: pip install 'charact[dask]'") \
            from None
    if scheduler == "local":
        # One thread per worker: each job drives its own ngspice, one core each.
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1,
                               processes=processes, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=f"{connect_timeout:g}s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"cannot reach the dask scheduler {scheduler!r}: {exc}") from None


def dask_executor(scheduler: str, processes: bool = True,
                  connect_timeout: float = 30.0) -> Callable[..., Iterator]:
    """An executor for :func:`charact.sweep.run_sweep` that runs the jobs on Dask.

    ``scheduler`` is ``"local"`` (a LocalCluster of ``n_workers`` processes, or threads
    with ``processes=False``) or a scheduler address such as ``tcp://host:8786``.
    """

    def executor(fn: Callable[..., Any], args: list[tuple], n_workers: int) -> Iterator:
        # ``fn`` is run_sweep's local job function; workers run the same run_job
        # through _remote_job, which keeps the results folder on this machine.
        if not args:
            return
        client, cluster = _client(scheduler, n_workers, processes, connect_timeout)
        from dask.distributed import as_completed

        futures = []
        try:
            spec, _, out_dir, backend, keep_work = args[0]
            # The spec (with every job) travels once, not with each job.
            spec_f = client.scatter(spec, broadcast=True, hash=False)
            run_id = uuid.uuid4().hex[:8]  # stale keys of an earlier sweep never match
            futures = [client.submit(_remote_job, spec_f, a[1], backend, keep_work,
                                     pure=False, key=f"charact-{run_id}-{a[1].key}")
                       for a in args]
            for fut in as_completed(futures):
                record, files = fut.result()
                if isinstance(record, EnvironmentFailure):
                    raise record  # stops the sweep here, in one line
                _store(Path(out_dir), record, files)
                yield record
        finally:
            for fut in futures:
                fut.cancel()
            client.close()
            if cluster is not None:
                cluster.close()

    return executor
