"""Netlist generator of the replica-ramp in-memory-ADC array (Topkima-Former, S. Dong et
al., arXiv 2411.13050, Sec. III-A, Fig. 2(c)).

The cell (``netlists/sram10t.sp``) and the comparator (``netlists/sense_amp.sp``) stay
plain template subcircuits; only the repetitive instance lines of a column are made here,
so a bench written by ``charact render`` is still a readable deck.

Signal convention (one column; ``D = V(RBL_L) - V(RBL_R)``)::

    precharge   both RBLs to v_pre (PMOS switches, off after t_pre)
    MAC phase   positive products discharge RBL_L, negative ones RBL_R
                -> D = -a * MAC            (a: volts per MAC unit; v_mac = -D)
    calibrate   the calibration replica rows that store -1 (``cal_rows`` of the 32 at
                the nominal setting, per column after an offset trim) fire together
                for t_cal on RBL_R
                -> D = a * (mac_hi - MAC)   (a column at mac_hi is balanced)
    ramp j      ramp replica row j fires for t_step on RBL_L (j = 0..31),
                then the SA evaluates (inp = RBL_R, inn = RBL_L: dout = 1 once
                V(RBL_R) > V(RBL_L), i.e. once the decreasing ramp has crossed)
                -> D = a * (mac_hi - MAC) - (j + 1) * a * lsb

A larger MAC crosses earlier; ``cross_cycle`` c is the first ramp cycle (0-based) with
dout = 1 and ``code = 31 - c`` (0 when it never crosses: the ADC saturates at code 0).
Ideal transfer: ``code = clip(floor((MAC - mac_lo) / lsb), 0, 31)`` with
``mac_hi = mac_lo + 32 * lsb``.

A signed 4-bit weight (-7..7) is three ternary cells (sign x bit b) read with input pulse
scales 1, 2, 4; an input is a sign (RWL+ or RWL-) and a 5-bit magnitude (pulse width
``|x| * scale * t_unit``). All columns of an array share the wordlines: the inputs and
the replica rows are common, the weights differ per column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charact.bench import clock, dc, num, pwl, tran, trapezoid
from charact.templates import Template

N_CODES = 32
N_RAMP = 32  # ramp replica rows, one per cycle
N_CAL = 32  # calibration replica rows, fired together
W_MAX = 7  # signed 4-bit weight: three ternary cells, scales 1, 2, 4
X_MAX = 31  # 5-bit input magnitude


@dataclass(frozen=True)
class ColumnConfig:
    """Electrical and timing settings of one array bench (SI units)."""

    n_dims: int
    vdd_sram: float = 0.5
    v_rwl: float = 0.5
    v_pre: float = 0.5
    c_rbl: float = 280e-15  # lumped capacitance per bitline, on top of the devices'
    t_unit: float = 0.5e-9  # one LSB of input pulse width (2 GHz PWM clock)
    scales: tuple[int, int, int] = (1, 2, 4)
    t_clk: float = 4e-9  # ADC clock
    t_edge: float = 30e-12  # wordline and clock edges
    t_pre: float = 1e-9
    rep_ratio: float = 1.0  # replica read-stack width / MAC-cell read-stack width
    # Calibration rows storing -1 at the nominal setting; the others store 0 and stay
    # dark, so a per-column trim can add or remove rows (one row = 16 / cal_rows LSB).
    cal_rows: int = N_CAL
    storage: str = "lean"  # "lean", "ideal" (read ports on ideal sources) or "6t"
    wiring: str = "q"  # "q" (zero weight draws no current) or "qb"
    tmax: float = 200e-12

    @property
    def t_mac(self) -> float:
        """Start of the MAC pulses."""
        return self.t_pre + 0.5e-9

    @property
    def t_mac_len(self) -> float:
        """The MAC phase: the longest pulse (31 x 4 units = 62 ns) plus settling."""
        return X_MAX * max(self.scales) * self.t_unit + 1e-9

    def t_cal0(self) -> float:
        return self.t_mac + self.t_mac_len

    def cal_cycles(self, t_cal: float) -> int:
        """Clock cycles the calibration pulse takes (one in the paper)."""
        return max(1, int(np.ceil((t_cal + 4 * self.t_edge + 0.2e-9) / self.t_clk)))

    def t_ramp0(self, t_cal: float) -> float:
        return self.t_cal0() + self.cal_cycles(t_cal) * self.t_clk

    def t_stop(self, t_cal: float) -> float:
        return self.t_ramp0(t_cal) + N_RAMP * self.t_clk

    def t_level(self, t_cal: float, j: int) -> float:
        """When ramp level j (after j steps) is read: just before evaluation j-1, or for
        j = 0 just before the first step."""
        if j == 0:
            return self.t_ramp0(t_cal) - self.t_edge
        return self.t_ramp0(t_cal) + (j - 1) * self.t_clk + self.t_clk / 2 - self.t_edge

    def t_decision(self, t_cal: float, j: int) -> float:
        """When the latched decision of ramp cycle j is read."""
        return self.t_ramp0(t_cal) + (j + 1) * self.t_clk - 2 * self.t_edge


def ternary_digits(w: int) -> tuple[int, int, int]:
    """A weight in -7..7 as three ternary cells (scale 1, 2, 4), all of the weight's sign."""
    if not -W_MAX <= w <= W_MAX:
        raise ValueError(f"weight {w} outside -7..7")
    s = 1 if w >= 0 else -1
    m = abs(w)
    return (s * (m & 1), s * ((m >> 1) & 1), s * ((m >> 2) & 1))


def _storage_nodes(t: int) -> tuple[str, str, str, str]:
    """(ql, qlb, qr, qrb) tied to the ideal storage rails for a ternary value."""
    hi, lo = "vsram", "0"
    if t > 0:
        return hi, lo, lo, hi
    if t < 0:
        return lo, hi, hi, lo
    return lo, hi, lo, hi


def _ql_qr(t: int) -> tuple[float, float]:
    return (1.0, 0.0) if t > 0 else (0.0, 1.0) if t < 0 else (0.0, 0.0)


def cell_wrappers(cfg: ColumnConfig, cell_params: dict[str, float]) -> str:
    """Two short-port subcircuits (MAC cell and replica cell) that fix the template's
    parameters once, so the many instance lines stay readable."""
    read = {k: cell_params[k] for k in ("w_ra", "l_ra", "w_rd", "l_rd")}
    rep = dict(read, w_ra=read["w_ra"] * cfg.rep_ratio, w_rd=read["w_rd"] * cfg.rep_ratio)
    out = []
    if cfg.storage == "lean":
        cal = dict(rep, w_ra=rep["w_ra"] * N_CAL, w_rd=rep["w_rd"] * N_CAL)
        for name, p in (("mac_stack", read), ("rep_stack", rep), ("cal_stack", cal)):
            args = " ".join(f"{k}={num(v)}" for k, v in p.items())
            out += [f".subckt {name} rbl rwl vsram", f"X0 rbl rwl vsram 0 rd_stack {args}",
                    f".ends {name}"]
    elif cfg.storage == "ideal":
        port = "dual10t_rd" if cfg.wiring == "q" else "dual10t_rd_qb"
        for name, p in (("mac_cell", read), ("rep_cell", rep)):
            args = " ".join(f"{k}={num(v)}" for k, v in p.items())
            out += [f".subckt {name} rbl_l rbl_r rwlp rwln ql qlb qr qrb",
                    f"X0 rbl_l rbl_r rwlp rwln ql qlb qr qrb 0 {port} {args}", f".ends {name}"]
    else:
        cell = "dual10t" if cfg.wiring == "q" else "dual10t_qb"
        for name, p in (("mac_cell", cell_params), ("rep_cell", {**cell_params, **rep})):
            args = " ".join(f"{k}={num(v)}" for k, v in p.items())
            # word line held low, write bitlines parked at VDD_SRAM: a hold state
            out += [f".subckt {name} rbl_l rbl_r rwlp rwln vsram",
                    f"X0 rbl_l rbl_r rwlp rwln 0 vsram vsram vsram vsram vsram 0 {cell} {args}",
                    f".ends {name}"]
    return "\n".join(out)


def _cell_line(cfg: ColumnConfig, inst: str, col: int, rwlp: str, rwln: str, t: int,
               ics: list[str]) -> str:
    nodes = f"rbl_l{col} rbl_r{col} {rwlp} {rwln}"
    if cfg.storage == "ideal":
        return f"X{inst} {nodes} {' '.join(_storage_nodes(t))} {{cell}}"
    ql, qr = _ql_qr(t)
    ics.append(f"v(x{inst}.x0.ql)={num(ql * cfg.vdd_sram)} v(x{inst}.x0.qlb)="
               f"{num((1 - ql) * cfg.vdd_sram)} v(x{inst}.x0.qr)={num(qr * cfg.vdd_sram)} "
               f"v(x{inst}.x0.qrb)={num((1 - qr) * cfg.vdd_sram)}")
    return f"X{inst} {nodes} vsram {{cell}}"


def _lean_lines(cfg: ColumnConfig, c: int, x: np.ndarray, w_col: np.ndarray,
                wl: dict[tuple[int, int], tuple[str, str]], ramp_nodes: list[str],
                n_cal: int | None) -> list[str]:
    """Only the MAC read stacks that can conduct: a stack whose storage gate or word line
    is held at ground for the whole conversion carries only leakage (tens of pA against a
    read current of ~0.3 uA) and is left out, its junction capacitance being small
    against ``c_rbl`` (``c_rbl_per_row`` counts it). Replica rows are always placed.
    Untrimmed (``n_cal`` None), the 32 calibration rows fired together become one stack
    of 32x the width: by Pelgrom's law its mismatch equals that of the sum of 32 cells.
    Trimmed, each of the 32 calibration rows is its own stack, so a row is the same
    device (the same die) whichever rows a trim selects; the rows that store 0 keep
    their stack with the storage gate grounded (27 cells wide, their junctions are a
    large part of RBL_R's load: leaving them out would move the MAC phase with the
    trim)."""
    out = []
    for i in range(cfg.n_dims):
        xi = int(x[i])
        if xi == 0:
            continue
        for b, t in enumerate(ternary_digits(int(w_col[i]))):
            node = wl[i, b][0] if xi > 0 else wl[i, b][1]
            sides = []
            if t != 0:
                sides.append("l" if t * xi > 0 else "r")
            elif cfg.wiring == "qb" and xi < 0:
                sides += ["l", "r"]  # QB-gated stacks of a zero weight: common-mode drop
            for side in sides:
                out.append(f"Xc{c}_d{i}_b{b}{side} rbl_{side}{c} {node} vsram mac_stack")
    if n_cal is None:
        out.append(f"Xc{c}_cal rbl_r{c} rwl_cal vsram cal_stack")
    else:
        # a row storing 0 is still on the bitline: its stack stays, gate grounded, so
        # a trim changes what the rows store and never the bitline's load or leakage
        out += [f"Xc{c}_cal{j} rbl_r{c} rwl_cal {'vsram' if j < n_cal else '0'} rep_stack"
                for j in range(N_CAL)]
    # every ramp row is placed, also one whose word line stays low (the calibration's
    # waveform bench fires only row 0): replica stacks are rep_ratio cells wide, and
    # their junctions load RBL_L as much as a small bitline does
    out += [f"Xc{c}_ramp{j} rbl_l{c} {ramp_nodes[j]} vsram rep_stack" for j in range(N_RAMP)]
    return out


def array_body(cfg: ColumnConfig, cell_params: dict[str, float], sa: Template,
               sa_params: dict[str, float], x: np.ndarray, w: np.ndarray, t_cal: float,
               t_step: float, sa_clocked: bool = True, cal_window: float | None = None,
               ramp_window: float | None = None, cal_rows: list[int] | None = None
               ) -> tuple[str, list[str]]:
    """The bench body of one array conversion and the vectors it saves.

    ``x``: inputs (n_dims,) in -31..31; ``w``: weights (n_cols, n_dims) in -7..7.
    ``cal_rows``: calibration rows storing -1 per column (a trim); None = the design's
    ``cfg.cal_rows`` in every column. ``ramp_steps``: the pulse width of each ramp cycle
    (None = ``t_step`` every cycle).
    ``cal_window``/``ramp_window`` replace the pulsed calibration/ramp by one long pulse
    of the calibration rows and of ramp row 0 (the calibration bench reads the
    discharge waveforms from them); the SA is then left unclocked.
    """
    n_cols, n_dims = w.shape
    assert n_dims == cfg.n_dims and x.shape == (n_dims,)
    trimmed = cal_rows is not None or cfg.cal_rows != N_CAL
    rows = [int(r) for r in cal_rows] if cal_rows is not None else [cfg.cal_rows] * n_cols
    assert len(rows) == n_cols and all(0 <= r <= N_CAL for r in rows), rows
    lines = [f"* array: {n_cols} column(s) x {n_dims} dimensions x 3 cells + "
             f"{N_CAL} + {N_RAMP} replica rows; storage {cfg.storage}, wiring {cfg.wiring}",
             f"* inputs x = {' '.join(str(int(v)) for v in x)}"]
    for c in range(n_cols):
        lines.append(f"* weights column {c} = {' '.join(str(int(v)) for v in w[c])}")
    lines += [dc("vsup", "vdd", "{vdd}"), dc("vsram", "vsram", cfg.vdd_sram),
              dc("vpre", "vpre", cfg.v_pre),
              cell_wrappers(cfg, cell_params),
              "* precharge: PMOS switches on while pcb is low",
              pwl("vpcb", "pcb", [(0, 0), (cfg.t_pre, 0), (cfg.t_pre + cfg.t_edge, "{vdd}")])]
    ics: list[str] = []
    # -- input wordlines (shared by all columns) -------------------------------------
    lines.append("* MAC wordlines: input sign picks RWL+ / RWL-, magnitude x scale the width")
    wl: dict[tuple[int, int], tuple[str, str]] = {}
    for i in range(n_dims):
        for b, scale in enumerate(cfg.scales):
            xi = int(x[i])
            if xi == 0:
                wl[i, b] = ("0", "0")
                continue
            node = f"rwl{'p' if xi > 0 else 'n'}_{i}_{b}"
            lines.append(trapezoid(f"Vx{i}_{b}", node, cfg.t_mac, abs(xi) * scale * cfg.t_unit,
                                   cfg.v_rwl, cfg.t_edge))
            wl[i, b] = (node, "0") if xi > 0 else ("0", node)
    # -- replica wordlines ------------------------------------------------------------
    t_cal0 = cfg.t_cal0() + 2 * cfg.t_edge
    if cal_window is not None:
        lines.append(trapezoid("Vcal", "rwl_cal", t_cal0, cal_window, cfg.v_rwl, cfg.t_edge))
        t_r0 = t_cal0 + cal_window + 4 * cfg.t_edge
        lines.append(trapezoid("Vramp0", "rwl_ramp0", t_r0, ramp_window or 0.0, cfg.v_rwl,
                               cfg.t_edge))
        ramp_nodes = ["rwl_ramp0"] + ["0"] * (N_RAMP - 1)
    else:
        lines.append("* calibration rows: fired together, set the ramp start on RBL_R")
        lines.append(trapezoid("Vcal", "rwl_cal", t_cal0, t_cal, cfg.v_rwl, cfg.t_edge))
        lines.append("* ramp rows: one per ADC cycle, each steps RBL_L down")
        ramp_nodes = []
        for j in range(N_RAMP):
            t_on = cfg.t_ramp0(t_cal) + j * cfg.t_clk + 2 * cfg.t_edge
            lines.append(trapezoid(f"Vramp{j}", f"rwl_ramp{j}", t_on, t_step, cfg.v_rwl,
                                   cfg.t_edge))
            ramp_nodes.append(f"rwl_ramp{j}")
    # -- SA clock: high during the second half of every ramp cycle --------------------
    if sa_clocked and cal_window is None:
        # one evaluation per ramp cycle, the edges inside the half cycle
        lines.append(clock("vclk", "clk", cfg.t_clk, cfg.t_edge,
                           delay=cfg.t_ramp0(t_cal) + cfg.t_clk / 2,
                           width=cfg.t_clk / 2 - 2 * cfg.t_edge, count=N_RAMP))
    else:
        lines.append(dc("vclk", "clk", 0))
    # -- columns ------------------------------------------------------------------------
    save = []
    for c in range(n_cols):
        lines.append(f"* ---- column {c}")
        lines.append(f"Crbl_l{c} rbl_l{c} 0 {num(cfg.c_rbl)}")
        lines.append(f"Crbl_r{c} rbl_r{c} 0 {num(cfg.c_rbl)}")
        # precharge switches: sizes from the cell template (they follow the technology)
        lines.append(f"Xpre_l{c} rbl_l{c} pcb vpre vdd rbl_pre")
        lines.append(f"Xpre_r{c} rbl_r{c} pcb vpre vdd rbl_pre")
        if cfg.storage == "lean":
            lines += _lean_lines(cfg, c, x, w[c], wl, ramp_nodes,
                                 rows[c] if trimmed else None)
            if trimmed:
                lines.append(f"* column {c}: {rows[c]} of {N_CAL} calibration rows store -1")
        else:
            for i in range(n_dims):
                for b, t in enumerate(ternary_digits(int(w[c, i]))):
                    rp, rn = wl[i, b]
                    lines.append(_cell_line(cfg, f"c{c}_d{i}_b{b}", c, rp, rn, t, ics)
                                 .replace("{cell}", "mac_cell"))
            for j in range(N_CAL):  # weight -1 read with RWL+: discharges RBL_R
                t_cal_row = -1 if j < rows[c] else 0  # the trim: rows storing 0 stay dark
                lines.append(_cell_line(cfg, f"c{c}_cal{j}", c, "rwl_cal", "0", t_cal_row, ics)
                             .replace("{cell}", "rep_cell"))
            for j in range(N_RAMP):  # weight +1 read with RWL+: discharges RBL_L
                lines.append(_cell_line(cfg, f"c{c}_ramp{j}", c, ramp_nodes[j], "0", 1, ics)
                             .replace("{cell}", "rep_cell"))
        lines.append(sa.instance(f"sa{c}", "strongarm_sa",
                                 [f"rbl_r{c}", f"rbl_l{c}", "clk", f"dout{c}", f"doutb{c}",
                                  f"outp{c}", f"outn{c}", "vdd", "0"], sa_params))
        lines.append(f"cloadp{c} outp{c} 0 2f")
        lines.append(f"cloadn{c} outn{c} 0 2f")
        save += [f"v(rbl_l{c})", f"v(rbl_r{c})", f"v(dout{c})"]
    if ics:
        lines.append("* stored weights of the 6T cores")
        lines += [f".ic {ic}" for ic in ics]
    if cal_window is not None:
        t_end = t_cal0 + cal_window + 4 * cfg.t_edge + (ramp_window or 0.0) + 1e-9
    else:
        t_end = cfg.t_stop(t_cal)
    lines.append(tran(cfg.tmax / 4, t_end, cfg.tmax))
    lines.append(".save " + " ".join(save))
    return "\n".join(lines), save
