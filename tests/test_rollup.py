"""Roll-up: the paper's equations (3)-(4), α distributions, input precedence, CLI."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charact.cli import main
from charact.errors import UserError
from charact.rollup import (
    EnergyInputs,
    MacroInputs,
    MeasuredSources,
    alpha_spread,
    claim_readings,
    gather_inputs,
    load_alpha_stats,
    load_config,
    macro_energies,
    macro_latencies,
    read_delays,
    run_rollup,
    t_conv_sm,
    t_dtopk_sm,
    t_ima_arb,
    t_topkima_sm,
)
from charact.rollup.latency import ima_arb_branch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rollup_paper.toml"

# The paper's inputs in nanoseconds (IV-B), written out here independently of the package.
D, K, TWR, TNL, TPWM, TCLK, ALPHA, TARB, TCLK_SORT = 384, 5, 320.0, 6.5, 62.0, 4.0, 0.31, 2.08, 0.5
TIMA = 32 * TCLK


def _sig3(x: float) -> str:
    return f"{x:.3g}"


def _paper_ratios_by_hand() -> tuple[float, float]:
    # Per query: conv converts every key and exponentiates all d; Dtopk sorts (d·k compares
    # at d = 384 since 384·5 < 384·log2 384), topkima stops the ramp at α.
    per_query_conv = TPWM + TIMA + D * TNL  # 62 + 128 + 2496 = 2686 ns
    sort_steps = D * K if D * math.log(D, 2) > D * K else D * math.log(D, 2)
    per_query_dtopk = TPWM + TIMA + sort_steps * TCLK_SORT + K * TNL  # 1182.5 ns
    ima_arb = ALPHA * TIMA + TARB
    if ima_arb < TCLK + K * TARB:
        ima_arb = TCLK + K * TARB
    per_query_top = TPWM + ima_arb + K * TNL  # 136.26 ns
    top = TWR + D * per_query_top
    return (TWR + D * per_query_conv) / top, (TWR + D * per_query_dtopk) / top


def test_paper_inputs_give_19_6_and_8_6():
    by_hand_conv, by_hand_dtopk = _paper_ratios_by_hand()
    assert _sig3(by_hand_conv) == "19.6"
    assert _sig3(by_hand_dtopk) == "8.63"
    inp = MacroInputs()  # defaults are the paper's inputs
    top = t_topkima_sm(inp)
    assert _sig3(t_conv_sm(inp) / top) == _sig3(by_hand_conv)
    assert _sig3(t_dtopk_sm(inp) / top) == _sig3(by_hand_dtopk)
    # Absolute latency too (seconds): T_topkima = 320 + 384·136.26 ns.
    assert top == pytest.approx((TWR + D * (TPWM + ALPHA * TIMA + TARB + K * TNL)) * 1e-9)
    # The term breakdown sums to the equations.
    conv, dtopk, topk = macro_latencies(inp)
    assert conv.total == pytest.approx(t_conv_sm(inp))
    assert dtopk.total == pytest.approx(t_dtopk_sm(inp))
    assert topk.total == pytest.approx(top)


def test_topkima_latency_rises_with_alpha_and_k():
    inp = MacroInputs()
    alphas = np.linspace(0.01, 1.0, 100)
    t = np.asarray(t_topkima_sm(inp, alphas))
    assert np.all(np.diff(t) >= 0)
    assert t[-1] > t[0]
    ks = range(1, 60)
    tk = [float(t_topkima_sm(replace(inp, k=k))) for k in ks]
    assert all(b > a for a, b in zip(tk, tk[1:], strict=False))


def test_ima_arb_switches_branch_where_expected():
    inp = MacroInputs()
    # ramp branch α·T_ima + T_arb meets the floor T_clk + k·T_arb at α* = (4 + 4·2.08)/128.
    a_star = (TCLK + (K - 1) * TARB) / TIMA
    below, above = a_star * 0.9, a_star * 1.1
    assert ima_arb_branch(inp, below) == "arbiter"
    assert ima_arb_branch(inp, above) == "ramp"
    # Flat below α*, slope T_ima above it.
    assert float(t_ima_arb(inp, below)) == pytest.approx((TCLK + K * TARB) * 1e-9)
    assert float(t_ima_arb(inp, 0.5 * below)) == pytest.approx(float(t_ima_arb(inp, below)))
    slope = (float(t_ima_arb(inp, 0.6)) - float(t_ima_arb(inp, 0.5))) / 0.1
    assert slope == pytest.approx(TIMA * 1e-9)
    # At α = 0.31 the arbiter floor takes over once k·T_arb outgrows the ramp: k ≥ 19.
    k_star = math.ceil((ALPHA * TIMA + TARB - TCLK) / TARB)
    assert ima_arb_branch(replace(inp, k=k_star - 1)) == "ramp"
    assert ima_arb_branch(replace(inp, k=k_star)) == "arbiter"


def test_alpha_distribution_summary():
    inp = MacroInputs()
    rng = np.random.default_rng(3)
    samples = np.concatenate([rng.uniform(0.02, 0.08, 50), rng.uniform(0.2, 0.9, 150)])
    s = alpha_spread(inp, samples)
    per_sample = [
        TWR + D * (TPWM + max(a * TIMA + TARB, TCLK + K * TARB) + K * TNL) for a in samples
    ]
    assert s.n == 200
    assert s.alpha_mean == pytest.approx(samples.mean())
    assert s.t_mean == pytest.approx(np.mean(per_sample) * 1e-9)
    assert s.t_p95 == pytest.approx(np.percentile(per_sample, 95) * 1e-9)
    assert s.t_p5 <= s.t_p50 <= s.t_p95
    # The max() makes the mean over samples exceed eq. (4) at the mean α (Jensen).
    assert s.t_mean > s.t_at_mean
    assert s.speedup_conv_mean < s.speedup_conv_at_mean
    assert s.speedup_conv_at_mean == pytest.approx(t_conv_sm(inp) / s.t_at_mean)
    # All samples on the ramp branch: the two agree (eq. 4 is linear there).
    ramp_only = alpha_spread(inp, np.array([0.2, 0.3, 0.7]))
    assert ramp_only.t_mean == pytest.approx(ramp_only.t_at_mean)
    with pytest.raises(UserError):
        alpha_spread(inp, np.array([0.3, 1.2]))


def test_energy_scales_as_documented():
    inp, e = MacroInputs(), EnergyInputs()
    conv, dtopk, top = macro_energies(inp, e)
    assert conv.nl == pytest.approx(D * D * e.e_nl)
    assert top.nl == dtopk.nl == pytest.approx(D * K * e.e_nl)
    assert dtopk.sort == pytest.approx(D * D * K * e.e_sort)
    assert conv.sort == top.sort == 0
    lo = macro_energies(inp, e, alpha=0.2)[2]
    hi = macro_energies(inp, e, alpha=0.4)[2]
    assert hi.total > lo.total
    # Linear in α: the ramp and SA terms double their α-dependent part.
    assert (hi.sa / lo.sa) == pytest.approx(2.0)
    assert top.total < dtopk.total < conv.total
    # The paper's cell energy: 1.8e-7 mW/MHz = 1.8e-16 J per cell per clock.
    assert e.e_write_cell == pytest.approx(1.8e-16)


def test_claim_readings_solve_back_to_the_claim():
    rows = {r.name: r for r in claim_readings(MacroInputs())}
    assert _sig3(rows["equations as read here"].speedup_conv) == "19.6"
    series = rows["T_pwm = 1+2+4 scaled pulses in series"]
    assert series.t_pwm == pytest.approx(108.5e-9)
    assert series.speedup_conv < 15.5
    solved = [r for r in rows.values() if r.name.startswith("same overhead")][0]
    assert solved.speedup_conv == pytest.approx(15.0)
    assert solved.speedup_dtopk == pytest.approx(8.0)
    overhead = [r for r in rows.values() if r.name.startswith("per-query overhead")][0]
    assert overhead.speedup_dtopk < 7.5  # 15x and 8x are not reached together by one overhead


# --------------------------------------------------------------------------- inputs


class FakePVTModel:
    """Stands in for a pvt_table lookup model: ``.names`` and ``.value``."""

    def __init__(self, table: dict[str, float]):
        self.table = table
        self.names = tuple(table)
        self.calls: list[tuple] = []

    def value(self, name, corner, vdd, temp, stat="mean", extrapolate=False):
        self.calls.append((name, corner, vdd, temp, stat, extrapolate))
        if vdd < 0.8 and not extrapolate:
            raise UserError(f"{name}: vdd {vdd} outside 0.8..1.2 V")
        return self.table[name] * (1.2 if corner == "SS" else 1.0)


def _stats(path: Path, alpha, k=5) -> Path:
    n = len(alpha)
    pd.DataFrame({
        "alpha": alpha, "n_tied": np.ones(n, dtype=int), "k": [k] * n,
        "layer": np.arange(n) % 2, "run_id": ["r0"] * n,
    }).to_parquet(path)
    return path


def test_precedence_explicit_over_measured_over_default(tmp_path):
    stats = _stats(tmp_path / "selection_stats.parquet", [0.2, 0.3, 0.4])
    model = FakePVTModel({"t_arbiter": 1.0e-9, "t_encoder": 0.5e-9, "t_write_row": 4e-9,
                          "t_sa": 0.3e-9})
    src = MeasuredSources(alpha_from=str(stats), corner="SS", vdd=0.9, temp=125.0)
    inp = gather_inputs({"macro.t_nl": (7e-9, "--t-nl")}, src, delay_model=model)
    m, prov = inp.macro, inp.provenance
    assert m.alpha == pytest.approx(0.3)
    assert prov["macro.alpha"].startswith("measured: ")
    assert str(stats) in prov["macro.alpha"]
    assert m.t_arb == pytest.approx(1.2 * 1.5e-9)  # arbiter + encoder at SS
    assert "SS, 0.9 V, 125 °C" in prov["macro.t_arb"]
    assert m.t_wr == pytest.approx(64 * 1.2 * 4e-9)  # d_k rows × per-row write time
    assert m.t_sa == pytest.approx(1.2 * 0.3e-9)
    assert m.t_nl == 7e-9 and prov["macro.t_nl"] == "explicit: --t-nl"
    assert prov["macro.t_pwm"].startswith("default: paper")
    assert inp.alpha_samples is not None and len(inp.alpha_samples) == 3

    # An explicit value beats the measured one and the override is noted.
    inp2 = gather_inputs({"macro.t_arb": (2.08e-9, "--t-arb"), "macro.alpha": (0.31, "cfg")},
                         src, delay_model=model)
    assert inp2.macro.t_arb == 2.08e-9 and inp2.provenance["macro.t_arb"] == "explicit: --t-arb"
    assert inp2.macro.alpha == 0.31
    assert any("overrides measured" in n and "macro.t_arb" in n for n in inp2.notes)

    # Without measured data everything is default; a clock alone derives T_ima.
    inp3 = gather_inputs({"macro.t_clk_ima": (5e-9, "--t-clk-ima")})
    assert inp3.macro.t_ima == pytest.approx(32 * 5e-9)
    assert inp3.provenance["macro.t_ima"].startswith("derived")
    assert all(v.startswith(("default", "explicit", "derived")) for v in inp3.provenance.values())


def test_delay_adapter_passes_point_and_range_errors():
    model = FakePVTModel({"t_arb": 2e-9})
    out = read_delays(model, "FF", 1.0, 25.0, d_k=64)
    assert out == {"macro.t_arb": 2e-9}
    assert model.calls[0] == ("t_arb", "FF", 1.0, 25.0, "mean", False)
    with pytest.raises(UserError, match="outside"):
        read_delays(model, "FF", 0.7, 25.0, d_k=64)
    assert read_delays(model, "FF", 0.7, 25.0, d_k=64, extrapolate=True)["macro.t_arb"] == 2e-9
    with pytest.raises(UserError, match="corner"):
        gather_inputs(sources=MeasuredSources(), delay_model=model)
    # A sense-amplifier model keeps its sweep's column names; its provenance names the block.
    sa = FakePVTModel({"delay": 0.4e-9, "energy": 6e-15, "offset": 2e-3})
    sa.provenance = {"block": "sense_amp"}
    assert read_delays(sa, "NOM", 1.0, 27.0, d_k=64) == {"macro.t_sa": 0.4e-9,
                                                         "energy.e_sa": 6e-15}
    sa.provenance = {}
    assert read_delays(sa, "NOM", 1.0, 27.0, d_k=64) == {}


def test_alpha_stats_k_selection_and_errors(tmp_path):
    df = pd.DataFrame({"alpha": [0.1, 0.2, 0.5, 0.6], "k": [2, 2, 5, 5],
                       "n_tied": [1, 1, 2, 1], "layer": [0, 1, 0, 1], "run_id": ["a"] * 4})
    path = tmp_path / "s.parquet"
    df.to_parquet(path)
    assert load_alpha_stats(path, k=2).alpha.tolist() == [0.1, 0.2]
    with pytest.raises(UserError, match="several k"):
        load_alpha_stats(path)
    with pytest.raises(UserError, match="k=3"):
        load_alpha_stats(path, k=3)
    # With several k and none asked for, the default k (5) is used, not measured.
    inp = gather_inputs(sources=MeasuredSources(alpha_from=str(path)))
    assert inp.macro.alpha == pytest.approx(0.55)
    assert inp.provenance["macro.k"].startswith("default")
    pd.DataFrame({"code": [1, 2]}).to_parquet(tmp_path / "noalpha.parquet")
    with pytest.raises(UserError, match="no 'alpha' column"):
        load_alpha_stats(tmp_path / "noalpha.parquet")
    _stats(tmp_path / "bad.parquet", [0.3, 0.0])
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        load_alpha_stats(tmp_path / "bad.parquet")


def test_sub_topk_rows_merge_per_query(tmp_path):
    # Two crossbars per query (k_i = 3 and 2): the query's α is its slower crossbar's.
    df = pd.DataFrame({
        "layer": [0, 0, 0, 0], "image": [0, 0, 0, 0], "head": [0, 0, 0, 0],
        "query": [0, 0, 1, 1], "crossbar": [0, 1, 0, 1], "k": [3, 2, 3, 2],
        "alpha": [0.25, 0.5, 0.4, 0.1], "n_tied": [1, 1, 1, 2],
    })
    df.to_parquet(tmp_path / "s.parquet")
    st = load_alpha_stats(tmp_path / "s.parquet")
    assert st.k == 5 and st.n_crossbars == 2
    assert sorted(st.alpha.tolist()) == [0.4, 0.5]


def test_config_file_and_unknown_keys(tmp_path):
    cfg = load_config(EXAMPLE)
    assert cfg.explicit["macro.t_arb"][0] == pytest.approx(2.08e-9)
    assert cfg.seq_lens == (256, 384, 512, 1024, 2048, 4096)
    bad = tmp_path / "bad.toml"
    bad.write_text("[macro]\nt_arbb = 1e-9\n")
    with pytest.raises(UserError, match="unknown roll-up input macro.t_arbb"):
        load_config(bad)


def test_module_speedup_grows_with_sequence_length():
    res = run_rollup(gather_inputs(), seq_lens=(256, 1024, 4096))
    macro_sp = [r.t_conv / r.t_topkima for r in res.sweep]
    module_sp = [r.module_t[0] / r.module_t[2] for r in res.sweep]
    assert macro_sp == sorted(macro_sp) and module_sp == sorted(module_sp)
    # The module's other operations dilute the macro's speed-up.
    assert all(mo < ma for mo, ma in zip(module_sp, macro_sp, strict=True))
    av = {c.macro: c.energy for c in res.module if c.op == "A·V"}
    assert av["topkima"] < av["conv"]  # the sparse A after top-k


# --------------------------------------------------------------------------- CLI


def test_cli_writes_tables_report_and_figures(tmp_path, capsys):
    stats = _stats(tmp_path / "selection_stats.parquet", [0.25, 0.31, 0.37, 0.5])
    out = tmp_path / "out"
    rc = main(["rollup", "--config", str(EXAMPLE), "--alpha-from", str(stats),
               "--set", "macro.alpha=0.31", "--seq-lens", "256,512", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "19.6x over conv" in printed and "8.63x over Dtopk" in printed
    assert "explicit: --set macro.alpha" in printed
    for name in ("rollup_macros.csv", "rollup_inputs.csv", "rollup_module.csv",
                 "rollup_seq_len.csv", "rollup_readings.csv", "rollup_alpha.csv", "rollup.md"):
        assert (out / name).stat().st_size > 0, name
    for name in ("fig4a_latency_breakdown.png", "speedup_vs_seq_len.png", "module_breakdown.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    macros = pd.read_csv(out / "rollup_macros.csv", comment="#").set_index("macro")
    assert _sig3(macros.loc["conv", "t_total_s"] / macros.loc["topkima", "t_total_s"]) == "19.6"
    assert (pd.read_csv(out / "rollup_seq_len.csv", comment="#")["seq_len"] == [256, 512]).all()
    alpha = pd.read_csv(out / "rollup_alpha.csv", comment="#").set_index("quantity")
    assert alpha.loc["alpha", "mean"] == pytest.approx(np.mean([0.25, 0.31, 0.37, 0.5]))
    head = (out / "rollup_macros.csv").read_text().splitlines()[0]
    assert head.startswith("# command: charact rollup")
    assert "Why not 15" in (out / "rollup.md").read_text()
    assert not list(out.glob(".*.tmp"))


def test_cli_measured_alpha_sets_point_value(tmp_path, capsys):
    stats = _stats(tmp_path / "selection_stats.parquet", [0.1, 0.2, 0.3])
    rc = main(["rollup", "--alpha-from", str(stats), "--no-figures", "-o", str(tmp_path / "o")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "alpha = 0.2 " in printed
    assert "mean 0.2," in printed and "p95" in printed
    assert not list((tmp_path / "o").glob("*.png"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--t-arb=-1e-9"], "t_arb must be a non-negative time"),
        (["--k", "500"], "k must be in 1..d=384"),
        (["--alpha", "1.5"], "alpha must lie in (0, 1]"),
        (["--alpha", "0"], "alpha must lie in (0, 1]"),
        (["--alpha-from", "missing.parquet"], "not found"),
        (["--alpha-from", "NOALPHA"], "no 'alpha' column"),
        (["--delays-from", "model.json"], "--corner, --vdd and --temp"),
        (["--set", "macro.nope=1"], "unknown roll-up input macro.nope"),
        (["--seq-lens", "256,x"], "not an integer"),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys, extra, message):
    noalpha = tmp_path / "noalpha.parquet"
    pd.DataFrame({"n_tied": [1]}).to_parquet(noalpha)
    extra = [str(noalpha) if x == "NOALPHA" else x for x in extra]
    if "missing.parquet" in extra:
        extra = [str(tmp_path / x) if x == "missing.parquet" else x for x in extra]
    out = tmp_path / "out"
    rc = main(["rollup", *extra, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("charact: error:")
    assert message in err[0]
    assert not out.exists()


def _pvt_model_file(path: Path) -> Path:
    """A pvt_table model file written through the lookup package's own API."""
    from charact.lookup.pvt_table import CornerGrid, PVTTableModel

    vdd, temp = np.array([0.8, 1.2]), np.array([25.0, 125.0])

    def grid(scale: float) -> CornerGrid:
        stats = {}
        for name, base in (("t_arbiter", 1.51e-9), ("t_encoder", 0.57e-9)):
            # slower at low VDD and high temperature
            mean = base * scale * np.array([[0.9, 1.0], [0.6, 0.65]])
            stats[name] = {"mean": mean, "sigma": mean * 0.05, "count": np.full((2, 2), 20.0)}
        return CornerGrid(vdd, temp, stats)

    PVTTableModel({"SS": grid(1.0), "NOM": grid(0.7)}, {"block": "arbiter"}).save(path)
    return path


def test_cli_with_lookup_model_and_selection_stats(tmp_path, capsys):
    model = _pvt_model_file(tmp_path / "digital.json")
    stats = _stats(tmp_path / "selection_stats.parquet", [0.2, 0.3, 0.45, 0.6])
    out = tmp_path / "out"
    rc = main(["rollup", "--alpha-from", str(stats), "--delays-from", str(model),
               "--corner", "SS", "--vdd", "0.8", "--temp", "125", "--no-figures",
               "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "SS, 0.8 V, 125 °C" in printed
    inputs = pd.read_csv(out / "rollup_inputs.csv", comment="#").set_index("name")
    assert inputs.loc["t_arb", "value"] == pytest.approx(2.08e-9)  # 1.51 + 0.57 ns at SS
    assert inputs.loc["t_arb", "source"].startswith("measured: ")
    assert inputs.loc["alpha", "value"] == pytest.approx(np.mean([0.2, 0.3, 0.45, 0.6]))
    # Out of the characterized range: one line, exit 2, nothing written.
    out2 = tmp_path / "out2"
    rc = main(["rollup", "--delays-from", str(model), "--corner", "SS", "--vdd", "0.7",
               "--temp", "125", "-o", str(out2)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "outside" in err[0]
    assert not out2.exists()
