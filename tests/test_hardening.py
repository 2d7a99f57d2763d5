"""Crash-safety of sweeps: kill -9 at random points, per-job timeouts, unwritable or full
results folders, two sweeps on one folder. The orchestration tests use the fake simulator
of ``test_sweep`` in subprocesses with 2 loky workers; the timeout test runs ngspice."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_sweep import SPEC, FakeSim, write_spec

import charact.sweep as sweep_mod
from charact.errors import EnvironmentFailure
from charact.spec import parse_spec
from charact.sweep import run_sweep

TESTS = Path(__file__).resolve().parent

# A sweep with the fake simulator in its own process, 2 worker processes, each deck
# taking DELAY seconds: something to kill.
DRIVER = '''
import sys, time, tomllib
from pathlib import Path
import charact.sweep as sweep
from charact.errors import UserError
from charact.spec import parse_spec
from test_sweep import SPEC, FakeSim

DELAY = float(sys.argv[3])

class SlowFake(FakeSim):
    def run(self, deck, workdir, timeout=0.0, raw=False):
        time.sleep(DELAY)
        return super().run(deck, workdir, timeout, raw)

def job(*args):
    sweep.make_simulator = lambda backend: SlowFake()
    return sweep.run_job(*args)

def executor(fn, args, n):
    from joblib import Parallel, delayed
    yield from Parallel(n_jobs=n, backend="loky", return_as="generator_unordered",
                        batch_size=1)(delayed(job)(*a) for a in args)

spec = parse_spec(tomllib.loads(SPEC.format(name="fk", corners='["NOM", "SS"]', vdd="1.0",
                                            samples=int(sys.argv[2]), tech="freepdk45")))
try:
    res = sweep.run_sweep(spec, Path(sys.argv[1]), n_jobs=2, progress=False,
                          executor=executor)
except UserError as exc:
    print(f"charact: error: {exc}", file=sys.stderr)
    sys.exit(2)
print(f"ran {res.ran} reused {res.reused}")
'''


def fake_spec(samples: int):
    return parse_spec(tomllib.loads(SPEC.format(name="fk", corners='["NOM", "SS"]', vdd="1.0",
                                                samples=samples, tech="freepdk45")))


def start_driver(tmp_path: Path, out: Path, samples: int, delay: float) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS),
                                                       os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(script), str(out), str(samples), str(delay)],
                            env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def job_files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (out / "jobs").glob("*.json")} \
        if (out / "jobs").is_dir() else {}


@pytest.fixture
def reference(tmp_path, monkeypatch):
    """The uninterrupted table of ``fake_spec(samples)``, in this process."""

    def make(samples: int) -> pd.DataFrame:
        with monkeypatch.context() as m:
            m.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
            return run_sweep(fake_spec(samples), tmp_path / f"ref{samples}", n_jobs=1,
                             progress=False).table
    return make


@pytest.mark.slow
def test_kill9_at_random_points_loses_and_duplicates_nothing(tmp_path, reference):
    samples, total = 8, 16
    out = tmp_path / "out"
    rng = random.Random(7)
    kept: dict[str, str] = {}
    mid_sweep_kills = 0
    for _ in range(4):
        before = job_files(out)
        if len(before) == total:
            break
        # Kill once a random number of further jobs has finished, plus a random delay
        # so the kill lands anywhere in a job (mid-deck, mid-write).
        target = min(total - 1, len(before) + rng.randint(1, 4))
        victim = start_driver(tmp_path, out, samples, delay=0.05)
        deadline = time.time() + 60
        while time.time() < deadline and len(job_files(out)) < target \
                and victim.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.25))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        after = job_files(out)
        for name, text in after.items():
            rec = json.loads(text)  # every file present is complete: writes are atomic
            assert rec["row"]["key"] + ".json" == name
        for name, text in kept.items():  # finished before an earlier kill: untouched
            assert after[name] == text
        mid_sweep_kills += 0 < len(after) < total
        kept = after
    assert mid_sweep_kills >= 2
    proc = start_driver(tmp_path, out, samples, delay=0.0)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"reused {len(kept)}" in stdout
    final = job_files(out)
    for name, text in kept.items():  # no finished job was run again
        assert final[name] == text
    table = pd.read_parquet(out / "table.parquet")
    assert len(table) == total and table["key"].is_unique
    pd.testing.assert_frame_equal(table, reference(samples))


@pytest.mark.slow
def test_second_sweep_on_the_same_folder_is_refused(tmp_path, reference):
    out = tmp_path / "out"
    first = start_driver(tmp_path, out, 4, delay=0.5)  # ~8 s in all
    deadline = time.time() + 60
    while time.time() < deadline and not job_files(out):
        time.sleep(0.02)
    assert first.poll() is None, "the first sweep should still be running"
    second = start_driver(tmp_path, out, 4, delay=0.0)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert err.strip().startswith("charact: error: another sweep is writing")
    assert "Traceback" not in err
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(out / "table.parquet"), reference(4))
    # once the first is done, the folder is free again
    third = start_driver(tmp_path, out, 4, delay=0.0)
    stdout, _ = third.communicate(timeout=60)
    assert third.returncode == 0 and "ran 0 reused 8" in stdout


def test_full_disk_stops_with_one_line_and_keeps_finished_jobs(tmp_path, monkeypatch,
                                                                 reference):
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    real_write = sweep_mod.write_json
    calls = {"n": 0}

    def full_after_three(path, data):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(sweep_mod, "write_json", full_after_three)
    out = tmp_path / "out"
    with pytest.raises(EnvironmentFailure) as info:
        run_sweep(fake_spec(4), out, n_jobs=1, progress=False)
    message = str(info.value)
    assert "No space left on device" in message and "\n" not in message
    assert "rerun to resume" in message
    finished = job_files(out)
    assert len(finished) == 3 and not (out / "table.parquet").exists()
    assert not list((out / "jobs").glob(".*.tmp"))

    # the disk fills up again while writing the table: jobs are all kept
    monkeypatch.setattr(sweep_mod, "write_json", real_write)

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sweep_mod, "write_table", no_space)
    with pytest.raises(EnvironmentFailure, match="No space left on device"):
        run_sweep(fake_spec(4), out, n_jobs=1, progress=False)
    assert len(job_files(out)) == 8
    monkeypatch.undo()
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    res = run_sweep(fake_spec(4), out, n_jobs=1, progress=False)
    assert res.ran == 0 and res.reused == 8
    for name, text in finished.items():
        assert job_files(out)[name] == text
    pd.testing.assert_frame_equal(res.table, reference(4))


def test_read_only_results_folder_is_one_line_and_keeps_jobs(monkeypatch, charact_cmd):
    # Root ignores permissions: run the command as nobody when the tests run as root.
    as_user: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="charact-ro-"))
    try:
        base.chmod(0o755)
        spec = write_spec(base / "spec.toml", name="ro", samples=2)
        out = base / "out"
        monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
        run_sweep(parse_spec(tomllib.loads(spec.read_text())), out, n_jobs=1,
                  progress=False)
        before = job_files(out)
        for p in [out, *out.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        cmd = as_user + charact_cmd + ["sweep", str(spec), "-o", str(out), "--samples", "3"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=base,
                              env=dict(os.environ, HOME=str(base)))
        assert proc.returncode == 3, proc.stderr  # an environment failure
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("charact: error: cannot write"), \
            proc.stderr
        assert "Permission denied" in lines[0]
        assert job_files(out) == before
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_job_timeout_covers_all_decks_of_a_job(tmp_path, monkeypatch):
    class SlowFake(FakeSim):
        def run(self, deck, workdir, timeout=0.0, raw=False):
            time.sleep(0.3)
            return super().run(deck, workdir, timeout, raw)

    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: SlowFake())
    spec = fake_spec(1)
    spec.timeout = 0.5  # two 0.3 s decks fit only once
    res = run_sweep(spec, tmp_path / "o", n_jobs=1, progress=False)
    assert res.failed == 2
    assert res.table["reason"].str.startswith("timeout after 0.5 s").all()


@pytest.mark.spice
@pytest.mark.parametrize("backend", ["batch", "persistent"])
def test_deck_running_too_long_becomes_a_timeout_row(tmp_path, monkeypatch, backend):
    from charact.deck import Deck

    class Stretch:
        """The real simulator on decks whose transient is made 10^4 times longer."""

        def __init__(self, sim):
            self.sim, self.name = sim, sim.name

        def version(self):
            return self.sim.version()

        def run(self, deck, workdir, timeout=600.0, raw=False):
            lines = deck.text.splitlines()
            for i, ln in enumerate(lines):
                if ln.startswith(".tran"):
                    tok = ln.split()
                    tok[2] = f"{float(tok[2]) * 1e4:g}"  # tstop
                    lines[i] = " ".join(tok)
            text = "\n".join(lines)
            return self.sim.run(Deck(deck.name, text + "\n", deck.spiceinit), workdir,
                                timeout, raw)

    real = sweep_mod.make_simulator
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda b: Stretch(real(b)))
    spec = parse_spec(tomllib.loads(
        SPEC.format(name="to", corners='["NOM"]', vdd="1.0", samples=1, tech="freepdk45")
        + "[run]\ntimeout = 1.5\n"))
    t0 = time.perf_counter()
    res = run_sweep(spec, tmp_path / "o", n_jobs=1, backend=backend, progress=False)
    assert time.perf_counter() - t0 < 30
    assert res.failed == 1
    assert res.table["reason"].iloc[0].startswith("timeout after 1.5 s (deck offset_coarse)")
    rec = json.loads(next((tmp_path / "o" / "jobs").glob("*.json")).read_text())
    assert rec["row"]["status"] == "failed"
    if backend == "persistent":
        from charact.persistent import close_sessions

        close_sessions()
