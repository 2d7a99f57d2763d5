"""Device-keyed Monte-Carlo: a die is one die in every deck, on any technology."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from techs import write_subckt_technology

from charact.blocks import get_block
from charact.deck import Point, render_deck
from charact.errors import UserError
from charact.mismatch import check_sizes, expand, normals
from charact.runner import NgspiceBatch
from charact.tech import load_technology
from charact.techcheck import check_technology

TECH = load_technology("freepdk45")


def sa_deck(point: Point, extra_ahead: str = "", tech=TECH) -> object:
    block = get_block("sense_amp")
    tpls = block.load_templates(tech)
    sa = tpls[0]
    ports = list(sa.subckt("strongarm_sa").ports)
    body = "\n".join(x for x in [
        "vsup vdd 0 {vdd}", extra_ahead, sa.instance("sa", "strongarm_sa", ports, {}),
        ".tran 1n 2n"] if x)
    return render_deck("sa", body, tech, point, tpls)


def by_path(deck) -> dict[str, tuple[float, float]]:
    return {d.path: (d.z_vt, d.z_beta) for d in deck.devices}


def test_normals_are_keyed_reproducible_and_standard():
    assert normals(1, 2, "xsa.xgn") == normals(1, 2, "xsa.xgn")
    assert normals(1, 2, "xsa.xgn") != normals(1, 3, "xsa.xgn")
    assert normals(1, 2, "xsa.xgn") != normals(2, 2, "xsa.xgn")
    assert normals(1, 2, "xsa.xgn") != normals(1, 2, "xsa.xgp")
    z = np.array([normals(7, d, f"x{i}") for d in range(4) for i in range(5000)])
    n = len(z)
    # 20,000 pairs: the standard error of a mean is 0.007, of a std 0.005
    assert abs(z.mean(axis=0)).max() < 0.03
    assert abs(z.std(axis=0) - 1).max() < 0.025
    assert abs(np.corrcoef(z.T)[0, 1]) < 4 / np.sqrt(n)
    # tails as a normal's: P(|z| > 3) = 0.27 %
    assert 0.0015 < (abs(z) > 3).mean() < 0.0040


def test_a_device_keeps_its_values_whatever_else_the_deck_holds():
    p = Point("NOM", 1.0, 27.0, seed=1, die=3)
    alone = by_path(sa_deck(p))
    # another instance of the same subcircuit placed ahead, and other devices around
    crowded = by_path(sa_deck(p, extra_ahead="Xsb inp inn clk o1 o2 o3 o4 vdd 0 strongarm_sa\n"
                                              "Xm1 a b 0 0 nfet w=1e-6 l=1e-7"))
    assert set(alone) < set(crowded)
    assert all(crowded[k] == v for k, v in alone.items())
    assert crowded["xsb.xgn"] != crowded["xsa.xgn"]
    # the same die at another corner, supply and temperature is the same silicon
    assert by_path(sa_deck(Point("SS", 0.8, 125.0, seed=1, die=3))) == alone
    other_die = by_path(sa_deck(Point("NOM", 1.0, 27.0, seed=1, die=4)))
    assert all(other_die[k] != v for k, v in alone.items())


def test_draws_do_not_depend_on_netlist_order():
    nominal = sa_deck(Point("NOM", 1.0, 27.0),
                      extra_ahead="Xsb inp inn clk o1 o2 o3 o4 vdd 0 strongarm_sa")
    lines = nominal.text.splitlines()
    # reverse every run of instance lines: the bench's and each subcircuit's
    out, run = [], []
    for ln in lines + [""]:
        if ln.lower().startswith("x"):
            run.append(ln)
            continue
        out += run[::-1] + [ln]
        run = []
    assert out[:-1] != lines
    base = by_path(expand(nominal.text, seed=5, die=0))
    again = by_path(expand("\n".join(out[:-1]), seed=5, die=0))
    assert again == base and len(base) == 50


def test_nested_generated_benches_are_keyed_too():
    """Two array decks of one die with different input patterns (the lean column lists
    only the stacks that conduct): every stack they share has the same values."""
    from charact.column.design import make_design
    from charact.column.netlist import array_body

    block = get_block("ima_column")
    opts = block.check_options({"n_dims": 4, "n_cols": 2})
    design = make_design(opts)
    tpls = block.load_templates(TECH)
    cell = next(t for t in tpls if "dual10t" in t.subckts)
    sa = next(t for t in tpls if "strongarm_sa" in t.subckts)
    params = block.check_params({}, TECH)
    w = np.array([[3, -2, 7, 1], [0, 5, -7, 2]])
    decks = []
    for x in (np.array([5, 0, -3, 31]), np.array([0, 9, -3, 31])):
        body, _ = array_body(design.cfg, params, sa, {}, x, w, 1e-9, 1e-9)
        decks.append(by_path(render_deck("a", body, TECH, Point("NOM", 1.0, 27.0, 1, 0),
                                         (cell, sa))))
    shared = set(decks[0]) & set(decks[1])
    assert len(shared) > 60 and set(decks[0]) != set(decks[1])
    assert all(decks[0][k] == decks[1][k] for k in shared)
    assert any(k.startswith("xc1_d2_b2") for k in shared)


def test_sizes_below_the_technology_minimum_are_refused():
    devices = sa_deck(Point("NOM", 1.0, 27.0)).devices
    check_sizes(list(devices), TECH.l_min, TECH.w_min, "sa")
    with pytest.raises(UserError, match=r"xsa\.\w+ .* below the technology's l_min"):
        check_sizes(list(devices), 150e-9, 90e-9, "sa")


@pytest.mark.spice
def test_same_device_same_current_in_two_decks_of_a_die(tmp_path: Path):
    """ngspice sees what the deck says: one read stack's current is identical in a deck
    that holds it alone and in one with another stack placed ahead of it."""
    block = get_block("ima_cell")
    tpls = block.load_templates(TECH)
    cell = tpls[0]
    stack = cell.instance("s1", "rd_stack", ["bl", "rwl", "g", "0"], {})

    def current(die: int, ahead: bool) -> float:
        body = ["vbl bl 0 0.4", "vrwl rwl 0 0.5", "vg g 0 0.5"]
        if ahead:
            body += ["vbl0 bl0 0 0.4", cell.instance("s0", "rd_stack", ["bl0", "rwl", "g",
                                                                        "0"], {})]
        body += [stack, ".dc vbl 0.4 0.401 0.001", ".meas dc i1 FIND i(vbl) AT=0.4005"]
        deck = render_deck("stack", "\n".join(body), TECH, Point("NOM", 1.0, 27.0, 1, die),
                           (cell,))
        res = NgspiceBatch().run(deck, tmp_path / f"d{die}{ahead}")
        assert res.ok, res.reason
        return res.measures["i1"]

    alone, crowded = current(0, False), current(0, True)
    assert alone == pytest.approx(crowded, rel=1e-9)
    assert abs(current(1, False) / alone - 1) > 1e-4  # another die differs


# -- technologies ----------------------------------------------------------------------

@pytest.mark.spice
def test_subcircuit_technology_passes_its_check(tmp_path: Path):
    tech = load_technology(write_subckt_technology(tmp_path))
    probes = check_technology(tech, use_cache=False)
    assert set(probes) == {"NOM", "FF", "SS"}
    for p in probes["NOM"]:
        assert p.i_beta / p.i_nom == pytest.approx(1.10, rel=1e-3)  # the multiplier is exact


BAD_TECHS = {
    "misspelled model": ({"nmos": '[devices.nmos]\nmodel = "nch15"\nprefix = "X"'},
                         r"\[devices.nmos\] model = 'nch15': no such subcircuit"),
    "wrong section": ({"corners": '[corners]\nNOM = "TT"'},
                      r"\[corners\] NOM = 'TT': no such section .* \(sections: NOM, FF, SS\)"),
    "shift parameter the subcircuit ignores": (
        {"nmos": '[devices.nmos]\nmodel = "nch150"\nprefix = "X"\nvt_shift = "delvto"'},
        r"\[devices.nmos\] vt_shift = 'delvto': a 50 mV threshold shift does not reach"),
    "current factor the subcircuit ignores": (
        {"pmos": '[devices.pmos]\nmodel = "pch150"\nprefix = "X"\nbeta_shift = "mulu0"'},
        r"\[devices.pmos\] beta_shift = 'mulu0': .* ignores that parameter"),
    "device of the other polarity": (
        {"nmos": '[devices.nmos]\nmodel = "pch150"\nprefix = "X"'},
        r"\[devices.nmos\] model = 'pch150' is not an on nmos device"),
    "NaN scale": ({"netlist": "[netlist]\nscale = nan"}, r"field 'scale' must be a finite"),
    "NaN A_VT": ({"mismatch": '[mismatch]\nmethod = "pelgrom"\navt_nmos = nan'},
                 r"field 'avt_nmos' must be a finite number"),
    "A_VT in mV*um": ({"mismatch": '[mismatch]\nmethod = "pelgrom"\navt_nmos = 2.5'},
                      r"field 'avt_nmos' is in V\*m"),
    "Pelgrom without coefficients": ({"mismatch": '[mismatch]\nmethod = "pelgrom"'},
                                     r"method 'pelgrom' needs at least one"),
    "negative l_min": ({"l_min": "l_min = -1e-9"}, r"field 'l_min' must be a positive"),
}


def _sa_spec(folder: Path, tech: Path, samples: int = 2) -> Path:
    spec = folder / "spec.toml"
    spec.write_text(f'schema = "charact.sweep/1"\nname = "sa"\nblock = "sense_amp"\n'
                    f'technology = "{tech}"\n[montecarlo]\nsamples = {samples}\n')
    return spec


@pytest.mark.spice
@pytest.mark.parametrize("case", sorted(BAD_TECHS))
def test_technology_mistakes_end_in_one_line_before_anything_is_written(
        case, tmp_path: Path, charact_cmd):
    fields, message = BAD_TECHS[case]
    tech = write_subckt_technology(tmp_path / "tech", **fields)
    out = tmp_path / "out"
    proc = subprocess.run([*charact_cmd, "sweep", str(_sa_spec(tmp_path, tech)), "-o",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charact: error: "), proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.spice
def test_library_without_sections_and_garbage_library(tmp_path: Path, charact_cmd):
    flat = tmp_path / "flat.lib"
    flat.write_text(".model nch150 nmos level=54\n")
    garbage = tmp_path / "garbage.lib"
    garbage.write_text(".lib NOM\nthis is not spice\nxq 1 2 nothing_here\n.endl NOM\n"
                       ".lib FF\n.endl FF\n.lib SS\n.endl SS\n")
    for lib, message in ((flat, r"no such section .*sections: none"),
                         (garbage, r"model = 'nch150': no such subcircuit|cannot load")):
        tech = write_subckt_technology(tmp_path / lib.stem,
                                       model_lib=f'model_lib = "{lib}"')
        out = tmp_path / f"out_{lib.stem}"
        proc = subprocess.run([*charact_cmd, "sweep", str(_sa_spec(tmp_path, tech)), "-o",
                               str(out)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr
        assert re.search(message, proc.stderr), proc.stderr
        assert not out.exists()


@pytest.mark.spice
@pytest.mark.slow
def test_subcircuit_technology_offset_matches_plain_devices_die_for_die(tmp_path: Path):
    """The same dies of the StrongARM SA on FreePDK45 as plain M devices (threshold through
    delvto) and wrapped in subcircuits with micrometre geometry (threshold through the
    gate-series source): the offsets agree die for die, so the subcircuit technology
    receives the whole mismatch (before, its sigma was exactly 0)."""
    from charact.spec import parse_spec
    from charact.sweep import run_sweep

    sub = load_technology(write_subckt_technology(tmp_path / "tech"))
    params = get_block("sense_amp").check_params({}, sub)  # the 150 nm sizes, on both
    offsets = {}
    for name, tech in (("plain", "freepdk45"), ("sub", str(sub.source))):
        spec = parse_spec({"schema": "charact.sweep/1", "name": name, "block": "sense_amp",
                           "technology": tech, "params": params,
                           "montecarlo": {"samples": 4, "seed": 11}})
        res = run_sweep(spec, tmp_path / name, n_jobs=2, progress=False)
        assert res.failed == 0, res.table["reason"].unique()
        offsets[name] = res.table.sort_values("die")["offset"].to_numpy()
    plain, wrapped = offsets["plain"], offsets["sub"]
    assert plain.std() > 2e-3  # a real spread (the nominal offset is below 0.25 mV)
    # paired: within two fine steps of the offset search (0.25 mV each)
    assert np.abs(plain - wrapped).max() <= 0.5e-3 + 1e-9, (plain, wrapped)


def test_render_exports_a_die(tmp_path: Path, charact_cmd):
    import csv

    spec = _sa_spec(tmp_path, "freepdk45")
    out = tmp_path / "deck"
    proc = subprocess.run([*charact_cmd, "render", str(spec), "-o", str(out), "--die", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "offset_coarse.mismatch.csv").read_text().splitlines()))
    assert len(rows) == 25
    for r in rows:
        z = normals(1, 3, r["path"])
        assert (float(r["z_vt"]), float(r["z_beta"])) == pytest.approx(z, rel=1e-12)
        area = float(r["w"]) * float(r["l"])
        assert float(r["dvt"]) == pytest.approx(z[0] * 2.5e-9 / np.sqrt(area), rel=1e-9)
    bad = subprocess.run([*charact_cmd, "render", str(spec), "-o", str(out), "--die", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--die must be >= 0" in bad.stderr
