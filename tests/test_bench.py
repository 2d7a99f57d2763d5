"""The bench vocabulary (charact.bench): numbers, sources and measurements write the lines
the benches rely on, read their values back, refuse non-finite numbers, and agree with
ngspice on an RC circuit whose response is known in closed form."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from charact.bench import (
    Delay,
    FindAt,
    Integ,
    MaxOf,
    MinOf,
    When,
    clock,
    dc,
    num,
    pulse,
    pwl,
    read_all,
    staircase,
    tran,
    trapezoid,
    val,
)
from charact.runner import RunResult, parse_measures

# -- numbers ---------------------------------------------------------------------------------


def test_num_writes_six_significant_digits():
    assert num(1e-9) == "1e-09"
    assert num(0.1 + 0.2) == "0.3"
    assert num(3) == "3"
    assert num(0) == "0"
    assert num(np.float64(2.5e-12)) == "2.5e-12"
    assert num(1.23456789) == "1.23457"
    assert num(-0.45) == "-0.45"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_num_refuses_non_finite_values(bad):
    with pytest.raises(ValueError, match="finite"):
        num(bad)


def test_val_passes_expressions_through():
    assert val("{vdd}") == "{vdd}"
    assert val("10p") == "10p"
    assert val(0.5) == "0.5"


@pytest.mark.parametrize("make", [
    lambda: dc("v1", "a", math.nan),
    lambda: pulse("v1", "a", 0, 1, math.inf, 1e-12, 1e-12, 1e-9, 2e-9),
    lambda: pwl("v1", "a", [(0, 0), (1e-9, math.nan)]),
    lambda: clock("vclk", "clk", math.nan, 1e-11),
    lambda: trapezoid("Vx", "n", 1e-9, math.inf, 0.5, 3e-11),
    lambda: tran(1e-12, math.nan),
    lambda: FindAt("x", "v(a)", at=math.nan).line(),
    lambda: Delay("x", "v(a)", math.nan, "v(b)", 0.5).line(),
    lambda: Delay("x", "v(a)", 0.5, "v(b)", 0.5, td=math.inf).line(),
    lambda: Integ("x", "i(v1)", 0, math.inf).line(),
    lambda: MaxOf("x", "v(a)", 0, math.nan).line(),
    lambda: When("x", "v(a)", math.nan).line(),
])
def test_every_writer_refuses_non_finite_numbers(make):
    with pytest.raises(ValueError, match="finite"):
        make()


# -- sources ---------------------------------------------------------------------------------


def test_dc_sources():
    assert dc("vsup", "vdd", "{vdd}") == "vsup vdd 0 {vdd}"
    assert dc("vsram", "vsram", 0.5) == "vsram vsram 0 0.5"
    assert dc("vclk", "clk", 0) == "vclk clk 0 0"
    assert dc("il", "l", 1e-7) == "il l 0 1e-07"  # a current source by its name


def test_pulse_with_and_without_a_count():
    assert pulse("v1", "a", 0, "{vdd}", 1e-9, 1e-11, 2e-11, 3e-9, 8e-9) == \
        "v1 a 0 PULSE(0 {vdd} 1e-09 1e-11 2e-11 3e-09 8e-09)"
    assert pulse("v1", "a", 0.1, 0.9, 0, 1e-11, 1e-11, 1e-9, 2e-9, count=32) == \
        "v1 a 0 PULSE(0.1 0.9 0 1e-11 1e-11 1e-09 2e-09 32)"


def test_pwl_points_numbers_and_expressions():
    assert pwl("vpcb", "pcb", [(0, 0), (1e-9, 0), (1.03e-9, "{vdd}")]) == \
        "vpcb pcb 0 PWL(0 0 1e-09 0 1.03e-09 {vdd})"
    with pytest.raises(ValueError, match="point"):
        pwl("v1", "a", [])


def test_clock_is_the_comparator_clock():
    # the sense-amplifier bench's clock: rising at half a period, high half a period
    # less one edge
    assert clock("vclk", "clk", 4e-9, 50e-12) == \
        "vclk clk 0 PULSE(0 {vdd} 2e-09 5e-11 5e-11 1.95e-09 4e-09)"
    # the array's: first rise later, a narrower top, one pulse per ramp cycle
    assert clock("vclk", "clk", 4e-9, 30e-12, delay=1.2e-8, width=1.94e-9, count=32) == \
        "vclk clk 0 PULSE(0 {vdd} 1.2e-08 3e-11 3e-11 1.94e-09 4e-09 32)"
    assert clock("vclk", "clk", 2e-9, 1e-11, high_level=0.8).startswith(
        "vclk clk 0 PULSE(0 0.8 1e-09 ")


def test_trapezoid_has_its_half_points_at_t_on_and_t_on_plus_width():
    line = trapezoid("Vx0_1", "rwlp_0_1", 1e-9, 2e-9, 0.5, 30e-12)
    assert line == ("Vx0_1 rwlp_0_1 0 PWL(0 0 9.85e-10 0 1.015e-09 0.5 2.985e-09 0.5 "
                    "3.015e-09 0)")
    t = [float(x) for x in line[line.index("(") + 1:-1].split()[0::2]]
    assert (t[1] + t[2]) / 2 == pytest.approx(1e-9)
    assert (t[3] + t[4]) / 2 == pytest.approx(3e-9)


def test_staircase_holds_each_value_over_its_cycle():
    pts = staircase([0.1, 0.2, 0.3], 1e-9, 1e-11)
    want = [(0.0, 0.1), (1.1e-9, 0.1), (1.11e-9, 0.2), (2.1e-9, 0.2), (2.11e-9, 0.3)]
    assert np.allclose(pts, want, rtol=1e-12, atol=0)
    assert staircase([0.4], 1e-9, 1e-11) == [(0.0, 0.4)]
    with pytest.raises(ValueError):
        staircase([], 1e-9, 1e-11)


def test_tran():
    assert tran(1e-11, 2.8e-8, 4e-11) == ".tran 1e-11 2.8e-08 0 4e-11"
    assert tran(1e-11, 4e-9, 4e-11, uic=True) == ".tran 1e-11 4e-09 0 4e-11 uic"
    assert tran("10p", 1.45e-9, "50p") == ".tran 10p 1.45e-09 0 50p"
    assert tran(1e-12, 1e-9) == ".tran 1e-12 1e-09"


# -- measurements ----------------------------------------------------------------------------


def test_measurement_lines():
    assert FindAt("dec0", "v(dout)", at=3.9e-9).line() == \
        ".meas tran dec0 FIND v(dout) AT=3.9e-09"
    assert FindAt("i_nfet_nom", "i(vm_nfet_nom)", at=5e-4, analysis="dc").line() == \
        ".meas dc i_nfet_nom FIND i(vm_nfet_nom) AT=0.0005"
    assert Delay("td0", "v(clk)", 0.45, "v(outp)", 0.45, td=1.95e-9).line() == \
        (".meas tran td0 TRIG v(clk) VAL=0.45 TD=1.95e-09 RISE=1 "
         "TARG v(outp) VAL=0.45 TD=1.95e-09 RISE=1")
    assert Delay("td1", "v(clk)", 0.5, "v(outp1)", 0.5).line() == \
        ".meas tran td1 TRIG v(clk) VAL=0.5 RISE=1 TARG v(outp1) VAL=0.5 RISE=1"
    assert Delay("tarb", "v(req0)", "{vdd/2}", "v(grant3)", 0.5, td=1e-9, trig_edge="fall",
                 targ_edge="FALL", targ_n=2).line() == \
        (".meas tran tarb TRIG v(req0) VAL={vdd/2} TD=1e-09 FALL=1 "
         "TARG v(grant3) VAL=0.5 TD=1e-09 FALL=2")
    assert Integ("q0", "i(vsup)", 0, 4e-9).line() == ".meas tran q0 INTEG i(vsup) FROM=0 TO=4e-09"
    assert MaxOf("inp_max", "v(inp)").line() == ".meas tran inp_max MAX v(inp)"
    assert MinOf("inn_min", "v(inn)").line() == ".meas tran inn_min MIN v(inn)"
    assert MaxOf("tie_peak", "v(grant7)", 2.5e-8, 3e-8).line() == \
        ".meas tran tie_peak MAX v(grant7) FROM=2.5e-08 TO=3e-08"
    assert When("l_hi", "v(l)", 0.45, edge="FALL").line() == \
        ".meas tran l_hi WHEN v(l)=0.45 FALL=1"


def test_measurements_refuse_bad_names_edges_and_analyses():
    for bad in ("1x", "a b", "", "x-y"):
        with pytest.raises(ValueError, match="name"):
            FindAt(bad, "v(a)", at=1e-9)
    with pytest.raises(ValueError, match="edge"):
        Delay("d", "v(a)", 0.5, "v(b)", 0.5, trig_edge="up")
    with pytest.raises(ValueError, match="edge"):
        When("w", "v(a)", 0.5, edge="down")
    with pytest.raises(ValueError, match="analysis"):
        FindAt("x", "v(a)", at=1e-9, analysis="noise")


def test_measurements_are_frozen_values():
    m = FindAt("x", "v(a)", at=1e-9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.at = 2e-9  # type: ignore[misc]
    assert m == FindAt("x", "v(a)", at=1e-9)
    assert len({m, FindAt("x", "v(a)", at=1e-9)}) == 1


def test_value_reads_back_lower_cased_and_nan_when_missing():
    res = RunResult(ok=True, measures={"dec0": 0.97, "td_a": 1.5e-10})
    assert FindAt("DEC0", "v(dout)", at=1e-9).value(res) == 0.97
    assert Delay("Td_A", "v(a)", 0.5, "v(b)", 0.5).value(res) == 1.5e-10
    assert math.isnan(Integ("q9", "i(v1)", 0, 1e-9).value(res))
    assert math.isnan(MaxOf("m", "v(a)").value(RunResult(ok=False, reason="crashed")))
    vals = read_all(res, [FindAt("dec0", "v(dout)", at=1e-9), MinOf("nope", "v(a)"),
                          Delay("td_a", "v(a)", 0.5, "v(b)", 0.5)])
    assert vals.dtype == float and vals.shape == (3,)
    assert vals[0] == 0.97 and math.isnan(vals[1]) and vals[2] == 1.5e-10
    assert read_all(res, []).shape == (0,)


def test_value_reads_what_ngspice_prints():
    # the form ngspice 39 prints .meas results in (names in lower case, extra fields after)
    log = ("td0                 =  1.234560e-10 targ=  2.123456e-09 trig=  2.000000e-09\n"
           "q0                  =  -3.21000e-15 from=  0.00000e+00 to=  4.00000e-09\n"
           "inp_max             =  4.51000e-01 at=  2.10000e-09\n")
    res = RunResult(ok=True, measures=parse_measures(log))
    ms = [Delay("TD0", "v(clk)", 0.5, "v(outp)", 0.5), Integ("q0", "i(vsup)", 0, 4e-9),
          MaxOf("inp_max", "v(inp)")]
    assert read_all(res, ms) == pytest.approx([1.23456e-10, -3.21e-15, 0.451])


# -- against ngspice -------------------------------------------------------------------------

R, C = 1e3, 1e-12
TAU = R * C
TD, TR, WIDTH, PERIOD = 1e-9, 10e-12, 5e-9, 20e-9
T_FALL = TD + TR + WIDTH  # the input starts falling


def _rc_out(t: np.ndarray | float) -> np.ndarray:
    """V(out) of the RC low-pass driven by the 0 -> 1 V trapezoid: the sum of four ramp
    responses (slope +-1/TR from the corners of the trapezoid), each
    s - tau (1 - exp(-s / tau)) for s > 0."""
    t = np.asarray(t, dtype=float)

    def ramp(s: np.ndarray) -> np.ndarray:
        s = np.maximum(s, 0.0)
        return s - TAU * (1 - np.exp(-s / TAU))

    return (ramp(t - TD) - ramp(t - TD - TR) - ramp(t - T_FALL) + ramp(t - T_FALL - TR)) / TR


def _crossing(level: float, lo: float, hi: float) -> float:
    for _ in range(200):  # bisection on the rising part
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _rc_out(mid) < level else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.spice
def test_measurements_match_the_analytic_rc_response(tmp_path):
    from charact.deck import Point, render_deck
    from charact.runner import NgspiceBatch
    from charact.tech import load_technology

    stop = 12e-9
    win = (T_FALL + TR + 1e-9, T_FALL + TR + 3e-9)
    ms = {
        "find": FindAt("v_tau", "v(out)", at=TD + TAU),
        "delay": Delay("t_50", "v(in)", 0.5, "v(out)", 0.5, td=0.5 * TD),
        "when": When("t_out_half", "v(out)", 0.5, edge="RISE"),
        "integ": Integ("q_src", "i(vin)", 0, T_FALL),
        "max": MaxOf("v_peak", "v(out)"),
        "min": MinOf("v_low", "v(out)", *win),
    }
    body = "\n".join([
        pulse("vin", "in", 0, 1, TD, TR, TR, WIDTH, PERIOD),
        f"r1 in out {num(R)}",
        f"c1 out 0 {num(C)}",
        tran(1e-12, stop, 5e-12),
        *(m.line() for m in ms.values()),
    ])
    deck = render_deck("rc", body, load_technology("freepdk45"), Point("NOM", 1.0, 27.0))
    res = NgspiceBatch().run(deck, tmp_path)
    assert res.ok, res.reason
    got = {k: m.value(res) for k, m in ms.items()}

    grid = np.linspace(0, stop, 200_001)
    t_out = _crossing(0.5, TD, TD + 5 * TAU)
    want = {
        "find": float(_rc_out(TD + TAU)),
        "delay": t_out - (TD + TR / 2),  # the input crosses 0.5 V halfway up its edge
        "when": t_out,
        # the source delivers the capacitor's charge: i(vin) flows into its + node
        "integ": -C * float(_rc_out(T_FALL)),
        "max": float(_rc_out(grid).max()),
        "min": float(_rc_out(grid[(grid >= win[0]) & (grid <= win[1])]).min()),
    }
    for k, w in want.items():
        assert got[k] == pytest.approx(w, rel=0.01), (k, got[k], w)
    # a sanity check of the closed form itself: about 1 - 1/e one tau after the step
    assert want["find"] == pytest.approx(1 - math.exp(-1), rel=0.01)
    assert want["delay"] == pytest.approx(TAU * math.log(2), rel=0.01)
