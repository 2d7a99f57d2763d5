"""How failures are told apart and reported.

A failed simulation is a row whose reason quotes ngspice's own message (from real
ngspice 39 output) and names the log that shows it. A sweep whose every job failed
exits 1. A machine problem (ngspice or its shared library missing or not runnable, a
full or read-only disk) is never stored as a job's result: the sweep stops with one
line and exit status 3, keeping what finished before."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_sweep import FakeSim, write_spec

import charact.runner as runner_mod
import charact.sweep as sweep_mod
from charact import cli
from charact.deck import Deck, Point, render_deck
from charact.errors import EnvironmentFailure, SimulatorMissing
from charact.runner import NgspiceBatch, RunResult, failure_reason
from charact.spec import parse_spec
from charact.sweep import count_failures, run_sweep
from charact.tech import load_technology

TESTS = Path(__file__).resolve().parent


def job_records(out: Path) -> list[Path]:
    return sorted((out / "jobs").glob("*.json")) if (out / "jobs").is_dir() else []


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charact: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def lock_is_free(out: Path) -> bool:
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@pytest.fixture
def fake_ngspice_version(monkeypatch):
    """The version the CLI asks ngspice for, answered without running it (the fake
    simulator has none)."""
    monkeypatch.setattr(runner_mod, "ngspice_version", lambda: "ngspice-test")


# ---- ngspice's message, from its real output ---------------------------------------------

def _deck(name: str, body: str, lib_section: str | None = None) -> Deck:
    tech = load_technology("freepdk45")
    deck = render_deck(name, body, tech, Point("NOM", 1.0, 27.0))
    if lib_section is not None:
        lines = [f".lib '{tech.model_lib}' {lib_section}" if ln.startswith(".lib ") else ln
                 for ln in deck.text.splitlines()]
        deck = Deck(name, "\n".join(lines) + "\n", deck.spiceinit)
    return deck


UNKNOWN_MODEL = "v1 a 0 1\nr1 a b 1k\nm1 b b 0 0 NOSUCH_MODEL w=1u l=50n\n.tran 1n 10n\n"


def _simulator(backend: str):
    if backend == "pyspice":
        pytest.importorskip("PySpice")
        from charact.pyspice_backend import PySpiceShared, library_path

        try:
            library_path()
        except SimulatorMissing as exc:
            pytest.skip(str(exc))
        return PySpiceShared()
    if backend == "persistent":
        from charact.persistent import NgspicePersistent

        return NgspicePersistent()
    return NgspiceBatch()


@pytest.mark.spice
@pytest.mark.parametrize("backend", ["batch", "persistent", "pyspice"])
def test_unknown_model_reason_quotes_the_line_and_the_message(tmp_path, backend):
    sim = _simulator(backend)
    try:
        res = sim.run(_deck("um", UNKNOWN_MODEL), tmp_path, timeout=60)
    finally:
        if backend == "persistent":
            from charact.persistent import close_sessions

            close_sessions()
    assert not res.ok
    # ngspice 39: "Error on line 5 or its substitute:" / the line / the message
    assert res.reason.startswith("Error on line"), res.reason
    assert "m1 b b 0 0 nosuch_model" in res.reason
    assert res.reason.endswith("could not find a valid modelname")
    assert "\n" not in res.reason and len(res.reason) <= 300
    assert "could not find a valid modelname" in (tmp_path / "um.log").read_text()


@pytest.mark.spice
def test_bad_lib_section_is_named(tmp_path):
    res = NgspiceBatch().run(_deck("bl", "v1 a 0 1\nr1 a 0 1k\n.op\n", "NOSUCHCORNER"),
                             tmp_path, timeout=60)
    assert not res.ok
    assert res.reason.startswith("ERROR, library file ")
    assert res.reason.endswith("section definition NOSUCHCORNER not found")


@pytest.mark.spice
@pytest.mark.parametrize("body,message", [
    ("v1 a 0 foo\nr1 a 0 1k\n.tran 1n 10n\n",
     "Error on line 2 or its substitute: v1 a 0 foo unknown parameter (foo)"),
    ("v1 a 0 1\nr1 a 0 1k\n.tran 1n\n",
     "Error on line 4 or its substitute: .tran 1n TSTOP is invalid, must be greater than "
     "zero."),
    ("v1 a 0 1\nr1 a b 1k\nxq b b 0 0 nosuchcell\n.tran 1n 10n\n",
     "Error: unknown subckt: xq b b 0 0 nosuchcell"),
])
def test_syntax_errors_keep_ngspices_words(tmp_path, body, message):
    deck = Deck("syn", "* syntax\n" + body + ".end\n", ())
    res = NgspiceBatch().run(deck, tmp_path, timeout=60)
    assert not res.ok and res.reason == message


@pytest.mark.spice
def test_a_line_ngspice_drops_silently_gives_the_exit_status(tmp_path):
    # ngspice 39 drops "r1 a b" (no value) without a word and exits 1.
    deck = Deck("silent", "* silent\nv1 a 0 1\nr1 a b\nc1 b 0 1p\n.tran 1n 10n\n.end\n", ())
    res = NgspiceBatch().run(deck, tmp_path, timeout=60)
    assert not res.ok and res.reason.startswith("ngspice exited with status 1")


def test_failure_reason_blocks_and_limits():
    log = ("Circuit: * an error in the title\n\nwarning, can't find model 'x' from line\n"
           "Error on line:\n  m.x1.m0 d g s b  x   w= 1e-6\ncould not find a valid modelname\n"
           "    Simulation interrupted due to error!\n")
    assert failure_reason(log) == ("Error on line: m.x1.m0 d g s b x w= 1e-6 could not find "
                                   "a valid modelname")
    # a message that comes before ngspice's closing line
    assert failure_reason('\nToo few parameters for subcircuit type "foo"\n'
                          "    Simulation interrupted due to error!\n") \
        == 'Too few parameters for subcircuit type "foo"'
    long = "Error on line 3 or its substitute:\n" + "x" * 1000 + "\nbad\n"
    assert len(failure_reason(long)) == 300 and failure_reason(long).endswith("...")
    assert failure_reason("all fine\n") == ""


# ---- a failed row names its log ----------------------------------------------------------

class _WrongModel:
    """The real simulator on decks whose PMOS model name does not exist."""

    def __init__(self, sim) -> None:
        self.sim, self.name = sim, sim.name

    def version(self) -> str:
        return self.sim.version()

    def run(self, deck, workdir, timeout=600.0, raw=False):
        text = deck.text.replace("PMOS_VTG", "NOSUCH_PMOS")
        return self.sim.run(Deck(deck.name, text, deck.spiceinit), workdir, timeout, raw)


def spec_of(path: Path):
    return parse_spec(tomllib.loads(path.read_text()))


@pytest.mark.spice
def test_failed_row_ends_with_its_log(tmp_path, monkeypatch):
    real = sweep_mod.make_simulator
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: _WrongModel(real(b)))
    out = tmp_path / "o"
    res = run_sweep(spec_of(write_spec(tmp_path / "s.toml", samples=2)), out, n_jobs=1,
                    progress=False)
    assert res.failed == 2
    for reason, key in zip(res.table["reason"], res.table["key"], strict=True):
        assert reason.startswith("offset_coarse: Error on line"), reason
        assert "could not find a valid modelname (log: work/" in reason
        rel = reason.rsplit("(log: ", 1)[1].rstrip(")")
        assert rel.startswith(f"work/{key}.") and rel.endswith("/offset_coarse.log")
        assert "could not find a valid modelname" in (out / rel).read_text()
    # the summary counts them as one kind: only the sampled numbers differ
    (n, example), = count_failures(res.table)
    assert n == 2 and example in set(res.table["reason"])


def test_internal_error_row_names_its_traceback(tmp_path, monkeypatch):
    class Buggy(FakeSim):
        def run(self, deck, workdir, timeout=0.0, raw=False):
            raise ValueError("a bug in a bench")

    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: Buggy())
    out = tmp_path / "o"
    res = run_sweep(spec_of(write_spec(tmp_path / "s.toml", samples=1)), out, n_jobs=1,
                    progress=False)
    reason = res.table["reason"].iloc[0]
    assert reason.startswith("internal error: ValueError: a bug in a bench (traceback: work/")
    rel = reason.rsplit("(traceback: ", 1)[1].rstrip(")")
    assert "ValueError: a bug in a bench" in (out / rel).read_text()


# ---- exit status of the sweep command ----------------------------------------------------

def test_all_jobs_failed_exits_1_with_reasons_counted(tmp_path, monkeypatch, capsys,
                                                      fake_ngspice_version):
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: FakeSim("offset"))
    spec = write_spec(tmp_path / "s.toml", samples=3)
    argv = ["sweep", str(spec), "-o", str(tmp_path / "o"), "-j", "1", "--quiet",
            "--backend", "batch"]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "failures:\n  3 x offset_coarse: timestep too small" in captured.out
    assert "charact: all 3 jobs failed" in captured.err
    # a rerun reuses the failed jobs, and they still all failed
    assert cli.main(argv) == 1


def test_some_jobs_failed_exits_0_and_counts_them(tmp_path, monkeypatch, capsys,
                                                  fake_ngspice_version):
    class FailsAtSS(FakeSim):
        def run(self, deck, workdir, timeout=0.0, raw=False):
            lib = next(ln for ln in deck.text.splitlines() if ln.startswith(".lib"))
            if lib.split()[-1] == "SS":
                return RunResult(False, reason="timestep too small")
            return super().run(deck, workdir, timeout, raw)

    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: FailsAtSS())
    spec = write_spec(tmp_path / "s.toml", corners='["NOM", "SS"]', samples=2)
    assert cli.main(["sweep", str(spec), "-o", str(tmp_path / "o"), "-j", "1", "--quiet",
                     "--backend", "batch"]) == 0
    out = capsys.readouterr().out
    assert "ran 4 jobs, reused 0, failed 2" in out
    assert "failures:\n  2 x offset_coarse: timestep too small" in out


def test_sweep_help_documents_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for status in ("0 the sweep finished", "1 every job failed", "2 user error",
                   "3 environment error"):
        assert status in text


# ---- environment failures: one line, exit 3, no job recorded -----------------------------

def test_ngspice_missing_from_path_is_one_line(tmp_path, charact_cmd):
    spec = write_spec(tmp_path / "s.toml", samples=2)
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True,
                          env=dict(os.environ, PATH=str(empty)))
    assert proc.returncode == 3
    assert one_error_line(proc.stderr).startswith("charact: error: ngspice not found on PATH")
    assert not job_records(tmp_path / "o")


@pytest.mark.parametrize("script,message", [
    (None, "is not executable"),
    ("#!/bin/sh\necho 'ngspice: error while loading shared libraries: libfoo.so.1: cannot "
     "open shared object file' >&2\nexit 127\n", "does not run: ngspice: error while loading"),
])
def test_ngspice_that_does_not_run_is_one_line(tmp_path, charact_cmd, script, message):
    spec = write_spec(tmp_path / "s.toml", samples=2)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "ngspice"
    exe.write_text(script or "not a program\n")
    exe.chmod(0o755 if script else 0o644)
    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True,
                          env=dict(os.environ, PATH=str(bin_dir)))
    if script is None and os.geteuid() == 0 and proc.returncode != 3:
        pytest.skip("root may execute any file")
    assert proc.returncode == 3, proc.stderr
    assert message in one_error_line(proc.stderr)
    assert not job_records(tmp_path / "o")


def test_pyspice_without_its_library_stops_before_any_job(tmp_path, monkeypatch, capsys,
                                                          fake_ngspice_version):
    import charact.pyspice_backend as pyspice_mod

    monkeypatch.delenv("NGSPICE_LIBRARY_PATH", raising=False)
    monkeypatch.setattr(pyspice_mod, "_INSTANCE", None)
    monkeypatch.setattr(pyspice_mod, "library_candidates", lambda: [])
    spec = write_spec(tmp_path / "s.toml", samples=2)
    out = tmp_path / "o"
    assert cli.main(["sweep", str(spec), "-o", str(out), "-j", "1", "--quiet",
                     "--backend", "pyspice"]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert "ngspice shared library (libngspice.so.0) not found" in line
    assert "apt-get install -y libngspice0" in line
    assert not job_records(out) and not (out / "work").exists()
    assert lock_is_free(out)


# The library is missing only in the loky workers (the check before the jobs is skipped):
# what a worker raises comes back as the same one line.
WORKER_DRIVER = '''
import sys
import charact.runner as runner
import charact.sweep as sweep
from charact import cli

runner.ngspice_version = lambda: "ngspice-test"
sweep.check_backend = lambda backend: None
sys.exit(cli.main(sys.argv[1:]))
'''


def test_environment_failure_in_a_loky_worker_is_one_line(tmp_path):
    spec = write_spec(tmp_path / "s.toml", samples=4)
    out = tmp_path / "o"
    driver = tmp_path / "driver.py"
    driver.write_text(WORKER_DRIVER)
    env = dict(os.environ, NGSPICE_LIBRARY_PATH=str(tmp_path / "gone" / "libngspice.so.0"))
    proc = subprocess.run([sys.executable, str(driver), "sweep", str(spec), "-o", str(out),
                           "-j", "2", "--quiet", "--backend", "pyspice"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3, proc.stderr
    line = one_error_line(proc.stderr)
    assert f"NGSPICE_LIBRARY_PATH={tmp_path / 'gone' / 'libngspice.so.0'} is not a file" \
        in line
    assert not job_records(out) and lock_is_free(out)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_unwritable_work_folder_stops_the_sweep_and_keeps_finished_jobs(tmp_path,
                                                                        monkeypatch, code):
    workdirs: list[Path] = []

    class DiskFills(FakeSim):
        """The first job runs; then the work folder cannot be written."""

        def run(self, deck, workdir, timeout=0.0, raw=False):
            if workdir not in workdirs:
                workdirs.append(workdir)
            if len(workdirs) > 1:
                raise OSError(code, os.strerror(code), str(workdir / f"{deck.name}.cir"))
            return super().run(deck, workdir, timeout, raw)

    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: DiskFills())
    out = tmp_path / "o"
    spec = spec_of(write_spec(tmp_path / "s.toml", samples=3))
    with pytest.raises(EnvironmentFailure) as info:
        run_sweep(spec, out, n_jobs=1, progress=False)
    message = str(info.value)
    assert "\n" not in message and os.strerror(code) in message
    assert message.startswith("cannot write ") and "rerun to resume" in message
    records = job_records(out)
    assert len(records) == 1  # the job that finished, and no failed rows
    assert json.loads(records[0].read_text())["row"]["status"] == "ok"
    assert lock_is_free(out)


def test_environment_failure_on_a_dask_worker_comes_back_whole(tmp_path, monkeypatch, capfd):
    pytest.importorskip("dask.distributed")
    from charact.distributed import dask_executor

    class Gone(FakeSim):
        def run(self, deck, workdir, timeout=0.0, raw=False):
            raise SimulatorMissing("ngspice not found on PATH")

    # Thread workers see what is patched here; the check before the jobs would stop
    # the sweep before any worker ran.
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: Gone())
    monkeypatch.setattr(sweep_mod, "check_backend", lambda b: None)
    out = tmp_path / "o"
    with pytest.raises(SimulatorMissing, match="ngspice not found on PATH"):
        run_sweep(spec_of(write_spec(tmp_path / "s.toml", samples=3)), out, n_jobs=2,
                  progress=False, executor=dask_executor("local", processes=False))
    assert not job_records(out) and lock_is_free(out)
    assert "Traceback" not in capfd.readouterr().err  # not logged as a failed task
