"""Scale-out: sweeps on a Dask LocalCluster equal local ones (and resume across the two);
the persistent ngspice backend gives the batch backend's numbers, reuses loaded circuits,
keeps memory flat, survives a timeout; the ``auto`` backend choice."""

from __future__ import annotations

import json
import subprocess
import tomllib

import pandas as pd
import pytest
from test_sweep import SPEC, FakeSim, write_spec

import charact.sweep as sweep_mod
from charact.spec import parse_spec
from charact.sweep import run_sweep

pytest.importorskip("dask.distributed")


def fake_spec(samples: int):
    return parse_spec(tomllib.loads(SPEC.format(name="fake", corners='["NOM", "SS"]',
                                                vdd="1.0", samples=samples,
                                                tech="freepdk45")))


@pytest.mark.slow
def test_dask_localcluster_same_table_and_resume(tmp_path, monkeypatch):
    from charact.distributed import dask_executor

    # Thread workers see the fake simulator patched into this process.
    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
    local = run_sweep(fake_spec(4), tmp_path / "local", n_jobs=1, progress=False)
    dask = run_sweep(fake_spec(4), tmp_path / "dask", n_jobs=2, progress=False,
                     executor=dask_executor("local", processes=False))
    assert dask.ran == 8 and len(dask.table) == 8
    pd.testing.assert_frame_equal(local.table, dask.table)
    # the job files hold the same rows, written on this side
    for job in fake_spec(4).jobs:
        a = json.loads((tmp_path / "local" / "jobs" / f"{job.key}.json").read_text())
        b = json.loads((tmp_path / "dask" / "jobs" / f"{job.key}.json").read_text())
        assert a["rows"] == b["rows"]

    # resume: half the samples locally, the rest on dask, same table as all at once
    part = run_sweep(fake_spec(2), tmp_path / "mixed", n_jobs=1, progress=False)
    assert part.ran == 4
    rest = run_sweep(fake_spec(4), tmp_path / "mixed", n_jobs=2, progress=False,
                     executor=dask_executor("local", processes=False))
    assert rest.ran == 4 and rest.reused == 4
    pd.testing.assert_frame_equal(local.table, rest.table)


def test_failed_job_work_files_come_back_from_workers(tmp_path, monkeypatch):
    from charact.distributed import dask_executor

    monkeypatch.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim("offset"))

    def with_a_log(spec, job, out_dir, backend="batch", keep_work=False):
        rec = real_run_job(spec, job, out_dir, backend, keep_work)
        work = sweep_mod.work_dir(out_dir, job.key)
        work.mkdir(parents=True, exist_ok=True)
        (work / "offset_coarse.log").write_text("it failed here\n")
        return rec

    real_run_job = sweep_mod.run_job
    monkeypatch.setattr(sweep_mod, "run_job", with_a_log)
    res = run_sweep(fake_spec(1), tmp_path / "o", n_jobs=2, progress=False,
                    executor=dask_executor("local", processes=False))
    assert res.failed == 2
    for job in fake_spec(1).jobs:
        # the worker's folder name, work/<key>.<pid>: the one a failed row's reason names
        (log,) = (tmp_path / "o" / "work").glob(f"{job.key}.*/offset_coarse.log")
        assert log.read_text() == "it failed here\n"


def test_unreachable_scheduler_is_a_user_error(tmp_path):
    from charact.distributed import dask_executor
    from charact.errors import UserError

    ex = dask_executor("tcp://127.0.0.1:1", connect_timeout=2)  # nothing listens on port 1
    with pytest.raises(UserError, match="cannot reach the dask scheduler"):
        list(ex(None, [(fake_spec(1), fake_spec(1).jobs[0], tmp_path, "batch", False)], 1))


# ---- real ngspice ----------------------------------------------------------------------

@pytest.mark.spice
@pytest.mark.slow
def test_cli_local_cluster_and_persistent_equal_batch(tmp_path, charact_cmd):
    spec = write_spec(tmp_path / "spec.toml", name="so", samples=2)
    tables = {}
    for name, extra in [("batch", ["--backend", "batch"]),
                        ("dask", ["--backend", "batch", "--scheduler", "local"]),
                        ("persistent", ["--backend", "persistent"])]:
        out = tmp_path / name
        proc = subprocess.run(charact_cmd + ["sweep", str(spec), "-o", str(out), "-j", "2",
                                             "--quiet"] + extra,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert f"backend {name if name != 'dask' else 'batch'}" in proc.stdout
        tables[name] = pd.read_parquet(out / "table.parquet")
    assert (tables["batch"]["status"] == "ok").sum() >= 1
    pd.testing.assert_frame_equal(tables["batch"], tables["dask"])
    pd.testing.assert_frame_equal(tables["batch"], tables["persistent"])


def _mc_deck(seed: int | None, vg: float = 0.6):
    from charact.deck import Point, render_deck
    from charact.tech import load_technology

    body = (f"vd d 0 {{vdd}}\nvg g 0 {vg:g}\nxn1 d g 0 0 nfet w=0.2e-6 l=50e-9\n"
            ".tran 1p 20p\n.meas tran id FIND i(vd) AT=10p")
    return render_deck("mc", body, load_technology("freepdk45"),
                       Point("NOM", 1.0, 27.0, seed))


@pytest.mark.spice
def test_persistent_equals_batch_reuses_circuits_and_memory_stays_flat(tmp_path):
    from charact.persistent import STATS, NgspicePersistent, close_sessions, sessions
    from charact.runner import NgspiceBatch

    close_sessions()
    sim, batch = NgspicePersistent(max_sessions=2), NgspiceBatch()
    reuses0 = STATS.reuses
    rss = {}
    for i in range(1, 51):
        # mostly new samples of one loaded deck, every 5th run a new deck (a load)
        deck = _mc_deck(seed=i, vg=0.6 if i % 5 else 0.5 + i / 1000)
        res = sim.run(deck, tmp_path / f"p{i}", timeout=60)
        assert res.ok, res.reason
        if i <= 4:
            ref = batch.run(deck, tmp_path / f"b{i}", timeout=60)
            assert res.measures["id"] == ref.measures["id"]  # bit-identical
        if i in (10, 50):
            rss[i] = sum(s.rss() for s in sessions())
    assert STATS.reuses - reuses0 >= 35
    assert len({sim.run(_mc_deck(s), tmp_path / "d", 60).measures["id"] for s in (1, 2)}) == 2
    assert rss[50] < 1.25 * rss[10], rss
    close_sessions()


@pytest.mark.spice
def test_persistent_timeout_then_recovers(tmp_path):
    from charact.deck import Deck
    from charact.persistent import NgspicePersistent, close_sessions

    sim = NgspicePersistent()
    slow = Deck("slow", "* slow\nv1 a 0 SIN(0 1 1G)\nr1 a b 1k\nc1 b 0 1p\n.tran 1p 1m\n"
                ".end\n", ("set num_threads=1",))
    res = sim.run(slow, tmp_path / "slow", timeout=1.0)
    assert not res.ok and res.reason.startswith("timeout")
    good = sim.run(_mc_deck(3), tmp_path / "good", timeout=60)
    assert good.ok and "id" in good.measures
    bad = Deck("bad", "* bad\nv1 a 0 1\nxq a 0 nosuchcell\n.tran 1n 10n\n.end\n",
               ("set num_threads=1",))
    res = sim.run(bad, tmp_path / "bad", timeout=60)
    assert not res.ok and res.reason
    close_sessions()


@pytest.mark.spice
def test_auto_backend_picks_batch_for_a_fast_loading_library(monkeypatch):
    import charact.persistent as persistent
    from charact.tech import load_technology

    tech = load_technology("freepdk45")
    load = persistent.probe_load_time(tech)
    assert 0 <= load < persistent.AUTO_LOAD_THRESHOLD  # FreePDK45 loads in ~10 ms
    assert persistent.choose_backend(tech)[0] == "batch"
    monkeypatch.setattr(persistent, "probe_load_time", lambda tech: 3.0)
    backend, why = persistent.choose_backend(tech)
    assert backend == "persistent" and "3.00 s" in why
