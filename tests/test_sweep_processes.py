"""The processes of a sweep: SIGTERM unwinds like Ctrl-C, a killed sweep's workers and
ngspice processes stop within seconds, a rerun cleans what a killed run left and reruns
malformed records, a results folder belongs to one sweep, task payloads do not grow with
the sweep, and kill -9 / resume through the command line on real ngspice."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_sweep import SPEC, FakeSim, write_spec

import charact.sweep as sweep_mod
from charact.errors import UserError
from charact.provenance import write_json
from charact.spec import parse_spec
from charact.sweep import clean_leftovers, run_sweep, task_args

REPO = Path(__file__).resolve().parent.parent
#: Seconds within which every worker and ngspice of a sweep killed with -9 must be gone.
ORPHAN_LIMIT = 15.0


def fake_spec(samples: int, name: str = "fk", corners: str = '["NOM", "SS"]'):
    return parse_spec(tomllib.loads(SPEC.format(name=name, corners=corners, vdd="1.0",
                                                samples=samples, tech="freepdk45")))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def start_cli(charact_cmd: list[str], spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(charact_cmd + ["sweep", str(spec), "-o", str(out), "-j", "2",
                                           "--quiet", *extra],
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_jobs(out: Path, n: int, proc: subprocess.Popen, limit: float = 60.0) -> None:
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "jobs").glob("*.json"))) >= n:
            return
        time.sleep(0.02)
    pytest.fail(f"no {n} finished job(s) within {limit:g} s (exit {proc.poll()})")


# ---- signals and orphans (real ngspice) ------------------------------------------------

@pytest.mark.spice
def test_sigterm_is_one_line_exit_143_lock_released_jobs_kept(tmp_path, charact_cmd):
    spec = write_spec(tmp_path / "spec.toml", name="term", samples=6)
    out = tmp_path / "o"
    proc = start_cli(charact_cmd, spec, out, "--backend", "batch")
    wait_for_jobs(out, 1, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "charact: terminated; finished jobs are kept, rerun to resume"]
    assert not (out / ".lock").exists()
    finished = {p.name: p.read_text() for p in (out / "jobs").glob("*.json")}
    assert finished and all(json.loads(t)["row"]["status"] == "ok"
                            for t in finished.values())


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(procs: list) -> list:
    import psutil

    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.spice
@pytest.mark.parametrize("backend", ["batch", "persistent"])
def test_kill9_of_the_sweep_stops_its_workers_and_ngspice(tmp_path, charact_cmd, backend):
    """The sweep is killed with -9 and not reaped (a zombie) while it is measured: its
    workers see it gone anyway, kill their ngspice and exit."""
    pytest.importorskip("psutil")
    spec = write_spec(tmp_path / "spec.toml", name="orph", samples=12)
    out = tmp_path / "o"
    proc = start_cli(charact_cmd, spec, out, "--backend", backend)
    try:
        wait_for_jobs(out, 1, proc)
        deadline = time.time() + 30
        while time.time() < deadline:  # until each worker runs an ngspice
            family = descendants(proc.pid)
            if sum("ngspice" in p.name() for p in running(family)) >= 2:
                break
            time.sleep(0.05)
        workers = [p for p in family if "ngspice" not in p.name()]
        assert workers and any("ngspice" in p.name() for p in family)
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, and not reaped yet
        t0 = time.monotonic()
        while running(family) and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        took = time.monotonic() - t0
        left = [f"{p.pid} {p.name()}" for p in running(family)]
        print(f"kill -9 ({backend}): workers and ngspice gone after {took:.2f} s")
        assert not left and took < ORPHAN_LIMIT, (took, left)
        n_jobs = len(list((out / "jobs").glob("*.json")))
        time.sleep(1.0)  # no queued job ran after the kill
        assert len(list((out / "jobs").glob("*.json"))) == n_jobs
    finally:
        for p in running(descendants(proc.pid)):
            p.kill()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_queued_job_of_a_zombie_owner_does_not_run():
    from charact.sweep import _unless_orphaned, pid_alive

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while pid_alive(zombie.pid) and time.time() < deadline:  # exited, not yet reaped
        time.sleep(0.01)
    try:
        assert not pid_alive(zombie.pid)
        assert _unless_orphaned(lambda: "ran", zombie.pid) is None
    finally:
        zombie.wait()


# ---- leftovers -------------------------------------------------------------------------

def test_unreachable_scheduler_leaves_no_lock(tmp_path, fake):
    pytest.importorskip("dask.distributed")
    from charact.distributed import dask_executor

    out = tmp_path / "o"
    with pytest.raises(UserError, match="cannot reach the dask scheduler"):
        run_sweep(fake_spec(1), out, n_jobs=1, progress=False, check_tech=False,
                  executor=dask_executor("tcp://127.0.0.1:1", connect_timeout=1))
    assert not (out / ".lock").exists()
    # and the folder is free: the same sweep runs locally
    assert run_sweep(fake_spec(1), out, n_jobs=1, progress=False, check_tech=False).ran == 2


def test_rerun_cleans_a_killed_runs_leftovers_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim("delay"))
    out = tmp_path / "o"
    spec = fake_spec(1)
    failed = run_sweep(spec, out, n_jobs=1, progress=False, check_tech=False)
    assert failed.failed == 2
    named = {p.name for p in (out / "work").iterdir()}  # the failed jobs' logs
    assert len(named) == 2
    gone, alive = dead_pid(), os.getpid()
    key = spec.jobs[0].key
    leftovers = [out / "work" / f"{key}.{gone}", out / "work" / f"{'ab' * 12}.{gone}",
                 out / f".table.parquet.{gone}.x1y2z3.tmp",
                 out / "jobs" / f".{key}.json.{gone}.abc123.tmp"]
    live = [out / "work" / f"{'cd' * 12}.{alive}", out / f".manifest.json.{alive}.q1w2e3.tmp"]
    for path in leftovers[:2] + live[:1]:
        path.mkdir(parents=True)
        (path / "deck.log").write_text("partial\n")
    for path in leftovers[2:] + live[1:]:
        path.write_text("partial")
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    res = run_sweep(spec, out, n_jobs=1, progress=False, check_tech=False)
    assert res.ran == 0 and res.reused == 2
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in live)  # a live process's files are never touched
    assert named <= {p.name for p in (out / "work").iterdir()}  # named by failed rows
    assert clean_leftovers(out) == 0


@pytest.mark.parametrize("record", [
    {"row": {}},
    {"row": {"key": "K", "status": "ok"}, "rows": None, "timing": {"simulator": 0.1}},
    {"row": {"key": "K", "status": "ok"}, "rows": [], "timing": {"simulator": 0.1}},
    {"row": {"key": "K", "status": "ok"}, "rows": [1], "timing": {"simulator": 0.1}},
    {"row": {"key": "K", "status": 1}, "timing": {"simulator": 0.1}},
    {"row": {"key": "K", "status": "ok"}, "timing": None},
    {"row": {"key": "K", "status": "ok"}, "timing": {"simulator": "fast"}},
    {"row": {"key": "other", "status": "ok"}, "timing": {"simulator": 0.1}},
    [1, 2],
    None,
])
def test_malformed_job_record_is_rerun(tmp_path, fake, record):
    spec = fake_spec(1, corners='["NOM"]')
    out = tmp_path / "o"
    ref = run_sweep(spec, out, n_jobs=1, progress=False, check_tech=False)
    path = out / "jobs" / f"{spec.jobs[0].key}.json"
    text = json.dumps(record).replace('"K"', json.dumps(spec.jobs[0].key))
    path.write_text(text)
    res = run_sweep(spec, out, n_jobs=1, progress=False, check_tech=False)
    assert res.ran == 1 and res.reused == 0
    pd.testing.assert_frame_equal(res.table, ref.table)


# ---- one folder, one sweep -------------------------------------------------------------

def test_a_different_spec_is_refused_unless_forced(tmp_path, fake):
    out = tmp_path / "o"
    first = run_sweep(fake_spec(2, name="first"), out, n_jobs=1, progress=False,
                      check_tech=False)
    with pytest.raises(UserError) as info:
        run_sweep(fake_spec(2, name="second"), out, n_jobs=1, progress=False,
                  check_tech=False)
    assert str(info.value) == (
        f"{out} holds sweep first (block sense_amp, technology freepdk45; this spec "
        "differs in name); use -o for another folder or --force to add to it")
    assert not (out / ".lock").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "table.parquet"), first.table)
    # other template parameters are another sweep too
    other = parse_spec(tomllib.loads(SPEC.format(
        name="first", corners='["NOM"]', vdd="1.0", samples=2, tech="freepdk45"
    ).replace("w_in = 1e-6", "w_in = 2e-6")))
    with pytest.raises(UserError, match="differs in params"):
        run_sweep(other, out, n_jobs=1, progress=False, check_tech=False)
    # a sub-spec (fewer points and samples) of the same sweep reuses its jobs
    sub = run_sweep(fake_spec(1, name="first", corners='["NOM"]'), out, n_jobs=1,
                    progress=False, check_tech=False)
    assert sub.ran == 0 and sub.reused == 1
    forced = run_sweep(fake_spec(2, name="second"), out, n_jobs=1, progress=False,
                       check_tech=False, force=True)
    assert forced.reused == 4  # same jobs: only the name differs
    assert json.loads((out / "identity.json").read_text())["sweep"] == "second"


def test_cli_overrides_of_the_same_spec_share_its_folder(tmp_path, monkeypatch, capsys,
                                                         fake):
    import charact.runner as runner_mod
    from charact.cli import main
    from charact.commands.engine import load_spec_with_overrides

    monkeypatch.setattr(runner_mod, "ngspice_version", lambda: "ngspice-test")
    monkeypatch.setattr(sweep_mod, "run_sweep", _no_tech_check(sweep_mod.run_sweep))
    out = tmp_path / "o"
    example = str(REPO / "examples" / "sense_amp.toml")
    # the folder of the full spec (its identity; running its 2160 jobs is not needed)
    full = load_spec_with_overrides(_Args(example), "ngspice-test")
    out.mkdir()
    write_json(out / "identity.json", full.identity())
    argv = ["sweep", example, "-o", str(out), "-j", "1", "--quiet", "--corner", "NOM",
            "--vdd", "1.0", "--temp", "27", "--samples", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    other = tmp_path / "other.toml"
    other.write_text(Path(example).read_text().replace('"sense_amp_pvt"', '"other"'))
    assert main(["sweep", str(other), "-o", str(out), "--samples", "1", "--corner", "NOM",
                 "--vdd", "1.0", "--temp", "27"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"charact: error: {out} holds sweep sense_amp_pvt (block sense_amp, "
                   "technology freepdk45; this spec differs in name); use -o for another "
                   "folder or --force to add to it"]


class _Args:
    def __init__(self, spec: str) -> None:
        self.spec = spec


def _no_tech_check(real):
    def run(*args, **kwargs):
        kwargs["check_tech"] = False
        return real(*args, **kwargs)
    return run


# ---- task payloads ---------------------------------------------------------------------

def test_task_payload_does_not_grow_with_the_sweep(tmp_path, fake):
    small, large = fake_spec(5), fake_spec(5000)
    sizes = [len(pickle.dumps(task_args(s, s.jobs[:1], tmp_path, "batch", False)[0]))
             for s in (small, large)]
    assert sizes[0] == sizes[1] and sizes[0] < 20_000, sizes
    # a job run from the slim spec gives the record the full spec gives
    a = sweep_mod.run_job(small, small.jobs[0], tmp_path / "a")
    b = sweep_mod.run_job(small.job_spec(), small.jobs[0], tmp_path / "b")
    a.pop("timing"), b.pop("timing")
    assert a["row"]["status"] == "ok" and a == b


# ---- kill -9 and resume through the command line (real ngspice) ---------------------------

@pytest.mark.spice
def test_cli_kill9_and_resume_loses_and_duplicates_nothing(tmp_path, charact_cmd):
    spec = write_spec(tmp_path / "spec.toml", name="kr", samples=4)
    full = tmp_path / "full"
    ref = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(full), "-j", "2",
                                        "--quiet", "--backend", "batch"],
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    part = tmp_path / "part"
    victim = start_cli(charact_cmd, spec, part, "--backend", "batch")
    wait_for_jobs(part, 1, victim)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    finished = {p.name: p.read_text() for p in (part / "jobs").glob("*.json")}
    assert 1 <= len(finished) < 4, "the kill should land before the end"
    assert not (part / "table.parquet").exists()

    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(part), "-j", "2",
                                         "--quiet", "--backend", "batch"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"\bran (\d+) jobs, reused (\d+)\b", proc.stdout)
    assert m and (int(m.group(1)), int(m.group(2))) == (4 - len(finished), len(finished)), \
        proc.stdout
    for name, text in finished.items():  # finished jobs untouched, not run again
        assert (part / "jobs" / name).read_text() == text
    assert len(list((part / "jobs").glob("*.json"))) == 4
    # the killed run's work folders are gone (its jobs either finished or reran)
    assert not list((part / "work").glob("*")) if (part / "work").is_dir() else True
    a = pd.read_parquet(full / "table.parquet")
    b = pd.read_parquet(part / "table.parquet")
    assert len(b) == 4 and b["key"].is_unique
    pd.testing.assert_frame_equal(a, b)
