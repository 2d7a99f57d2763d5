"""Contract of every registered block, on the default technology and on a foundry-style
one (subcircuit devices, micrometre geometry, 150 nm minimum length): defaults are valid,
the benches render, and no device is below the technology's minimum sizes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from techs import write_subckt_technology

from charact.blocks import BLOCKS, JobContext, get_block
from charact.deck import Point
from charact.runner import RunResult
from charact.tech import load_technology

# Options that keep the array benches small (the contract does not depend on the size).
SMALL = {"ima_column": {"n_dims": 4, "n_cols": 2},
         "ima_calibration": {"n_dims": 4},
         "ima_column_composed": {"n_dims": 4, "n_cols": 2}}


class Recorder:
    """Keeps the decks a bench renders instead of running them."""

    name = "recorder"

    def __init__(self) -> None:
        self.decks = []

    def version(self) -> str:
        return "recorder"

    def run(self, deck, workdir, timeout=0.0, raw=False):
        self.decks.append(deck)
        return RunResult(ok=False, reason="recorded only")


@pytest.fixture(scope="module")
def techs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tech")
    return {"freepdk45": load_technology("freepdk45"),
            "sub150": load_technology(write_subckt_technology(folder))}


@pytest.mark.parametrize("tech_name", ["freepdk45", "sub150"])
@pytest.mark.parametrize("block_name", sorted(BLOCKS))
def test_block_renders_within_the_technology(block_name, tech_name, techs, tmp_path: Path):
    tech = techs[tech_name]
    block = get_block(block_name)
    opts = block.check_options(dict(SMALL.get(block_name, {})))
    params = block.check_params({}, tech)
    # every size parameter follows the technology
    assert all(v >= tech.l_min * (1 - 1e-9) for k, v in params.items()
               if k == "l" or k.startswith("l_"))
    decks = []
    for seed in (1, None):  # Monte-Carlo first; nominal-only benches refuse it
        sim = Recorder()
        ctx = JobContext(tech=tech, point=Point("NOM", tech.vdd_nominal, 27.0, seed, 0),
                         params=params, conditions=dict(block.conditions), options=opts,
                         workdir=tmp_path / str(seed), sim=sim,
                         templates=block.load_templates(tech))
        # the recorder fails every run, which stops each bench after its first deck
        with contextlib.suppress(Exception):
            block.simulate(ctx)
        decks += sim.decks
        if sim.decks:
            break
    assert decks, f"{block_name} rendered no deck"
    for deck in decks:
        assert deck.devices, f"{deck.name}: no transistor found"
        assert min(d.l for d in deck.devices) >= tech.l_min * (1 - 1e-9)
        assert min(d.w for d in deck.devices) >= tech.w_min * (1 - 1e-9)
        assert ".end" in deck.text
        if tech_name == "sub150":
            assert "scale=1e-06" in deck.text


def test_every_block_declares_units_for_its_columns():
    for name in BLOCKS:
        block = get_block(name)
        assert all(block.unit(c) for c in block.columns), name


BOOKKEEPING = {"job", "key", "corner", "vdd", "temp", "sample", "seed", "die", "status",
               "reason", "item"}


@pytest.mark.spice
@pytest.mark.parametrize("block_name,measure", [
    ("sense_amp", {"delta_v": [1e-3, 1e-2], "delay_ref": 1e-2}),
    ("ima_cell", {"pulse_units": [1, 4, 16]}),
])
def test_a_simulated_job_returns_exactly_the_declared_columns(block_name, measure, tmp_path):
    """One real Monte-Carlo job per cheap block, on the subcircuit technology: every
    declared column comes back, and nothing comes back that has no declared unit."""
    from charact.spec import parse_spec
    from charact.sweep import run_sweep

    tech = write_subckt_technology(tmp_path / "tech")
    block = get_block(block_name)
    spec = parse_spec({"schema": "charact.sweep/1", "name": "c", "block": block_name,
                       "technology": str(tech), "measure": measure,
                       "montecarlo": {"samples": 1, "seed": 2}})
    res = run_sweep(spec, tmp_path / "out", n_jobs=1, progress=False)
    assert res.failed == 0, res.table["reason"].tolist()
    columns = set(res.table.columns) - BOOKKEEPING - set(block.conditions)
    assert set(block.columns) <= columns
    assert all(block.unit(c) for c in columns), sorted(c for c in columns
                                                       if not block.unit(c))
    assert res.table[list(block.columns)].notna().all(axis=None)
