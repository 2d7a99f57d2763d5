"""Generator of the top-k ramp ADC's digital blocks as gate-level SPICE subcircuits.

A 256-input tree is too repetitive to write by hand, so ``netlists/topk_digital.sp`` is
the output of :func:`template_text` (regenerate it with
``python -m charact.blocks.digital_netlist > netlists/topk_digital.sp``; a test checks that
the shipped file matches). Benches of a smaller arbiter (tests use 16 inputs) get their
subcircuits from :func:`tree_subckts` with the same code.

Circuits (S. Dong et al., Topkima-Former, arXiv 2411.13050, Sec. III-A; the paper gives
their delays, not their gates, so the topology here is this project's):

* ``topk_arbiterN``: fixed-priority binary tree arbiter. Each node ORs its two children's
  requests upwards (``rup``, and its complement ``rupb`` from the NOR, so the parent needs
  no inverter) and passes the grant from above down to the left child if it requests,
  else to the right child: ``g0 = gin & r0``, ``g1 = gin & r1 & ~r0``. So the LOWEST
  active address is granted, which is also the paper's tie rule. The requests come with
  their complements, as the sense amplifier's SR latch gives both. Depth log2(N).
* ``topk_encoderN``: one-hot to binary, address bit b = OR of the grants whose address has
  bit b set, as a balanced tree of alternating NOR2/NAND2 (plus an inverter where the
  depth is odd).
* ``topk_counter``: 4-bit synchronous up-counter (master-slave transmission-gate flip-flops
  with reset) and a ``count >= k`` compare for a 4-bit k given on pins: ``c >= k`` is the
  carry out of ``c + ~k + 1``, a ripple of four majority gates. STOP is buffered.

Wires: the tree is laid out along the array's columns (pitch ``p``). A node at tree level
j (j = 1 next to the columns) sits in the middle of its 2^j columns, so the wire to each
child is 2^(j-2) pitches long (half a pitch at level 1) and the wire up to its parent
2^(j-1) pitches. Each such wire gets ``c_pitch`` farads per pitch; likewise each encoder
gate output is loaded with half the column span of its inputs. ``c_pitch = 0`` leaves
the wires out.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

#: Sizing parameters every generated subcircuit takes (and passes to its cells).
#: Unit inverter 0.2/0.4 um at L = 50 nm; wire capacitance per column pitch: a dual 10T
#: column about 1.2 um wide in 45 nm at about 0.2 fF/um of minimum-width metal (typical
#: values, an assumption of this project).
PARAMS: dict[str, float] = {"w_n": 0.2e-6, "w_p": 0.4e-6, "l": 50e-9, "c_pitch": 0.25e-15}
N_FULL = 256
COUNTER_BITS = 4

_PASS = "w_n={w_n} w_p={w_p} l={l}"


def _params_decl() -> str:
    return " ".join(f"{k}={v:g}" for k, v in PARAMS.items())


def _wrap(words: list[str], width: int = 96) -> str:
    """Join words into SPICE lines no wider than ``width``, with ``+`` continuations."""
    lines: list[str] = []
    cur = ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = "+ " + w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return "\n".join(lines)


# Static CMOS cells. Series stacks are widened by their height so every gate drives
# about like the unit inverter.
CELLS = """\
* ---- static CMOS cells (all take w_n w_p l: unit inverter widths and gate length)
.subckt dinv a y vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xp y a vdd vdd pfet w={w_p} l={l}
xn y a vss vss nfet w={w_n} l={l}
.ends dinv

.subckt dnand2 a b y vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xpa y a vdd vdd pfet w={w_p} l={l}
xpb y b vdd vdd pfet w={w_p} l={l}
xna y a m vss nfet w={2*w_n} l={l}
xnb m b vss vss nfet w={2*w_n} l={l}
.ends dnand2

.subckt dnand3 a b c y vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xpa y a vdd vdd pfet w={w_p} l={l}
xpb y b vdd vdd pfet w={w_p} l={l}
xpc y c vdd vdd pfet w={w_p} l={l}
xna y a m1 vss nfet w={3*w_n} l={l}
xnb m1 b m2 vss nfet w={3*w_n} l={l}
xnc m2 c vss vss nfet w={3*w_n} l={l}
.ends dnand3

.subckt dnor2 a b y vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xpa m a vdd vdd pfet w={2*w_p} l={l}
xpb y b m vdd pfet w={2*w_p} l={l}
xna y a vss vss nfet w={w_n} l={l}
xnb y b vss vss nfet w={w_n} l={l}
.ends dnor2

* majority: y = ab + ac + bc, as NAND(NAND(a,b), NAND(a,c), NAND(b,c))
.subckt dmaj a b c y vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xab a b nab vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
xac a c nac vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
xbc b c nbc vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
xy nab nac nbc y vdd vss dnand3 w_n={w_n} w_p={w_p} l={l}
.ends dmaj

* y = a xor b from four NAND2
.subckt dxor2 a b y vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
x1 a b n1 vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
x2 a n1 n2 vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
x3 b n1 n3 vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
x4 n2 n3 y vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
.ends dxor2

* transmission gate between a and b, on while en = 1 (enb = 0)
.subckt dtg a b en enb vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xn a en b vss nfet w={w_n} l={l}
xp a enb b vdd pfet w={w_p} l={l}
.ends dtg

* Positive-edge master-slave D flip-flop with asynchronous active-high reset (q = 0).
* Master transparent while clk = 0, slave while clk = 1; the reset enters through the
* NOR2 of each latch.
.subckt dff_r d clk rst q qb vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xc1 clk ck_b vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xc2 ck_b ck vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xt1 d ma ck_b ck vdd vss dtg w_n={w_n} w_p={w_p} l={l}
xm1 ma rst mb vdd vss dnor2 w_n={w_n} w_p={w_p} l={l}
xm2 mb mf vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xt2 mf ma ck ck_b vdd vss dtg w_n={w_n} w_p={w_p} l={l}
xt3 mb sa ck ck_b vdd vss dtg w_n={w_n} w_p={w_p} l={l}
xs1 sa rst sb vdd vss dnor2 w_n={w_n} w_p={w_p} l={l}
xs2 sb sf vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xt4 sf sa ck_b ck vdd vss dtg w_n={w_n} w_p={w_p} l={l}
xo1 sb qb vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xo2 qb q vdd vss dinv w_n={w_n} w_p={w_p} l={l}
.ends dff_r

* Arbiter tree node: requests r0 (lower addresses, priority) and r1 with complements;
* rup = r0 | r1 (and rupb) up to the parent; the grant gin from the parent goes to the
* left child if it requests (g0 = gin & r0), else to the right (g1 = gin & r1 & ~r0).
.subckt arb_node r0 r0b r1 gin rup rupb g0 g1 vdd vss params: w_n=0.2e-6 w_p=0.4e-6 l=50e-9
xor1 r0 r1 rupb vdd vss dnor2 w_n={w_n} w_p={w_p} l={l}
xor2 rupb rup vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xg0a gin r0 g0b vdd vss dnand2 w_n={w_n} w_p={w_p} l={l}
xg0b g0b g0 vdd vss dinv w_n={w_n} w_p={w_p} l={l}
xg1a gin r1 r0b g1b vdd vss dnand3 w_n={w_n} w_p={w_p} l={l}
xg1b g1b g1 vdd vss dinv w_n={w_n} w_p={w_p} l={l}
.ends arb_node
"""


@dataclass(frozen=True)
class Gate:
    """One cell instance: its inputs and outputs in port order (then vdd vss)."""

    cell: str
    ins: tuple[str, ...]
    outs: tuple[str, ...]


# Logic of the cells, for constant propagation: 0, 1, None (switching) or "?" (not yet
# known, while the netlist is being resolved).
Level = int | None


def _or(*xs):
    if 1 in xs:
        return 1
    return "?" if "?" in xs else (0 if all(x == 0 for x in xs) else None)


def _and(*xs):
    if 0 in xs:
        return 0
    return "?" if "?" in xs else (1 if all(x == 1 for x in xs) else None)


def _not(x):
    return x if x in (None, "?") else 1 - x


def _eval(g: Gate, v: list[Level]) -> list[Level]:
    if g.cell == "arb_node":
        r0, r0b, r1, gin = v
        rup = _or(r0, r1)
        return [rup, _not(rup), _and(gin, r0), _and(gin, r1, r0b)]
    if g.cell == "dnor2":
        return [_not(_or(*v))]
    if g.cell == "dnand2":
        return [_not(_and(*v))]
    if g.cell == "dinv":
        return [_not(v[0])]
    raise ValueError(f"no logic for cell {g.cell}")


@dataclass
class GateNetlist:
    """A generated subcircuit as cells and wire capacitances (in column pitches)."""

    name: str
    ports: list[str]
    gates: list[Gate] = field(default_factory=list)
    wires: dict[str, float] = field(default_factory=dict)

    def add(self, cell: str, ins: list[str], outs: list[str]) -> None:
        self.gates.append(Gate(cell, tuple(ins), tuple(outs)))

    def wire(self, net: str, pitches: float) -> None:
        if pitches > 0:
            self.wires[net] = pitches

    def text(self) -> str:
        head = _wrap([".subckt", self.name, *self.ports, "params:", _params_decl()])
        lines = [head]
        for i, g in enumerate(self.gates, start=1):
            lines.append(f"x{i} {' '.join(g.ins + g.outs)} vdd vss {g.cell} {_PASS}")
        for net, pitches in self.wires.items():
            lines.append(f"cw_{net} {net} vss {{c_pitch*{pitches:g}}}")
        lines.append(f".ends {self.name}")
        return "\n".join(lines) + "\n"

    def mosfets(self) -> int:
        return sum(CELL_MOSFETS[g.cell] for g in self.gates)


CELL_MOSFETS = {"arb_node": 20, "dnor2": 4, "dnand2": 4, "dinv": 2, "dnand3": 6,
                "dxor2": 16, "dmaj": 18, "dff_r": 24}


def _check_n(n: int) -> int:
    if n < 4 or n & (n - 1):
        raise ValueError(f"number of arbiter inputs must be a power of two >= 4, got {n}")
    return int(math.log2(n))


def arbiter_gates(n: int) -> GateNetlist:
    """``topk_arbiterN``: the fixed-priority tree over ``n`` requests.

    Ports: ``req0..req{n-1} reqb0..reqb{n-1} en grant0..grant{n-1} anyreq vdd vss``.
    ``en`` is the root's grant (tie it high for a combinational arbiter); ``anyreq`` is
    the OR of all requests.
    """
    depth = _check_n(n)
    ports = [f"req{i}" for i in range(n)] + [f"reqb{i}" for i in range(n)] + ["en"]
    ports += [f"grant{i}" for i in range(n)] + ["anyreq", "vdd", "vss"]
    net = GateNetlist(f"topk_arbiter{n}", ports)
    req = [f"req{i}" for i in range(n)]
    reqb = [f"reqb{i}" for i in range(n)]
    for j in range(1, depth + 1):
        nxt, nxtb = [], []
        for m in range(len(req) // 2):
            top = j == depth
            up, upb = ("anyreq", "anyreqb") if top else (f"r{j}_{m}", f"rb{j}_{m}")
            gin = "en" if top else f"g{j}_{m}"
            g0 = f"grant{2 * m}" if j == 1 else f"g{j - 1}_{2 * m}"
            g1 = f"grant{2 * m + 1}" if j == 1 else f"g{j - 1}_{2 * m + 1}"
            net.add("arb_node", [req[2 * m], reqb[2 * m], req[2 * m + 1], gin],
                    [up, upb, g0, g1])
            span_dn = 0.5 if j == 1 else 2 ** (j - 2)
            net.wire(g0, span_dn)
            net.wire(g1, span_dn)
            if not top:
                net.wire(up, 2 ** (j - 1))
                net.wire(upb, 2 ** (j - 1))
            nxt.append(up)
            nxtb.append(upb)
        req, reqb = nxt, nxtb
    return net


def encoder_gates(n: int) -> GateNetlist:
    """``topk_encoderN``: one-hot grants to a log2(n)-bit address.

    Ports: ``grant0..grant{n-1} addr0..addr{B-1} vdd vss`` (addr0 the LSB).
    """
    bits = _check_n(n)
    ports = [f"grant{i}" for i in range(n)] + [f"addr{i}" for i in range(bits)] + ["vdd", "vss"]
    net = GateNetlist(f"topk_encoder{n}", ports)
    for bit in range(bits):
        # (net, active_high, lowest address, highest address) of each tree input
        items = [(f"grant{i}", True, i, i) for i in range(n) if (i >> bit) & 1]
        level = 0
        while len(items) > 1:
            level += 1
            nxt = []
            for m in range(len(items) // 2):
                a, c = items[2 * m], items[2 * m + 1]
                out = f"e{bit}_{level}_{m}"
                # high-active inputs: NOR gives OR low-active; low-active: NAND gives OR
                net.add("dnor2" if a[1] else "dnand2", [a[0], c[0]], [out])
                lo, hi = a[2], c[3]
                net.wire(out, (hi - lo + 1) / 2)
                nxt.append((out, not a[1], lo, hi))
            items = nxt
        top, high, _, _ = items[0]
        if high:
            # even depth: the last NAND gives the OR itself; buffer it onto the pin
            net.add("dinv", [top], [f"e{bit}_o"])
            net.add("dinv", [f"e{bit}_o"], [f"addr{bit}"])
        else:
            net.add("dinv", [top], [f"addr{bit}"])
    return net


def arbiter_subckt(n: int) -> str:
    return arbiter_gates(n).text()


def encoder_subckt(n: int) -> str:
    return encoder_gates(n).text()


def prune(net: GateNetlist, levels: dict[str, Level], name: str,
          ports: list[str]) -> tuple[GateNetlist, dict[str, Level]]:
    """The switching cone of ``net`` for inputs held at ``levels`` (0, 1 or None).

    Cells whose inputs are all constant never switch: they are left out and their outputs
    tied to the rail of their logic value. Every cell with a switching input is kept,
    whatever its output does, so each switching net keeps all its gate loads and wires.
    Delays and dynamic energy of the kept nets are therefore those of the full circuit
    (up to the coupling into the constant nets, now ideal rails); leakage is only that
    of the kept cells. Returns the pruned subcircuit and the logic level of every net.
    """
    val: dict[str, Level] = {"vdd": 1, "vss": 0, **levels}
    pending = list(net.gates)
    while pending:  # the grant path runs against the instance order: sweep until done
        rest = []
        progress = False
        for g in pending:
            outs = _eval(g, [val.get(x, "?") for x in g.ins])
            for o, v in zip(g.outs, outs, strict=True):
                if v != "?" and o not in val:
                    val[o] = v
                    progress = True
            if any(o not in val for o in g.outs):
                rest.append(g)
        if not progress and rest:
            missing = sorted({x for g in rest for x in g.ins if x not in val})
            raise ValueError(f"prune: no level for {', '.join(missing[:5])}")
        pending = rest
    rail = {0: "vss", 1: "vdd"}
    out = GateNetlist(name, ports)
    for g in net.gates:
        if all(val.get(x) is not None for x in g.ins):
            continue
        ins = [rail[val[x]] if val.get(x) is not None else x for x in g.ins]
        outs = [f"nc_{o}" if val.get(o) is not None else o for o in g.outs]
        out.gates.append(Gate(g.cell, tuple(ins), tuple(outs)))
    out.wires = {k: v for k, v in net.wires.items() if val.get(k) is None}
    return out, val


def counter_subckt(bits: int = COUNTER_BITS) -> str:
    """``topk_counter``: ``bits``-bit up-counter on the rising clock, STOP = count >= k.

    Ports: ``clk rst k0..k{bits-1} stop q0..q{bits-1} vdd vss`` (k and q LSB first).
    """
    q = [f"q{i}" for i in range(bits)]
    ports = ["clk", "rst", *[f"k{i}" for i in range(bits)], "stop", *q, "vdd", "vss"]
    net = GateNetlist("topk_counter", ports)
    # next state: d_i = q_i xor (q_0 & ... & q_{i-1})
    net.add("dinv", [q[0]], ["d0"])
    carry = q[0]
    for i in range(1, bits):
        net.add("dxor2", [q[i], carry], [f"d{i}"])
        if i < bits - 1:
            net.add("dnand2", [carry, q[i]], [f"cb{i}"])
            net.add("dinv", [f"cb{i}"], [f"c{i}"])
            carry = f"c{i}"
    for i in range(bits):
        net.add("dff_r", [f"d{i}", "clk", "rst"], [q[i], f"qb{i}"])
    # count >= k: carry out of count + ~k + 1, a ripple of majority gates
    ge = "vdd"
    for i in range(bits):
        net.add("dinv", [f"k{i}"], [f"kb{i}"])
        net.add("dmaj", [q[i], f"kb{i}", ge], [f"ge{i}"])
        ge = f"ge{i}"
    net.add("dinv", [ge], ["stopb"])
    net.add("dinv", ["stopb"], ["stop"])
    return net.text()


def tree_subckts(n: int) -> str:
    """The arbiter and encoder subcircuits for ``n`` inputs (cells not included)."""
    return arbiter_subckt(n) + "\n" + encoder_subckt(n)


def cone_subckt(n: int, active: list[int]) -> tuple[str, list[str], int, int]:
    """Arbiter + encoder of ``n`` inputs pruned to the cone of the ``active`` requests.

    All other requests are held low (their complements high) and the root enabled.
    Returns the subcircuit ``topk_cone{n}`` (ports: req, reqb of each active column, the
    grants of the active columns, the address bits, vdd, vss), its port list, and the
    MOSFET counts of the cone and of the full arbiter + encoder.
    """
    bits = _check_n(n)
    arb, enc = arbiter_gates(n), encoder_gates(n)
    both = GateNetlist("both", [])
    both.gates = arb.gates + enc.gates
    both.wires = {**arb.wires, **enc.wires}
    levels: dict[str, Level] = {"en": 1}
    for i in range(n):
        on = i in active
        levels[f"req{i}"] = None if on else 0
        levels[f"reqb{i}"] = None if on else 1
    ports = [f"req{i}" for i in active] + [f"reqb{i}" for i in active]
    ports += [f"grant{i}" for i in active] + [f"addr{b}" for b in range(bits)] + ["vdd", "vss"]
    cone, _ = prune(both, levels, f"topk_cone{n}", ports)
    return cone.text(), ports, cone.mosfets(), both.mosfets()


def template_text() -> str:
    """The full text of ``netlists/topk_digital.sp``."""
    header = f"""\
* Digital blocks of the top-k ramp in-memory ADC: fixed-priority tree arbiter over
* {N_FULL} column requests (lowest address wins), {N_FULL}-to-{int(math.log2(N_FULL))} one-hot-to-
* binary encoder, and a {COUNTER_BITS}-bit counter with a count >= k compare that raises STOP
* (S. Dong et al., Topkima-Former, arXiv 2411.13050, Sec. III-A).
*
* GENERATED by charact/blocks/digital_netlist.py (python -m charact.blocks.digital_netlist);
* edit the generator, not this file. Devices are the technology-neutral nfet/pfet
* wrappers (w, l in metres). Parameters of the generated subcircuits: w_n, w_p (unit
* inverter widths), l (gate length), c_pitch (wire capacitance per column pitch, F).
* Sizes are drawn for a 50 nm minimum length; charact scales every w_*/l_* default by the
* technology's l_min / l_ref (and applies its [sizes.<subckt>] defaults).
* charact: l_ref=50e-9
"""
    return "\n".join([header, CELLS, "* ---- generated",
                      arbiter_subckt(N_FULL), encoder_subckt(N_FULL), counter_subckt()])


if __name__ == "__main__":
    sys.stdout.write(template_text())
