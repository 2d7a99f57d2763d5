"""Technology, template, spec and deck checks (no simulation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from charact.deck import Point, render_deck
from charact.errors import UserError
from charact.spec import parse_spec
from charact.tech import load_technology
from charact.templates import load_template, spice_number

SA_SPEC = {
    "schema": "charact.sweep/1", "name": "t", "block": "sense_amp", "technology": "freepdk45",
    "conditions": {"corner": ["NOM", "SS"], "vdd": [1.0], "temp": [27], "vcm": [0.4]},
    "montecarlo": {"samples": 3, "seed": 5},
}


def spec(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SA_SPEC.items()}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        elif value is None:
            data.pop(section)
        else:
            data[section] = value
    return data


def test_default_technology_loads_with_its_corners():
    tech = load_technology("freepdk45")
    assert set(tech.corners) == {"NOM", "FF", "SS"}
    assert tech.model_lib.is_file()
    lib = tech.device_library("SS", mc=True)
    assert ".lib" in lib and " SS" in lib and "agauss" not in lib and "Vdvt g gi {dvt_}" in lib
    assert "agauss" not in tech.device_library("SS", mc=False)
    with pytest.raises(UserError, match="unknown corner 'TT'"):
        tech.device_library("TT", mc=False)


def test_technology_errors(tmp_path: Path):
    good = Path(load_technology("freepdk45").source).read_text()
    missing = tmp_path / "missing.toml"
    missing.write_text(good.replace(
        'model_lib = "pkg:c4m-pdk-freepdk45/c4m/pdk/freepdk45/freepdk45.spi"',
        'model_lib = "nowhere/models.lib"'))
    with pytest.raises(UserError, match="model file not found"):
        load_technology(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(UserError, match="malformed TOML"):
        load_technology(bad)
    extra = tmp_path / "extra.toml"
    extra.write_text(good + "\nsurprise = 1\n")
    with pytest.raises(UserError, match="unknown field"):
        load_technology(extra)
    with pytest.raises(UserError, match="unknown technology"):
        load_technology("no_such_tech")


def test_user_technology_with_subcircuit_devices_and_scale(tmp_path: Path):
    lib = tmp_path / "deck.lib"
    lib.write_text(".lib tt\n.subckt nch d g s b w=1 l=1\n.ends\n.endl tt\n")
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'name = "mine"\nmodel_lib = "deck.lib"\nvdd_nominal = 1.2\n'
        '[corners]\ntt = "tt"\n'
        '[devices.nmos]\nmodel = "nch"\nprefix = "X"\nvt_shift = "dvt"\n'
        'beta_shift = "dmu"\n'
        '[devices.pmos]\nmodel = "pch"\nprefix = "X"\n'
        '[netlist]\nscale = 1e-6\nspiceinit = ["set ngbehavior=hsa"]\n'
        '[mismatch]\nmethod = "pelgrom"\navt_nmos = 3e-9\n'
    )
    tech = load_technology(toml)
    text = tech.device_library("tt", mc=True)
    assert ".subckt nfet d g s b w=1e-6 l=5e-08 zvt=0 zbeta=0" in text
    assert ".param dvt_ = {zvt*3e-09/sqrt(w*l)}" in text
    assert "X0 d g s b nch w={w/1e-06} l={l/1e-06} dvt={dvt_} dmu={beta_}" in text
    # a subcircuit device without declared shift parameters: gate source and multiplier
    assert "Vdvt g gi {dvt_}" in text and "X0 d gi s b pch w={w/1e-06} l={l/1e-06} " \
        "m={beta_}" in text
    deck = render_deck("d", ".tran 1n 2n", tech, Point("tt", 1.2, 27, seed=9, die=2))
    assert "scale=1e-06" in deck.text and f"seed={Point('tt', 1.2, 27, 9, 2).stream_seed}" \
        in deck.text
    assert "set ngbehavior=hsa" in deck.spiceinit and "set num_threads=1" in deck.spiceinit


def test_template_parameters_are_checked_by_name():
    tpl = load_template("sense_amp.sp")
    sc = tpl.subckt("strongarm_sa")
    assert sc.ports[:3] == ("inp", "inn", "clk")
    assert sc.params["w_in"] == pytest.approx(1e-6)
    line = tpl.instance("sa", "strongarm_sa", list(sc.ports), {"w_in": 2e-6})
    assert "w_in=2e-06" in line
    with pytest.raises(UserError, match="unknown template parameter.*w_nope"):
        tpl.instance("sa", "strongarm_sa", list(sc.ports), {"w_nope": 1.0})


@pytest.mark.parametrize("text,value", [("0.5u", 0.5e-6), ("2meg", 2e6), ("10fF", 1e-14),
                                        ("1e-9", 1e-9), ("3", 3.0), ("4.5n", 4.5e-9)])
def test_spice_numbers(text, value):
    assert spice_number(text) == pytest.approx(value)


def test_spec_expands_into_keyed_jobs_with_fixed_seeds():
    s = parse_spec(spec())
    assert len(s.jobs) == 2 * 3
    assert len({j.key for j in s.jobs}) == len(s.jobs)
    again = parse_spec(spec())
    assert [j.key for j in again.jobs] == [j.key for j in s.jobs]
    # sample i is die i of the spec's stream, at every point
    assert [(j.point.seed, j.point.die) for j in s.jobs] == [(5, 0), (5, 1), (5, 2)] * 2
    other = parse_spec(spec(montecarlo__seed=6))
    assert {j.key for j in other.jobs}.isdisjoint({j.key for j in s.jobs})
    # a template parameter change gives new keys: finished results are never reused wrongly
    changed = parse_spec(spec(params={"w_in": 2e-6}))
    assert not {j.key for j in changed.jobs} & {j.key for j in s.jobs}


def test_spec_ranges():
    s = parse_spec(spec(conditions={"corner": "NOM", "vdd": {"start": 0.8, "stop": 1.2,
                                                               "step": 0.2}}))
    assert s.axes["vdd"] == [0.8, 1.0, 1.2]
    assert s.axes["vcm"] == [0.4]  # the block's default


@pytest.mark.parametrize("changes,message", [
    ({"conditions__corner": ["XX"]}, "unknown corner 'XX'"),
    ({"conditions__vdd": [-1.0]}, "supply voltage must be positive"),
    ({"params": {"w_bogus": 1e-6}}, "unknown template parameter"),
    ({"conditions__vbias": [1.0]}, "unknown condition"),
    ({"schema": "charact.sweep/9"}, "schema must be"),
    ({"block": "nope"}, "unknown block"),
    ({"montecarlo__samples": -2}, "samples must be a non-negative integer"),
    ({"measure": {"delta_v": []}}, "delta_v"),
    ({"extra": 1}, "unknown section"),
    ({"name": None}, "missing or empty field 'name'"),
])
def test_spec_errors_name_the_problem(changes, message):
    with pytest.raises(UserError, match=message):
        parse_spec(spec(**changes))


def test_a_sub_spec_shares_the_jobs_of_a_larger_one():
    """Keys hold the point's values and the die, never a position: a spec with one common
    mode is exactly the matching quarter of one with four, samples and all; more dies
    only add jobs."""
    big = parse_spec(spec(conditions={"corner": ["NOM", "SS"], "vcm": [0.2, 0.3, 0.4, 0.5]},
                          montecarlo__samples=4))
    small = parse_spec(spec(conditions={"corner": ["SS"], "vcm": [0.4]},
                            montecarlo__samples=2))
    keys = {j.key: j for j in big.jobs}
    assert len(big.jobs) == 2 * 4 * 4 and len(small.jobs) == 2
    for job in small.jobs:
        twin = keys[job.key]
        assert (twin.point, twin.conditions, twin.sample) == (job.point, job.conditions,
                                                              job.sample)
    # the same die at another point is another job of the same silicon
    nom = [j for j in big.jobs if j.point.corner == "NOM" and j.conditions["vcm"] == 0.4]
    assert [j.point.die for j in nom] == [0, 1, 2, 3]
    assert not {j.key for j in nom} & {j.key for j in small.jobs}
