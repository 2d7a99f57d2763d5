"""Digital blocks of the top-k ADC: the generated netlists (logic, pruning, the shipped
file) without SPICE, and the arbiter, encoder and counter in real ngspice with a
16-input arbiter built by the same generator as the 256-input one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from charact.blocks import digital_netlist as gen
from charact.blocks import get_block
from charact.blocks.base import JobContext
from charact.deck import Point, render_deck
from charact.errors import UserError
from charact.paths import netlists_dir
from charact.runner import NgspiceBatch
from charact.spec import parse_spec
from charact.tech import load_technology
from charact.templates import load_template


def _logic(n: int, active: set[int]) -> dict[str, int | None]:
    """Logic level of every net of arbiter + encoder for static requests ``active``."""
    arb, enc = gen.arbiter_gates(n), gen.encoder_gates(n)
    both = gen.GateNetlist("both", [])
    both.gates = arb.gates + enc.gates
    levels = {"en": 1}
    for i in range(n):
        levels[f"req{i}"] = int(i in active)
        levels[f"reqb{i}"] = int(i not in active)
    _, val = gen.prune(both, levels, "x", [])
    return val


@pytest.mark.parametrize("n", [16, 256])
@pytest.mark.parametrize("active", [{5}, {3, 6, 11}, {9, 8}, {0, 255}, {127, 128},
                                    {200, 201, 255}, set(range(16)), set()])
def test_netlist_logic_grants_lowest_address(n, active):
    active = {i for i in active if i < n}
    val = _logic(n, active)
    grants = [i for i in range(n) if val[f"grant{i}"] == 1]
    want = [min(active)] if active else []
    assert grants == want
    code = sum(val[f"addr{b}"] << b for b in range(int(math.log2(n))))
    assert code == (min(active) if active else 0)


def test_shipped_template_matches_generator():
    shipped = (netlists_dir() / "topk_digital.sp").read_text()
    assert shipped == gen.template_text()
    t = load_template("topk_digital.sp")
    assert len(t.subckt("topk_arbiter256").ports) == 3 * 256 + 4
    assert len(t.subckt("topk_encoder256").ports) == 256 + 8 + 2


def test_cone_is_much_smaller_and_keeps_active_ports():
    text, ports, n_cone, n_full = gen.cone_subckt(256, [0, 127, 128, 255])
    assert n_full == 255 * 20 + gen.encoder_gates(256).mosfets()
    assert n_cone < n_full / 5
    for p in ("req0", "reqb255", "grant127", "grant128", "addr7"):
        assert p in ports
    assert "grant5 " not in text  # a constant line is not simulated


def test_bad_options_are_user_errors():
    block = get_block("topk_digital")
    with pytest.raises(UserError, match="n_inputs"):
        block.check_options({"n_inputs": 12})
    with pytest.raises(UserError, match="k must"):
        block.check_options({"k": 0})
    with pytest.raises(UserError, match="unknown"):
        block.check_options({"kk": 3})
    spec = {"schema": "charact.sweep/1", "name": "d", "block": "topk_digital",
            "technology": "freepdk45", "params": {"w_x": 1e-6}}
    with pytest.raises(UserError, match="w_x"):
        parse_spec(spec)


# ---------------------------------------------------------------------------- ngspice


def _ctx(tmp_path: Path, corner: str, vdd: float, temp: float, **opts) -> JobContext:
    block = get_block("topk_digital")
    return JobContext(tech=load_technology("freepdk45"), point=Point(corner, vdd, temp),
                      params=block.check_params({}), conditions={},
                      options=block.check_options({"n_inputs": 16, **opts}),
                      workdir=tmp_path / f"{corner}_{vdd}_{temp}", sim=NgspiceBatch(),
                      templates=block.load_templates())


@pytest.mark.spice
@pytest.mark.slow
def test_arbiter_encoder_in_spice_static_patterns(tmp_path):
    """Full 16-input netlist, request patterns held for 2 ns each: one grant, the
    lowest active address, and that address on the encoder outputs."""
    n, vdd, T = 16, 1.0, 2e-9
    patterns = [{3, 6, 11}, {6, 11}, {11, 12}, set(range(n)), {15}, {8, 9}, set()]
    body = ["vsup vdd 0 1.0", gen.tree_subckts(n)]
    for i in range(n):
        pts = ["0 0"]
        for m, pat in enumerate(patterns):
            v = vdd if i in pat else 0.0
            pts.append(f"{m * T + 50e-12:g} {v:g}")
            if m + 1 < len(patterns):
                pts.append(f"{(m + 1) * T:g} {v:g}")
        body.append(f"vr{i} req{i} 0 PWL({' '.join(pts)})")
        body.append(f"er{i} reqb{i} 0 vdd req{i} 1")
    req = " ".join(f"req{i}" for i in range(n))
    reqb = " ".join(f"reqb{i}" for i in range(n))
    grant = " ".join(f"grant{i}" for i in range(n))
    body.append(f"xa {req} {reqb} vdd {grant} any vdd 0 topk_arbiter{n}")
    body.append(f"xe {grant} addr0 addr1 addr2 addr3 vdd 0 topk_encoder{n}")
    body.append(f".tran 5p {len(patterns) * T:g} 0 20p")
    for m in range(len(patterns)):
        at = (m + 0.9) * T
        body += [f".meas tran g{m}_{i} FIND v(grant{i}) AT={at:g}" for i in range(n)]
        body += [f".meas tran a{m}_{b} FIND v(addr{b}) AT={at:g}" for b in range(4)]
    tech = load_technology("freepdk45")
    deck = render_deck("patterns", "\n".join(body), tech, Point("NOM", vdd, 27.0),
                       (load_template("topk_digital.sp"),))
    res = NgspiceBatch().run(deck, tmp_path)
    assert res.ok, res.reason
    for m, pat in enumerate(patterns):
        g = res.need(*[f"g{m}_{i}" for i in range(n)])
        granted = [i for i, v in enumerate(g) if v > vdd / 2]
        assert granted == ([min(pat)] if pat else []), (pat, g)
        assert all(v < 0.1 * vdd or v > 0.9 * vdd for v in g)
        a = res.need(*[f"a{m}_{b}" for b in range(4)])
        code = sum(int(v > vdd / 2) << b for b, v in enumerate(a))
        assert code == (min(pat) if pat else 0)


@pytest.mark.spice
@pytest.mark.slow
def test_cone_equals_full_netlist(tmp_path):
    """The pruned bench gives the full netlist's delays and dynamic energy."""
    block = get_block("topk_digital")
    full = block._arbiter(_ctx(tmp_path / "full", "NOM", 1.0, 27.0, prune=False))
    cone = block._arbiter(_ctx(tmp_path / "cone", "NOM", 1.0, 27.0, prune=True))
    for key in ("t_arbiter", "t_encoder", "t_req_addr", "energy_arb"):
        assert cone[key] == pytest.approx(full[key], rel=0.02), key
    assert full["tie_glitch"] < 0.1


@pytest.mark.spice
@pytest.mark.slow
def test_counter_stop_at_k_and_pvt_ordering(tmp_path):
    block = get_block("topk_digital")
    # STOP must be low after k-1 clock edges and high after k (the block checks it)
    for k in (3, 8):
        row = block._counter(_ctx(tmp_path / f"k{k}", "NOM", 1.0, 27.0, k=k))
        assert 0 < row["t_counter"] < 2e-9
    slow = block.simulate(_ctx(tmp_path, "SS", 0.8, 125.0))
    fast = block.simulate(_ctx(tmp_path, "FF", 1.2, 27.0))
    for key in ("t_arbiter", "t_encoder", "t_counter"):
        assert 0 < fast[key] < slow[key], key
    assert slow["t_arb"] == pytest.approx(slow["t_arbiter"] + slow["t_encoder"])
    assert slow["t_req_addr"] <= slow["t_arb"] * 1.001
    assert fast["energy_arb"] > slow["energy_arb"] > 0  # CV^2: more energy at 1.2 V
