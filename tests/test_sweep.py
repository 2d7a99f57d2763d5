"""Sweeps: bad input through the CLI, orchestration with a fake simulator, and the
sense amplifier in real ngspice (offset spread, reproducibility, kill and resume)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charact.runner import RunResult
from charact.spec import parse_spec
from charact.sweep import run_sweep

SPEC = """
schema = "charact.sweep/1"
name = "{name}"
block = "sense_amp"
technology = "{tech}"
[params]
w_in = 1e-6
[conditions]
corner = {corners}
vdd = [{vdd}]
temp = [27]
vcm = [0.4]
[montecarlo]
samples = {samples}
seed = 3
[measure]
delta_v = [1e-3, 1e-2, 1e-1]
delay_ref = 1e-2
"""


def write_spec(path: Path, name="sa", corners='["NOM"]', vdd="1.0", samples=4,
               tech="freepdk45") -> Path:
    path.write_text(SPEC.format(name=name, corners=corners, vdd=vdd, samples=samples,
                                tech=tech))
    return path


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("edit,message", [
    (lambda s: s.replace('corner = ["NOM"]', 'corner = ["TT"]'), "unknown corner 'TT'"),
    (lambda s: s.replace("vdd = [1.0]", "vdd = [-1.0]"), "supply voltage must be positive"),
    (lambda s: s.replace("w_in = 1e-6", "w_bogus = 1e-6"), "unknown template parameter"),
    (lambda s: s.replace("[montecarlo]", "[montecarlo\n"), "malformed TOML"),
    (lambda s: s.replace('technology = "freepdk45"', 'technology = "gone.toml"'),
     "unknown technology"),
])
def test_bad_input_one_line_no_traceback_nothing_written(tmp_path, charact_cmd, edit, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(edit(SPEC.format(name="bad", corners='["NOM"]', vdd="1.0", samples=2,
                                     tech="freepdk45")))
    out = tmp_path / "out"
    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charact: error:"), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_missing_model_file_is_one_line(tmp_path, charact_cmd):
    from charact.tech import load_technology

    tech = tmp_path / "tech.toml"
    tech.write_text(Path(load_technology("freepdk45").source).read_text().replace(
        "pkg:c4m-pdk-freepdk45/c4m/pdk/freepdk45/freepdk45.spi", "missing.spi"))
    spec = write_spec(tmp_path / "spec.toml", tech=str(tech))
    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "model file not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_spec_file(tmp_path, charact_cmd):
    proc = subprocess.run(charact_cmd + ["sweep", str(tmp_path / "none.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "spec file not found" in proc.stderr


# ---- orchestration with a fake simulator (no measured numbers come from it) --------------

class FakeSim:
    """Answers every sense-amplifier deck from its text: decisions flip at 5 mV."""

    name = "fake"

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on

    def version(self) -> str:
        return "fake"

    def run(self, deck, workdir, timeout=0.0, raw=False):
        if self.fail_on and self.fail_on in deck.name:
            return RunResult(False, reason="timestep too small")
        if deck.name == "kickback":
            return RunResult(True, {"inp_max": 0.41, "inp_min": 0.4, "inn_max": 0.4,
                                    "inn_min": 0.39})
        measures = {}
        lines = deck.text.splitlines()
        vinp = next(ln for ln in lines if ln.startswith("vinp"))
        vinn = next(ln for ln in lines if ln.startswith("vinn"))

        def levels(line):
            nums = [float(x) for x in line[line.index("(") + 1:line.rindex(")")].split()]
            return nums[1::2][::2]  # (t, v) pairs; each level is held by two points

        dv = np.array(levels(vinp)) - np.array(levels(vinn))
        for i, d in enumerate(dv):
            measures[f"dec{i}"] = 1.0 if d > 0.005 else 0.0
            measures[f"td{i}"] = 1e-10
            measures[f"q{i}"] = -1e-14
        return RunResult(True, measures)


def test_fake_orchestration_resume_and_failures(tmp_path, monkeypatch):
    import charact.sweep as sweep_mod

    spec = parse_spec(__import__("tomllib").loads(
        SPEC.format(name="fake", corners='["NOM", "SS"]', vdd="1.0", samples=3,
                    tech="freepdk45")))
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    res = run_sweep(spec, tmp_path / "o", n_jobs=1, progress=False)
    assert res.ran == 6 and res.failed == 0
    assert np.allclose(res.table["offset"], 0.005, atol=0.004)
    # rerun: nothing to do, same table
    again = run_sweep(spec, tmp_path / "o", n_jobs=1, progress=False)
    assert again.ran == 0 and again.reused == 6
    pd.testing.assert_frame_equal(res.table, again.table)
    # a simulator failure is recorded with its reason and the sweep goes on
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim("delay"))
    failed = run_sweep(spec, tmp_path / "f", n_jobs=1, progress=False)
    assert failed.failed == 6
    assert failed.table["reason"].str.contains("timestep too small").all()
    # retry_failed reruns exactly the failed jobs
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    retried = run_sweep(spec, tmp_path / "f", n_jobs=1, progress=False, retry_failed=True)
    assert retried.ran == 6 and retried.failed == 0


def test_corrupt_job_file_is_rerun(tmp_path, monkeypatch):
    import charact.sweep as sweep_mod

    spec = parse_spec(__import__("tomllib").loads(
        SPEC.format(name="fake", corners='["NOM"]', vdd="1.0", samples=2, tech="freepdk45")))
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    run_sweep(spec, tmp_path / "o", n_jobs=1, progress=False)
    job_file = tmp_path / "o" / "jobs" / f"{spec.jobs[0].key}.json"
    job_file.write_text('{"row": ')  # a torn write from another tool
    res = run_sweep(spec, tmp_path / "o", n_jobs=1, progress=False)
    assert res.ran == 1 and len(res.table) == 2


# ---- real ngspice -------------------------------------------------------------------------

@pytest.mark.spice
@pytest.mark.slow
def test_sense_amp_offset_spread_two_corners(tmp_path, charact_cmd):
    spec = write_spec(tmp_path / "spec.toml", name="sa2", corners='["NOM", "SS"]', samples=20)
    out = tmp_path / "o"
    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(out), "-j", "2",
                                         "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out / "table.parquet")
    assert len(table) == 40
    for col in ("corner", "vdd", "temp", "seed", "offset", "delay", "status", "energy"):
        assert col in table
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 38
    # Input pair W/L = 1 um / 0.1 um with A_VT = 2.5 mV um: sigma(dVt) of the pair is
    # sqrt(2) * 2.5 / sqrt(0.1) = 11 mV; the latch adds some. 20 samples: +-35 % on sigma.
    for corner, grp in ok.groupby("corner"):
        sigma = grp["offset"].std()
        assert 0.005 < sigma < 0.035, (corner, sigma)
        assert abs(grp["offset"].mean()) < 3 * sigma / np.sqrt(len(grp)) + 0.002
    assert (ok["delay"] > 10e-12).all() and (ok["delay"] < 2e-9).all()
    assert ok.groupby("corner")["delay"].mean()["SS"] > ok.groupby("corner")["delay"].mean()[
        "NOM"]
    manifest = (out / "manifest.json").read_text()
    assert "ngspice-" in manifest and "fingerprint" in manifest


@pytest.mark.spice
@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(tmp_path, charact_cmd):
    spec = write_spec(tmp_path / "spec.toml", name="kr", samples=8)
    full = tmp_path / "full"
    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(full), "-j", "2",
                                         "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    part = tmp_path / "part"
    victim = subprocess.Popen(charact_cmd + ["sweep", str(spec), "-o", str(part), "-j", "2",
                                             "--quiet"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list((part / "jobs").glob("*.json"))) >= 3:
            break
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    finished = {p.name: p.read_text() for p in (part / "jobs").glob("*.json")}
    assert 3 <= len(finished) < 8, "the kill should land halfway"
    assert not (part / "table.parquet").exists()

    proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(part), "-j", "2",
                                         "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"reused {len(finished)}" in proc.stdout
    for name, text in finished.items():  # finished jobs untouched
        assert (part / "jobs" / name).read_text() == text
    a = pd.read_parquet(full / "table.parquet")
    b = pd.read_parquet(part / "table.parquet")
    assert len(b) == 8 and b["key"].is_unique
    pd.testing.assert_frame_equal(a, b)  # same seed -> identical numbers


def test_queued_jobs_of_a_dead_sweep_do_not_run():
    from charact.sweep import _unless_orphaned

    dead = subprocess.Popen(["true"])
    dead.wait()
    ran = []
    assert _unless_orphaned(lambda: ran.append(1), dead.pid) is None and not ran
    assert _unless_orphaned(lambda: "done", os.getpid()) == "done"


def test_a_failure_never_replaces_a_finished_job(tmp_path, monkeypatch):
    import charact.sweep as sweep_mod

    spec = parse_spec(__import__("tomllib").loads(
        SPEC.format(name="fake", corners='["NOM"]', vdd="1.0", samples=1, tech="freepdk45")))
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    good = sweep_mod.run_job(spec, spec.jobs[0], tmp_path)
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim("delay"))
    late = sweep_mod.run_job(spec, spec.jobs[0], tmp_path)  # a straggler that failed
    assert late["row"]["status"] == "ok"
    kept = (tmp_path / "jobs" / f"{spec.jobs[0].key}.json").read_text()
    assert '"status": "ok"' in kept and good["row"]["offset"] == late["row"]["offset"]
