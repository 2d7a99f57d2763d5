"""One array conversion in SPICE and its decoding: the bench run, the decisions and ramp
levels read from the waveforms, the counter/arbiter's early stop and the rows a column
conversion writes (shared by the full-SPICE and the composed column blocks)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from charact.blocks.base import JobContext, JobFailed
from charact.column.design import Design, draw_patterns, make_design, pattern_string
from charact.column.netlist import N_CODES, N_RAMP, array_body
from charact.runner import read_raw

# -- running and decoding one array conversion ----------------------------------------------

@dataclasses.dataclass
class Conversion:
    """The waveform-derived result of one array deck."""

    decisions: np.ndarray  # (n_cols, 32) bool: dout after each ramp cycle
    levels_l: np.ndarray  # (n_cols, 33) V(RBL_L) before each evaluation (0 = ramp start)
    levels_r: np.ndarray
    v_l_mac: np.ndarray  # (n_cols,) after the MAC phase
    v_r_mac: np.ndarray


def run_array(ctx: JobContext, name: str, design: Design, x: np.ndarray, w: np.ndarray,
              t_cal: float, t_step: float, cal_rows: list[int] | None = None) -> Conversion:
    """Run one array conversion (``cal_rows``: a per-column trim, see
    :func:`charact.column.netlist.array_body`) and read its decisions and levels."""
    cfg = design.cfg
    if t_step > cfg.t_clk / 2 - 5 * cfg.t_edge:
        raise JobFailed(f"ramp step pulse {t_step:.3g} s exceeds half a clock; raise "
                        "rep_ratio")
    if t_cal < cfg.t_edge or t_step < cfg.t_edge:
        raise JobFailed(f"replica pulse shorter than an edge (t_cal {t_cal:.3g} s, t_step "
                        f"{t_step:.3g} s); lower rep_ratio")
    cell_t, sa_t = _templates(ctx)
    body, _ = array_body(cfg, ctx.params, sa_t, design.sa_params, x, w, t_cal, t_step,
                         cal_rows=cal_rows)
    res = ctx.run(name, body, raw=True)
    v = read_raw(res.raw)
    t = v["time"]
    n_cols = w.shape[0]

    def at(node: str, times: np.ndarray) -> np.ndarray:
        if node not in v:
            raise JobFailed(f"{name}: no vector {node}")
        return np.interp(times, t, v[node])

    t_lv = np.array([cfg.t_level(t_cal, j) for j in range(N_RAMP + 1)])
    t_dec = np.array([cfg.t_decision(t_cal, j) for j in range(N_RAMP)])
    t_mac = cfg.t_cal0()
    dec = np.stack([at(f"v(dout{c})", t_dec) > ctx.point.vdd / 2 for c in range(n_cols)])
    ll = np.stack([at(f"v(rbl_l{c})", t_lv) for c in range(n_cols)])
    lr = np.stack([at(f"v(rbl_r{c})", t_lv) for c in range(n_cols)])
    vl = np.array([at(f"v(rbl_l{c})", np.array([t_mac]))[0] for c in range(n_cols)])
    vr = np.array([at(f"v(rbl_r{c})", np.array([t_mac]))[0] for c in range(n_cols)])
    return Conversion(dec, ll, lr, vl, vr)


def _templates(ctx: JobContext):
    cell = next(t for t in ctx.templates if "dual10t" in t.subckts)
    sa = next(t for t in ctx.templates if "strongarm_sa" in t.subckts)
    return cell, sa


def cross_cycles(decisions: np.ndarray) -> np.ndarray:
    """First ramp cycle whose decision says crossed, -1 if none."""
    any_ = decisions.any(axis=1)
    return np.where(any_, decisions.argmax(axis=1), -1)


def early_stop(cross: np.ndarray, k: int) -> tuple[int, np.ndarray]:
    """The counter and arbiter: stop at the end of the first cycle in which at least k
    columns have crossed; columns crossing earlier are selected, ties in the stopping
    cycle go to the smallest addresses. Returns (stop_cycle, selected)."""
    n = cross.size
    selected = np.zeros(n, dtype=bool)
    if k <= 0:
        return N_RAMP - 1, np.ones(n, dtype=bool)
    stop = N_RAMP - 1
    for j in range(N_RAMP):
        if int(((cross >= 0) & (cross <= j)).sum()) >= k:
            stop = j
            break
    earlier = np.flatnonzero((cross >= 0) & (cross < stop))
    selected[earlier] = True
    tied = np.flatnonzero(cross == stop)  # ascending addresses
    selected[tied[:max(0, k - earlier.size)]] = True
    return stop, selected


def ramp_linearity(levels_l: np.ndarray) -> tuple[float, float, float]:
    """Mean step (V), max |DNL| and max |INL| (LSB) of the ramp on RBL_L of one column."""
    steps = -np.diff(levels_l)
    mean = float(steps.mean())
    if not mean > 0:
        return mean, math.nan, math.nan
    dnl = steps / mean - 1
    inl = (levels_l[0] - levels_l[1:]) / mean - np.arange(1, levels_l.size)
    return mean, float(np.abs(dnl).max()), float(np.abs(inl).max())



def job_patterns(ctx: JobContext) -> tuple[Design, list, int]:
    """The design and the input/weight patterns of one column job, drawn from the job's
    seed (or ``pattern_seed`` for a nominal run): every column mode converts the same
    patterns for the same seed."""
    o = ctx.options
    design = make_design(o)
    n_cols = int(o["n_cols"])
    n_decks = math.ceil((int(o["conversions"]) or n_cols) / n_cols)
    # a die's patterns are fixed by its stream and die number (the same at every point)
    seed = ctx.point.stream_seed if ctx.point.seed is not None else int(o["pattern_seed"])
    rng = np.random.default_rng(seed)
    explicit = (o["inputs"], o["weights"]) if o["patterns"] == "explicit" else None
    return design, draw_patterns(rng, design, str(o["patterns"]), n_cols, n_decks,
                                 explicit), seed


def conversion_rows(deck: int, design: Design, x: np.ndarray, w: np.ndarray,
                    res: Conversion, cal: Any, k: int, seed: int, trim: Any = None
                    ) -> list[dict[str, Any]]:
    """One table row per column of a converted deck (the ``ima_column`` format; the
    composed column writes the same). ``trim``: the die's offset trim, if any."""
    mac = w @ x
    cross = cross_cycles(res.decisions)
    stop, selected = early_stop(cross, k)
    out = []
    for c in range(w.shape[0]):
        step, dnl, inl = ramp_linearity(res.levels_l[c])
        cc = int(cross[c])
        dec = res.decisions[c]
        out.append({
            "deck": deck, "col": c, "mac_ideal": int(mac[c]),
            "code_ideal": int(design.code_ideal(mac[c])),
            "code": (N_CODES - 1 - cc) if cc >= 0 else 0, "cross_cycle": cc,
            "v_mac": float(res.v_r_mac[c] - res.v_l_mac[c]),
            "v_l_mac": float(res.v_l_mac[c]), "v_r_mac": float(res.v_r_mac[c]),
            "v_cal": float(res.levels_l[c, 0] - res.levels_r[c, 0]),
            "ramp_step": step, "ramp_dnl": dnl, "ramp_inl": inl,
            # decisions that fell back to 0 after the crossing (noise near a tie)
            "flips": int((dec[cc:] == 0).sum()) if cc >= 0 else 0,
            "k": k, "stop_cycle": stop, "alpha": (stop + 1) / N_RAMP,
            "selected": bool(selected[c]), "n_dims": design.cfg.n_dims,
            "mac_lo": design.mac_lo, "mac_hi": design.mac_hi, "lsb_mac": design.lsb,
            "t_cal": cal.t_cal, "t_step": cal.t_step, "rep_ratio": design.cfg.rep_ratio,
            "volts_per_mac": cal.volts_per_mac, "c_rbl": design.cfg.c_rbl,
            "pattern_seed": seed, "pattern": pattern_string(x, w[c]),
            "cal_rows": int(trim.rows[c]) if trim is not None else design.cfg.cal_rows,
            "trim_offset": float(trim.offsets[c]) if trim is not None else math.nan,
            "trim_temp": float(trim.temp) if trim is not None else math.nan,
        })
    return out
