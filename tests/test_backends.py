"""The two simulator backends give the same measurements on the same deck."""

from __future__ import annotations

import pytest

from charact.blocks import JobContext, get_block
from charact.deck import Point
from charact.runner import NgspiceBatch, read_raw
from charact.tech import load_technology


@pytest.mark.spice
def test_batch_and_pyspice_agree_on_a_sense_amp_sample(tmp_path):
    pytest.importorskip("PySpice")
    from charact.pyspice_backend import PySpiceShared

    block = get_block("sense_amp")
    tech = load_technology("freepdk45")
    rows = []
    for sim in (NgspiceBatch(), PySpiceShared(), PySpiceShared()):
        ctx = JobContext(tech=tech, point=Point("NOM", 1.0, 27.0, 11),
                         params=block.check_params({}, tech), conditions={"vcm": 0.4},
                         options=block.check_options({"delta_v": [1e-3, 1e-2, 1e-1],
                                                      "delay_ref": 1e-2}),
                         workdir=tmp_path / sim.name, sim=sim,
                         templates=block.load_templates(tech))
        rows.append(block.simulate(ctx))
    for row in rows[1:]:  # the second shared run checks that the first left nothing behind
        for key in ("offset", "delay", "energy"):
            assert row[key] == pytest.approx(rows[0][key], rel=1e-6, abs=1e-15)


@pytest.mark.spice
def test_pyspice_takes_a_deck_that_needs_gmin_stepping(tmp_path):
    """Die 22 of stream 4 needs ngspice's dynamic gmin stepping in its coarse offset deck;
    ngspice's note about it goes to stderr, which PySpice alone would call a failure."""
    pytest.importorskip("PySpice")
    from charact.pyspice_backend import PySpiceShared

    block = get_block("sense_amp")
    tech = load_technology("freepdk45")
    opts = block.check_options({"delta_v": [1e-3, 1e-2], "delay_ref": 1e-2})
    coarse = {}
    for sim in (NgspiceBatch(), PySpiceShared()):
        ctx = JobContext(tech=tech, point=Point("NOM", 1.0, 27.0, 4, 22),
                         params=block.check_params({}, tech), conditions={"vcm": 0.4},
                         options=opts, workdir=tmp_path / sim.name, sim=sim,
                         templates=block.load_templates(tech))
        rng, step = opts["offset_range"], opts["coarse_step"]
        dvs = [-rng + i * step for i in range(int(round(2 * rng / step)) + 1)]
        coarse[sim.name] = block._staircase_decisions(ctx, "offset_coarse", dvs)
        assert "gmin" in (tmp_path / sim.name / "offset_coarse.log").read_text().lower()
    assert (coarse["ngspice-batch"] == coarse[PySpiceShared.name]).all()


@pytest.mark.spice
def test_batch_reports_convergence_failure_and_reads_raw(tmp_path):
    from charact.deck import render_deck

    tech = load_technology("freepdk45")
    bad = render_deck("bad", "v1 a 0 1\nr1 a b 1k\nxq b b 0 0 nosuchcell\n.tran 1n 10n\n"
                      ".meas tran vb FIND v(b) AT=5n", tech, Point("NOM", 1.0, 27.0))
    res = NgspiceBatch().run(bad, tmp_path / "bad", timeout=60)
    assert not res.ok and res.reason
    good = render_deck("good", "v1 a 0 PWL(0 0 10n 1)\nr1 a b 1k\nc1 b 0 1p\n"
                       ".tran 0.1n 10n\n.save v(b)\n.meas tran vb FIND v(b) AT=10n", tech,
                       Point("NOM", 1.0, 27.0))
    res = NgspiceBatch().run(good, tmp_path / "good", timeout=60, raw=True)
    assert res.ok, res.reason
    waves = read_raw(res.raw)
    assert waves["time"][-1] == pytest.approx(10e-9)
    # ramp through an RC of 1 ns: v(b) lags the 0.1 V/ns ramp by ~0.1 V at the end
    assert waves["v(b)"][-1] == pytest.approx(res.measures["vb"], rel=1e-6)
    assert 0.85 < res.measures["vb"] < 0.95
