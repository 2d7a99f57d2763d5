"""Scale-out benchmark: Monte-Carlo samples per second, peak memory per worker, the
persistent backend against one ngspice per deck on a heavy model library, its memory
over 200 runs, and the naive PySpice loop users write today.

    .venv/bin/python benchmarks/bench_scaleout.py [--samples 8] [--bins 1500]

The heavy library is synthetic: the FreePDK45 NOM cards cloned into ``--bins`` length
bins per device plus as many ``.param`` lines, so that loading it costs about a second
per deck, like a foundry kit (SkyWater 130 measured here: about 5 s and 420 MB per
``ngspice -b``). Prints ratios measured in this one run; compare them on an otherwise
idle machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import numpy as np

from charact.blocks import JobContext, get_block
from charact.deck import Point
from charact.runner import NgspiceBatch, ngspice_version
from charact.spec import parse_spec
from charact.sweep import run_sweep
from charact.tech import load_technology

SPEC = """
schema = "charact.sweep/1"
name = "bench_scaleout"
block = "sense_amp"
technology = "{tech}"
[conditions]
corner = ["NOM"]
vdd = [1.0]
temp = [27]
vcm = [0.4]
[montecarlo]
samples = {samples}
seed = {seed}
"""


def heavy_technology(folder: Path, n_bins: int) -> Path:
    """A technology whose NOM section holds ``n_bins`` binned copies of each FreePDK45
    card (length bins 10 nm - 100 um) and ``n_bins`` unused parameters."""
    base = load_technology("freepdk45")
    nom = (base.model_lib.parent / "freepdk45_nom.spi").read_text()
    cards = {}
    for name in ("NMOS_VTG", "PMOS_VTG"):
        m = re.search(rf"^\.model\s+{name}\s.*?(?=^\.model|\Z)", nom, re.M | re.S | re.I)
        cards[name] = m.group(0)
    edges = np.geomspace(10e-9, 100e-6, n_bins + 1)
    lines = ["* synthetic heavy library (benchmarks/bench_scaleout.py)", ".lib NOM"]
    lines += [f".param heavy_p{i} = {{{i} * 1e-3 + 1}}" for i in range(n_bins)]
    for name, card in cards.items():
        head, _, rest = card.partition("\n")
        for i in range(n_bins):
            lines.append(head.replace(name, f"{name}.{i + 1}", 1)
                         + f"\n+lmin = {edges[i]:.6g} lmax = {edges[i + 1]:.6g}"
                         f" wmin = 1e-08 wmax = 0.01\n{rest}")
    lines.append(".endl NOM")
    lib = folder / "heavy.lib"
    lib.write_text("\n".join(lines) + "\n")
    text = base.source.read_text()
    text = re.sub(r"^model_lib = .*$", f'model_lib = "{lib}"', text, flags=re.M)
    text = re.sub(r"^name = .*$", 'name = "heavy"', text, flags=re.M)
    text = re.sub(r"^\[corners\]\n(.*\n)*?(?=\n|\[)", '[corners]\nNOM = "NOM"\n', text,
                  flags=re.M)
    path = folder / "heavy.toml"
    path.write_text(text)
    load_technology(str(path))  # checks it
    return path


class PeakMemory:
    """Peak resident memory of every process below this one, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self.psutil, self.peak, self.kind = psutil, {}, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = self.psutil.Process()
        while not self._stop.is_set():
            for p in me.children(recursive=True):
                try:
                    rss = p.memory_info().rss
                    self.kind[p.pid] = "ngspice" if "ngspice" in p.name() else "python"
                except self.psutil.Error:
                    continue
                self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def max_of(self, kind: str) -> float:
        return max((v for p, v in self.peak.items() if self.kind[p] == kind), default=0) / 1e6


def sweep(tech: str, samples: int, seed: int, n_jobs: int, backend: str,
          out: Path) -> tuple[float, PeakMemory]:
    from charact.persistent import close_sessions

    spec = parse_spec(tomllib.loads(SPEC.format(tech=tech, samples=samples, seed=seed)),
                      simulator_version=ngspice_version())
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        res = run_sweep(spec, out, n_jobs=n_jobs, backend=backend, progress=False)
        wall = time.perf_counter() - t0
        close_sessions()
    assert res.failed == 0, res.table["reason"].tolist()
    return wall, mem


def coarse_bench(tech_name: str, samples: int, sim, work: Path) -> float:
    """Seconds for ``samples`` runs of the sense amplifier's coarse-offset transient."""
    block, tech = get_block("sense_amp"), load_technology(tech_name)
    opts = block.check_options({})
    rng, step = opts["offset_range"], opts["coarse_step"]
    dvs = [-rng + i * step for i in range(int(round(2 * rng / step)) + 1)]
    t0 = time.perf_counter()
    for s in range(samples):
        ctx = JobContext(tech=tech, point=Point("NOM", 1.0, 27.0, 100 + s),
                         params=block.check_params({}), conditions={"vcm": 0.4},
                         options=opts, workdir=work / f"s{s}", sim=sim,
                         templates=block.load_templates())
        block._staircase_decisions(ctx, "offset_coarse", dvs)
    return time.perf_counter() - t0


def naive_pyspice_loop(tech_name: str, samples: int) -> float:
    """BASELINE, the way users do it today: a Python loop that rebuilds the bench with
    PySpice's Circuit API for every sample and runs it in ngspice's shared library (the
    model library and every netlist line parsed again per sample), then reads the
    decisions from the waveform with numpy. Same circuit and transient as coarse_bench."""
    from charact.pyspice_backend import _ngspice

    _ngspice()  # points PySpice at the shared library
    from PySpice.Spice.Netlist import Circuit

    block, tech = get_block("sense_amp"), load_technology(tech_name)
    opts = block.check_options({})
    t_clk, t_edge, tstep = opts["t_clk"], opts["t_edge"], opts["tstep"]
    rng, step = opts["offset_range"], opts["coarse_step"]
    dvs = [-rng + i * step for i in range(int(round(2 * rng / step)) + 1)]
    template = block.load_templates()[0]
    sa_text = "\n".join(ln for ln in template.text.splitlines() if ln.strip().lower() != ".end")
    pins = ["inp", "inn", "clk", "dout", "doutb", "outp", "outn", "vdd", "0"]
    t0 = time.perf_counter()
    for s in range(samples):
        circuit = Circuit("sense amplifier, naive loop")
        circuit.raw_spice = tech.device_library("NOM", mc=True) + sa_text
        circuit.parameter("vdd", 1.0)
        circuit.V("sup", "vdd", circuit.gnd, 1.0)
        circuit.X("sa", "strongarm_sa", *pins[:-1], circuit.gnd)
        circuit.C("loadp", "outp", circuit.gnd, 2e-15)
        circuit.C("loadn", "outn", circuit.gnd, 2e-15)
        circuit.PulseVoltageSource("clk", "clk", circuit.gnd, initial_value=0, pulsed_value=1.0,
                                   delay_time=t_clk / 2, rise_time=t_edge, fall_time=t_edge,
                                   pulse_width=t_clk / 2 - t_edge, period=t_clk)
        for node, sign in (("inp", 1), ("inn", -1)):
            pts = [(0.0, 0.4 + sign * dvs[0] / 2)]
            for i, d in enumerate(dvs[1:], start=1):
                t = i * t_clk + 0.1 * t_clk
                pts += [(t, 0.4 + sign * dvs[i - 1] / 2), (t + t_edge, 0.4 + sign * d / 2)]
            circuit.PieceWiseLinearVoltageSource(node, node, circuit.gnd, values=pts)
        simulator = circuit.simulator(simulator="ngspice-shared", temperature=27,
                                      nominal_temperature=27)
        simulator.options(reltol=1e-5, vntol=1e-8, seed=100 + s)
        analysis = simulator.transient(step_time=tstep, end_time=len(dvs) * t_clk,
                                       max_time=4 * tstep)
        t = np.array(analysis.time)
        dout = np.array(analysis["dout"])
        at = [(i + 1) * t_clk - 2 * t_edge for i in range(len(dvs))]
        decisions = np.interp(at, t, dout) > 0.5
        assert decisions.any() and not decisions.all()
    return time.perf_counter() - t0


def memory_over_runs(tech_name: str, n_runs: int, work: Path) -> dict[int, float]:
    """Resident memory of a persistent worker's ngspice sessions after 10..n_runs runs
    of Monte-Carlo decks: new samples of four benches (they fill the worker's four
    sessions in the first four runs) and, every 10th run, a new bench (a load that
    replaces the least recently used circuit)."""
    from charact.deck import render_deck
    from charact.persistent import NgspicePersistent, close_sessions, sessions

    tech = load_technology(tech_name)
    sim = NgspicePersistent()
    out = {}
    for i in range(1, n_runs + 1):
        vg = 0.5 + 0.05 * (i % 4) if i % 10 else 0.5 + i / 10000
        body = (f"vd d 0 {{vdd}}\nvg g 0 {vg:g}\nxn1 d g 0 0 nfet w=0.2e-6 l=50e-9\n"
                "xn2 d g 0 0 nfet w=0.4e-6 l=100e-9\n.tran 1p 50p\n"
                ".meas tran id FIND i(vd) AT=20p")
        deck = render_deck("mem", body, tech, Point("NOM", 1.0, 27.0, i))
        res = sim.run(deck, work / "mem", timeout=120)
        assert res.ok, res.reason
        if i in (10, 50, 100, 200, n_runs):
            out[i] = sum(s.rss() for s in sessions()) / 1e6
    close_sessions()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=8, help="MC samples per sweep")
    ap.add_argument("--bins", type=int, default=1500, help="bins per device, heavy library")
    args = ap.parse_args()
    n = args.samples
    tmp = Path(tempfile.mkdtemp(prefix="charact-bench-"))
    print(f"# {ngspice_version()}, {os.cpu_count()} cores, sense-amplifier MC samples "
          f"(4 decks each), {n} per sweep")
    try:
        from charact.persistent import STATS, probe_load_time

        heavy = str(heavy_technology(tmp, args.bins))
        for name in ("freepdk45", heavy):
            load = probe_load_time(load_technology(name))
            print(f"model load per deck, {Path(name).stem:10s}        : {load:8.3f} s")

        print("\n## MC sweep throughput (-j 2) and peak memory per worker")
        sweep("freepdk45", 2, 99, 1, "batch", tmp / "warm")  # warm caches and imports
        for tech in ("freepdk45", heavy):
            walls = {}
            for backend in ("batch", "persistent"):
                wall, mem = sweep(tech, n, 7, 2, backend, tmp / f"{backend}-{Path(tech).stem}")
                walls[backend] = wall
                print(f"{Path(tech).stem:10s} {backend:10s}: {n / wall:6.2f} samples/s  "
                      f"peak RSS: worker python {mem.max_of('python'):6.0f} MB, one ngspice "
                      f"{mem.max_of('ngspice'):6.0f} MB")
            print(f"{Path(tech).stem:10s} persistent over batch: "
                  f"{walls['batch'] / walls['persistent']:6.2f} x")

        print("\n## coarse-offset transient, one worker: charact vs the naive PySpice loop")
        from charact.persistent import NgspicePersistent, close_sessions

        for tech in ("freepdk45", heavy):
            tb = coarse_bench(tech, n, NgspiceBatch(), tmp / "cb")
            tp = coarse_bench(tech, n, NgspicePersistent(), tmp / "cp")
            close_sessions()
            try:
                tn = naive_pyspice_loop(tech, n)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"naive PySpice loop failed: {type(exc).__name__}: {exc}")
                tn = float("nan")
            stem = Path(tech).stem
            print(f"{stem:10s} naive PySpice loop (BASELINE): {n / tn:6.2f} runs/s")
            print(f"{stem:10s} charact batch               : {n / tb:6.2f} runs/s "
                  f"({tn / tb:5.2f} x the naive loop)")
            print(f"{stem:10s} charact persistent          : {n / tp:6.2f} runs/s "
                  f"({tn / tp:5.2f} x the naive loop)")

        print("\n## persistent worker memory over 200 runs (heavy library)")
        mem = memory_over_runs(heavy, 200, tmp)
        for k, v in mem.items():
            print(f"after {k:3d} runs: {v:8.1f} MB")
        print(f"after 200 / after 10: {mem[200] / mem[10]:.3f}   (goal within 10 %)")
        print(f"\nsession totals: {STATS}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
