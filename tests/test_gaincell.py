"""Gain-cell circuits without SPICE: the template, the blocks' options and benches, and the
grid-table lookup model (fit, interpolation, file, show/export)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from techs import write_subckt_technology

from charact import cli
from charact.blocks import BLOCKS, JobContext, get_block
from charact.deck import Point
from charact.errors import UserError
from charact.lookup import fileformat as ff
from charact.lookup.grid_table import GridTableModel, fit_grid_table, grid_points
from charact.runner import RunResult
from charact.spec import parse_spec
from charact.tech import load_technology
from charact.templates import is_size, load_template

GC_BLOCKS = ("gc_multiply", "gc_retention", "gc_readout", "gc_write")
SUBCKTS = ("gc_cell", "gc_pair", "gc_column", "gc_readout", "gc_write_driver", "gc_nand2")


def spec(block: str, measure: dict | None = None, **extra) -> dict:
    return {"schema": "charact.sweep/1", "name": "t", "block": block,
            "technology": "freepdk45", "measure": measure or {}, **extra}


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# -- the template -----------------------------------------------------------------------------

def test_template_parses_with_sizes_that_follow_the_technology(tmp_path):
    t = load_template("gain_cell.sp")
    assert t.l_ref == pytest.approx(50e-9)
    assert set(SUBCKTS) <= set(t.subckts)
    assert t.subckts["gc_cell"].ports == ("wwl", "wbl", "rwl", "rbl", "sn", "vss")
    assert t.subckts["gc_readout"].ports == ("inp", "inn", "rst", "conv", "ibn", "vpre", "out",
                                             "vdd", "vss")
    cell = t.subckts["gc_cell"].params
    assert {"w_wr", "l_wr", "w_rd", "l_rd", "c_s"} <= set(cell)
    # the column passes the cell's sizes down, so a spec can set them
    assert set(cell) <= set(t.subckts["gc_column"].params)
    assert "2409.19315" in t.text  # the paper it follows
    sub = t.for_technology(load_technology(write_subckt_technology(tmp_path)))
    for name in SUBCKTS:
        for k, v in t.subckts[name].params.items():
            want = v * 3 if is_size(k) else v  # 150 nm / 50 nm
            assert sub.subckts[name].params[k] == pytest.approx(want), (name, k)


def test_every_device_size_is_a_parameter():
    devices = [ln.split() for ln in load_template("gain_cell.sp").text.splitlines()
               if ln.lower().startswith("x") and ln.split()[5:6] in (["nfet"], ["pfet"])]
    assert len(devices) > 20
    for words in devices:
        sizes = dict(w.split("=", 1) for w in words[6:])
        assert set(sizes) == {"w", "l"}, words
        assert all(v.startswith("{") for v in sizes.values()), words


# -- the blocks -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", GC_BLOCKS)
def test_blocks_are_registered_with_units_and_a_version(name):
    assert name in BLOCKS
    block = get_block(name)
    assert block.version and block.template_files == ("gain_cell.sp",)
    assert all(block.unit(c) for c in block.columns)
    axes = getattr(block, "lookup_axes", ())
    assert set(axes) <= set(block.columns) | set(block.conditions)
    assert "2409.19315" in sys.modules[type(block).__module__].__doc__  # the paper
    assert block.check_options({}) == block.options
    assert parse_spec(spec(name)).options == block.options


BAD = [
    ("gc_multiply", {"pulses": []}, "pulses"),
    ("gc_multiply", {"pulses": [0.0]}, "pulses"),
    ("gc_multiply", {"pulses": [math.nan]}, "pulses"),
    ("gc_multiply", {"pulses": [50e-12]}, "pulses"),  # shorter than two edges
    ("gc_multiply", {"t_edge": 1e-9, "t_write": 2e-9}, "t_edge"),
    ("gc_multiply", {"v_wwl": -1.0}, "v_wwl"),
    ("gc_multiply", {"v_offset": "0.45"}, "v_offset"),
    ("gc_multiply", {"spice_options": ["reltl=1e-4"]}, "spice_options"),
    ("gc_retention", {"times": [-1e-6]}, "times"),
    ("gc_retention", {"times": []}, "times"),
    ("gc_retention", {"dv_fail": 0}, "dv_fail"),
    ("gc_retention", {"v_wwl_hold": 5.0}, "v_wwl_hold"),
    ("gc_readout", {"linear": [0.9, 0.1]}, "linear"),
    ("gc_readout", {"linear": [0.1]}, "linear"),
    ("gc_readout", {"i_ref": 0}, "i_ref"),
    ("gc_readout", {"q_in": [1e-14]}, "q_in"),
    ("gc_readout", {"t_edge": 1e-9}, "t_edge"),
    ("gc_write", {"settle_tol": -1e-3}, "settle_tol"),
    ("gc_write", {"t_wwl": 100e-12}, "t_edge"),
    ("gc_write", {"nonsense": 1}, "nonsense"),
]


@pytest.mark.parametrize("name,measure,field", BAD)
def test_bad_options_are_one_line_user_errors(name, measure, field):
    with pytest.raises(UserError) as exc:
        parse_spec(spec(name, measure))
    assert field in one_line(exc)


def test_an_unknown_condition_is_refused_in_one_line():
    with pytest.raises(UserError) as exc:
        parse_spec(spec("gc_readout", conditions={"v_store": [0.9]}))
    assert "v_store" in one_line(exc)


class Recorder:
    """Keeps the decks a bench renders; every run fails, so a bench stops at its first."""

    name = "recorder"

    def __init__(self) -> None:
        self.decks = []

    def version(self) -> str:
        return "recorder"

    def run(self, deck, workdir, timeout=0.0, raw=False):
        self.decks.append(deck)
        return RunResult(ok=False, reason="recorded only")


def first_deck(name: str, tmp_path, seed: int | None = 1, **conditions) -> str:
    tech = load_technology("freepdk45")
    block = get_block(name)
    sim = Recorder()
    ctx = JobContext(tech=tech, point=Point("NOM", 1.0, 27.0, seed, 0),
                     params=block.check_params({}, tech),
                     conditions={**block.conditions, **conditions},
                     options=block.check_options({}), workdir=tmp_path, sim=sim,
                     templates=block.load_templates(tech))
    with pytest.raises(Exception, match="recorded only"):
        block.simulate(ctx)
    return sim.decks[0].text


def test_multiply_bench_writes_the_pair_and_pulses_the_read_word_line(tmp_path):
    text = first_deck("gc_multiply", tmp_path, v_store=0.7)
    lines = text.lower().splitlines()
    # the '-' cell gets the complement about v_offset, after the zero rows
    assert any(ln.startswith("vwn wbln 0 pwl(") and " 0.2" in ln for ln in lines)
    assert any(ln.startswith("vwp wblp 0 pwl(") and " 0.7" in ln for ln in lines)
    rwl = next(ln for ln in lines if ln.startswith("vr0 rwl0"))
    assert rwl.count("{vdd}") == 1 + 2 * len(get_block("gc_multiply").options["pulses"])
    n = len(get_block("gc_multiply").options["pulses"])
    assert sum(ln.startswith(".meas tran qp") for ln in lines) == n
    # only the vectors the measurements need
    save = next(ln for ln in lines if ln.startswith(".save"))
    assert save.split()[1:] == ["i(vrp)", "i(vrn)", "v(xcol.x0.snp)", "v(xcol.x0.snn)"]


def test_retention_and_readout_benches_render(tmp_path):
    text = first_deck("gc_retention", tmp_path / "r")
    assert ".save v(sn)" in text and "xc wwl wbl vdd rbl sn 0 gc_cell" in text.lower()
    text = first_deck("gc_readout", tmp_path / "o")
    assert "iref vdd ibn 1e-05" in text
    assert "method=gear" in text  # the block's default spice_options reach the deck
    assert sum(ln.startswith(".meas tran w") for ln in text.splitlines()) == \
        len(get_block("gc_readout").options["q_in"])


# -- the grid-table model ---------------------------------------------------------------------

def synthetic_sweep(n_dies: int = 3) -> pd.DataFrame:
    """A sweep-like table: per job (v, die), rows over pulse t; q = v * t * 1e-5 plus a
    per-die offset; 'gain' the same on every row of a job."""
    rows = []
    for temp in (27.0, 85.0):
        for v in (0.0, 0.5, 1.0):
            for die in range(n_dies):
                key = f"k{temp}{v}{die}"
                for i, t in enumerate((1e-9, 2e-9, 4e-9)):
                    rows.append({"job": 0, "key": key, "corner": "NOM", "vdd": 1.0,
                                 "temp": temp, "v_store": v, "sample": die, "seed": 1,
                                 "die": die, "status": "ok", "reason": "", "item": i,
                                 "pulse": t, "q": v * t * 1e-5 * (1 + temp / 100) + die * 1e-17,
                                 "gain": 2.0 + die + v})
    return pd.DataFrame(rows)


def test_fit_interpolates_the_surface_and_keeps_job_values_once():
    table = synthetic_sweep()
    model = fit_grid_table(table, ["v_store", "pulse"], None, {"command": "test"},
                           units={"q": "C", "pulse": "s", "v_store": "V", "gain": "1"},
                           conditions=["v_store"])
    assert model.axes == ["v_store", "pulse"]
    assert model.axes_of("q") == ["v_store", "pulse"]
    assert model.axes_of("gain") == ["v_store"]  # constant within a job
    assert set(model.names) == {"q", "gain"}  # item, sample, die... are bookkeeping
    g = model.grids["NOM"]
    assert g.stats["gain"]["count"].tolist() == [[[3, 3, 3], [3, 3, 3]]]  # once per die
    assert g.stats["q"]["count"].min() == 3
    # the surface is bilinear in (v, t) per temperature, so interpolation is exact
    q = model.value("q", "NOM", vdd=1.0, temp=27.0, v_store=0.75, pulse=3e-9)
    assert q == pytest.approx(0.75 * 3e-9 * 1e-5 * 1.27 + 1e-17, rel=1e-9)
    q_t = model.values("q", "NOM", 1.0, [27.0, 56.0, 85.0], v_store=1.0, pulse=4e-9)
    assert np.all(np.diff(q_t) > 0)
    assert model.value("q", "NOM", 1.0, 27.0, stat="sigma", v_store=0.5,
                       pulse=2e-9) == pytest.approx(1e-17)
    assert model.value("gain", "NOM", 1.0, 85.0, v_store=0.25, pulse=99.0) == \
        pytest.approx(3.25)  # axes the value has no part in are ignored


def test_queries_outside_the_grid_or_without_an_axis_are_one_line_errors():
    model = fit_grid_table(synthetic_sweep(), ["v_store", "pulse"], ["q"], {})
    with pytest.raises(UserError) as exc:
        model.value("q", "NOM", 1.0, 27.0, v_store=0.5, pulse=8e-9)
    assert "pulse=8e-09 is outside" in one_line(exc)
    assert model.value("q", "NOM", 1.0, 27.0, extrapolate=True, v_store=0.5,
                       pulse=8e-9) > 0
    with pytest.raises(UserError) as exc:
        model.value("q", "NOM", 1.0, 27.0, v_store=0.5)
    assert "pulse" in one_line(exc)
    with pytest.raises(UserError) as exc:
        model.value("q", "SS", 1.0, 27.0, v_store=0.5, pulse=1e-9)
    assert "unknown corner" in one_line(exc)
    with pytest.raises(UserError) as exc:
        model.value("nope", "NOM", 1.0, 27.0)
    assert "unknown value" in one_line(exc)


def test_fit_refuses_pooling_a_varying_condition_and_bad_axes():
    table = synthetic_sweep()
    with pytest.raises(UserError) as exc:
        fit_grid_table(table, ["pulse"], ["q"], {}, conditions=["v_store"])
    assert "v_store" in one_line(exc)
    with pytest.raises(UserError) as exc:
        fit_grid_table(table, ["vdd"], ["q"], {})
    assert "vdd" in one_line(exc)
    with pytest.raises(UserError) as exc:
        fit_grid_table(table, ["nope"], ["q"], {})
    assert "nope" in one_line(exc)


def test_grid_points_merge_float_noise_but_keep_femto_scale_values():
    assert grid_points([2e-9, 2.0000000001e-9, 4e-9]).tolist() == [2e-9, 4e-9]
    assert grid_points([1e-15, 2e-15, np.nan]).tolist() == [1e-15, 2e-15]


def test_the_file_round_trips_and_show_and_export_read_it(tmp_path, capsys):
    model = fit_grid_table(synthetic_sweep(), ["v_store", "pulse"], None,
                           ff.default_provenance(command="test"), units={"q": "C"},
                           conditions=["v_store"])
    path = tmp_path / "m.json"
    model.save(path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "charact.lookup/2" and doc["kind"] == "grid_table"
    back = GridTableModel.load(path)
    assert back.value("q", "NOM", 1.0, 85.0, v_store=0.5, pulse=2e-9) == \
        model.value("q", "NOM", 1.0, 85.0, v_store=0.5, pulse=2e-9)
    from charact.lookup.export import load_model  # the loader of every kind

    any_kind = load_model(path)
    assert isinstance(any_kind, GridTableModel) and any_kind.schema == "charact.lookup/2"
    assert cli.main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "grid_table" in out and "axis v_store" in out and "gain" in out
    assert cli.main(["export", str(path), "--csv", "-o", str(tmp_path / "x")]) == 0
    frame = pd.read_csv(tmp_path / "x" / "m.grid_table.csv")
    assert {"corner", "vdd", "temp", "v_store", "pulse", "name", "mean", "sigma",
            "count"} <= set(frame.columns)
    assert len(frame) == 2 * (3 * 3 + 3)  # two temperatures: q on 3x3, gain on 3
    # a hand edit is caught by the checksum
    doc["data"]["corners"]["NOM"]["vdd"] = [1.1]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as exc:
        GridTableModel.load(path)
    assert "checksum" in one_line(exc)
