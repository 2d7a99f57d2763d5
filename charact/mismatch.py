"""Device-keyed local mismatch: one die is the same die in every deck.

Each transistor instance is named by its hierarchical path in the deck (``xsa.xgn``:
instance ``xgn`` of the subcircuit placed as ``xsa``). Its two unit-normal scores, one for
the threshold shift and one for the current factor, are a pure function of
``(seed, die, path)``: a counter-based stream (a keyed hash turned into normals by
Box-Muller), so the values of a device do not depend on which other devices the deck
holds, their order, the operating point or the simulator. Two decks of one die that
share a device give it the same shift; a trim run and the conversions it trims see the
same offsets; a full-SPICE and a composed model can be paired device for device.

The scores reach the devices through the technology's ``nfet``/``pfet`` wrappers (their
``zvt``/``zbeta`` parameters; ``charact.tech`` turns them into volts and a current factor
with Pelgrom's law and the technology's own way of applying them). Since every instance
of a subcircuit shares one definition, :func:`expand` gives each placed instance its own
copy of the subcircuits above a device (``name__u<n>``), whose device lines take their
scores from global parameters listed at the end of the deck. Node and instance names
are unchanged, so ``.ic`` and ``.save`` lines keep working.

The walk also evaluates every device's ``w`` and ``l`` (simple brace expressions over
subcircuit parameters), which is how decks are checked against the technology's minimum
sizes and how a die's values are exported with their sizes.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass, field

from charact.errors import UserError

#: Version of the stream: part of every job key, so a change here never mixes dies.
STREAM_VERSION = "1"
#: Global parameters that carry the scores (``.param mmzv7=... mmzb7=...``): a die differs
#: from another only in these lines, so a kept ngspice session can switch dies with
#: ``alterparam`` + ``reset`` instead of re-reading the models (``charact.persistent``).
SCORE_PREFIX = "mmz"
LEAVES = ("nfet", "pfet")


def normals(seed: int, die: int, path: str) -> tuple[float, float]:
    """Two independent standard normals for one device of one die.

    A keyed BLAKE2b hash of ``(seed, die, path)`` gives two 53-bit uniforms; Box-Muller
    turns them into two normals. Pure Python, identical on every platform."""
    h = hashlib.blake2b(f"charact-mismatch/{STREAM_VERSION}|{seed}|{die}|{path}".encode(),
                        digest_size=16).digest()
    u1 = ((int.from_bytes(h[:8], "little") >> 11) + 1) / 2.0**53  # (0, 1]: log is finite
    u2 = (int.from_bytes(h[8:], "little") >> 11) / 2.0**53
    r = math.sqrt(-2.0 * math.log(u1))
    return r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)


def stream_seed(seed: int, die: int) -> int:
    """A 31-bit seed for other per-die randomness (ngspice's own ``.option seed`` for a
    deck's native statistical sections, input patterns): fixed by (seed, die) alone."""
    h = hashlib.blake2b(f"charact-die/{STREAM_VERSION}|{seed}|{die}".encode(),
                        digest_size=8).digest()
    return int.from_bytes(h, "little") % 2_000_000_000 + 1


@dataclass(frozen=True)
class DeviceDraw:
    """One transistor of a deck: its path, kind, evaluated size (m) and scores."""

    path: str
    kind: str  # "nfet" or "pfet"
    w: float  # NaN when the expression could not be evaluated
    l: float  # noqa: E741 - the SPICE name of the gate length
    z_vt: float = 0.0
    z_beta: float = 0.0


@dataclass
class Expansion:
    """A deck's text with per-instance scores, and its devices in netlist order."""

    text: str
    devices: list[DeviceDraw] = field(default_factory=list)


# -- parsing ------------------------------------------------------------------------------

_NUM = re.compile(
    r"(?<![\w.])((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*(?![\w.])",
    re.IGNORECASE)
_SCALE = {"t": "e12", "g": "e9", "meg": "e6", "k": "e3", "m": "e-3", "mil": "*25.4e-6",
          "u": "e-6", "n": "e-9", "p": "e-12", "f": "e-15"}
_FUNCS = {name: getattr(math, name) for name in (
    "sqrt", "exp", "log", "sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "floor",
    "ceil")}
_FUNCS.update(abs=abs, min=min, max=max, pow=pow, pi=math.pi)


def _to_python(expr: str) -> str:
    def num(m: re.Match) -> str:
        suffix = (m.group(2) or "").lower()
        scale = _SCALE.get(suffix, "")
        text = m.group(1)
        if scale.startswith("*"):
            return f"({text}{scale})"
        if scale and re.search(r"[eE]", text):
            return f"({text}*1{scale})"
        return f"{text}{scale}"
    return _NUM.sub(num, expr.strip().lower()).replace("^", "**")


def evaluate(value: str, env: dict[str, float]) -> float:
    """A parameter value (``1e-6``, ``0.5u``, ``{w_in*2}``, ``w_in``) in ``env``; NaN if
    it cannot be evaluated (a function this evaluator lacks, an unknown name)."""
    expr = value.strip()
    if expr.startswith("{") and expr.endswith("}") or expr.startswith("'") and expr.endswith("'"):
        expr = expr[1:-1]
    try:
        return float(eval(_compiled(expr), _GLOBALS, env))  # noqa: S307
    except Exception:  # an expression outside the subset: size unknown, never fatal
        return math.nan


_GLOBALS = {"__builtins__": {}, **_FUNCS}


@functools.lru_cache(maxsize=4096)
def _compiled(expr: str):
    # Decks repeat a few size expressions thousands of times: compile each once.
    return compile(_to_python(expr), "<spice expression>", "eval")


_EQ = re.compile(r"\s*=\s*")


def _tokens(line: str) -> list[str]:
    """Whitespace-separated tokens, keeping ``{...}``/``'...'`` expressions and
    ``key = value`` assignments whole."""
    line = _EQ.sub("=", line) if "=" in line else line
    if "{" not in line and "'" not in line:
        return line.split()
    out, cur, depth, quote = [], "", 0, False
    for ch in line:
        if ch == "'" and depth == 0:
            quote = not quote
        elif ch == "{" and not quote:
            depth += 1
        elif ch == "}" and not quote:
            depth -= 1
        if ch.isspace() and depth == 0 and not quote:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _logical(text: str) -> list[str]:
    """Lines with ``+`` continuations joined; comments and blank lines kept as they are."""
    lines: list[str] = []
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("+") and lines and not lines[-1].lstrip().startswith("*"):
            lines[-1] = lines[-1].rstrip() + " " + s[1:].strip()
        else:
            lines.append(raw)
    return lines


def _strip_comment(line: str) -> str:
    s = line.split(";")[0].split("$ ")[0].rstrip()
    return "" if s.lstrip().startswith("*") else s.strip()


@dataclass
class _Subckt:
    name: str
    ports: list[str]
    params: dict[str, str]
    body: list[str]  # logical lines, comments dropped


@dataclass
class _Instance:
    name: str
    nodes: list[str]
    subckt: str
    params: dict[str, str]


def _parse_instance(line: str) -> _Instance | None:
    toks = _tokens(line)
    if not toks or toks[0][:1].lower() != "x":
        return None
    toks = [t for t in toks if t.lower() != "params:"]
    pos = [i for i, t in enumerate(toks) if "=" in t]
    end = pos[0] if pos else len(toks)
    if end < 2:
        return None
    params = {}
    for t in toks[end:]:
        k, _, v = t.partition("=")
        params[k.lower()] = v
    return _Instance(toks[0], toks[1:end - 1], toks[end - 1].lower(), params)


def _parse_deck(text: str) -> tuple[dict[str, _Subckt], dict[str, str]]:
    """Subcircuit definitions and global ``.param`` values."""
    subckts: dict[str, _Subckt] = {}
    params: dict[str, str] = {}
    stack: list[_Subckt] = []
    for raw in _logical(text):
        line = _strip_comment(raw)
        low = line.lower()
        if low.startswith(".subckt"):
            toks = _tokens(line)
            ports = [t for t in toks[2:] if "=" not in t and t.lower() != "params:"]
            p = {}
            for t in toks[2:]:
                if "=" in t:
                    k, _, v = t.partition("=")
                    p[k.lower()] = v
            stack.append(_Subckt(toks[1].lower(), ports, p, []))
            continue
        if low.startswith(".ends"):
            if stack:
                sc = stack.pop()
                subckts[sc.name] = sc
            continue
        if stack:
            if line:
                stack[-1].body.append(line)
            continue
        if low.startswith(".param"):
            for t in _tokens(line)[1:]:
                if "=" in t:
                    k, _, v = t.partition("=")
                    params[k.lower()] = v
    return subckts, params


# -- expansion ----------------------------------------------------------------------------

def expand(text: str, seed: int | None = None, die: int = 0,
           leaves: tuple[str, ...] = LEAVES) -> Expansion:
    """Walk the deck's instance hierarchy down to the ``nfet``/``pfet`` devices.

    With ``seed`` set, return the text with every device's scores written on its line
    (subcircuits above devices copied per placed instance); without, the text unchanged.
    The devices come back either way, with their evaluated sizes.
    """
    subckts, gparams = _parse_deck(text)
    genv: dict[str, float] = {}
    for k, v in gparams.items():
        genv[k] = evaluate(v, genv)
    holds: dict[str, bool] = {}

    def holds_devices(name: str, seen: tuple[str, ...] = ()) -> bool:
        if name in leaves:
            return True
        if name not in holds:
            sc = subckts.get(name)
            if sc is None or name in seen:
                return False
            holds[name] = any(
                (inst := _parse_instance(ln)) is not None
                and holds_devices(inst.subckt, seen + (name,)) for ln in sc.body)
        return holds[name]

    devices: list[DeviceDraw] = []
    copies: list[str] = []
    scores: list[str] = []
    counter = [0]

    def walk(inst: _Instance, path: str, env: dict[str, float]) -> str:
        """The instance line to write; recurses into subcircuits that hold devices."""
        sc = subckts.get(inst.subckt)
        if inst.subckt in leaves:
            values = {k: evaluate(v, env) for k, v in inst.params.items()}
            w = values.get("w", _default(sc, "w", env))
            l_ = values.get("l", _default(sc, "l", env))
            z1, z2 = normals(seed, die, path) if seed is not None else (0.0, 0.0)
            devices.append(DeviceDraw(path, inst.subckt, w, l_, z1, z2))
            if seed is None:
                return ""
            n = len(devices)
            scores.append(f".param {SCORE_PREFIX}v{n}={z1:.9g} {SCORE_PREFIX}b{n}={z2:.9g}")
            return f" zvt={{{SCORE_PREFIX}v{n}}} zbeta={{{SCORE_PREFIX}b{n}}}"
        if sc is None or not holds_devices(inst.subckt):
            return ""
        local = dict(genv)
        for k, v in sc.params.items():
            local[k] = evaluate(v, local)
        for k, v in inst.params.items():
            local[k] = evaluate(v, env)
        body = []
        for ln in sc.body:
            child = _parse_instance(ln)
            if child is None:
                body.append(ln)
                continue
            extra = walk(child, f"{path}.{child.name.lower()}", local)
            body.append(_rewrite(ln, child, extra))
        if seed is None:
            return ""
        counter[0] += 1
        new = f"{sc.name}__u{counter[0]}"
        params = " ".join(f"{k}={v}" for k, v in sc.params.items())
        head = f".subckt {new} {' '.join(sc.ports)}" + (f" params: {params}" if params else "")
        copies.append("\n".join([head, *body, f".ends {new}"]))
        return f"@{new}"

    out: list[str] = []
    depth = 0
    for raw in _logical(text):
        line = _strip_comment(raw)
        low = line.lower()
        if low.startswith(".subckt"):
            depth += 1
        elif low.startswith(".ends"):
            depth -= 1
        elif depth == 0 and low.startswith(".end"):
            if seed is not None:
                out += ["* ---- per-instance copies of subcircuits (device-keyed mismatch)",
                        *copies, "* ---- mismatch scores (zvt, zbeta of each device in order; "
                        "the die's only lines)", *scores]
            out.append(raw)
            continue
        inst = _parse_instance(line) if depth == 0 else None
        if inst is None:
            out.append(raw)
            continue
        extra = walk(inst, inst.name.lower(), genv)
        out.append(_rewrite(line, inst, extra) if extra else raw)
    if seed is None:
        return Expansion(text, devices)
    return Expansion("\n".join(out) + "\n", devices)


def _default(sc: _Subckt | None, key: str, env: dict[str, float]) -> float:
    if sc is None or key not in sc.params:
        return math.nan
    return evaluate(sc.params[key], env)


def _rewrite(line: str, inst: _Instance, extra: str) -> str:
    if not extra:
        return line
    toks = _tokens(line)
    toks = [t for t in toks if t.lower() != "params:"]
    pos = [i for i, t in enumerate(toks) if "=" in t]
    end = pos[0] if pos else len(toks)
    if extra.startswith("@"):
        toks[end - 1] = extra[1:]
        return " ".join(toks)
    return " ".join(toks) + extra


def check_sizes(devices: list[DeviceDraw], l_min: float, w_min: float, where: str) -> None:
    """Refuse a deck with a device below the technology's minimum length or width."""
    tol = 1 - 1e-6
    for d in devices:
        if d.l == d.l and d.l < l_min * tol:
            raise UserError(f"{where}: device {d.path} ({d.kind}) has l = {d.l:.4g} m, below "
                            f"the technology's l_min {l_min:.4g} m")
        if d.w == d.w and d.w < w_min * tol:
            raise UserError(f"{where}: device {d.path} ({d.kind}) has w = {d.w:.4g} m, below "
                            f"the technology's w_min {w_min:.4g} m")
        if d.l == d.l and d.w == d.w and not (d.l > 0 and d.w > 0 and math.isfinite(d.l * d.w)):
            raise UserError(f"{where}: device {d.path} has a non-positive or non-finite size")


def die_table(devices: list[DeviceDraw] | tuple[DeviceDraw, ...], avt: dict[str, float],
              abeta: dict[str, float]) -> list[dict[str, float | str]]:
    """A die's values per device: path, kind, size, scores, and the threshold shift (V)
    and current-factor shift (fraction) they give with the coefficients per kind."""
    rows: list[dict[str, float | str]] = []
    for d in devices:
        root = math.sqrt(d.w * d.l) if d.w == d.w and d.l == d.l else math.nan
        rows.append({"path": d.path, "kind": d.kind, "w": d.w, "l": d.l, "z_vt": d.z_vt,
                     "z_beta": d.z_beta, "dvt": d.z_vt * avt.get(d.kind, 0.0) / root,
                     "dbeta": d.z_beta * abeta.get(d.kind, 0.0) / root})
    return rows


def split_scores(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The deck without its score parameters, and the (name, value) pairs they set."""
    keep, pairs = [], []
    prefix = f".param {SCORE_PREFIX}"
    for line in text.splitlines():
        if line.startswith(prefix):
            pairs += [tuple(t.split("=", 1)) for t in line.split()[1:]]
        else:
            keep.append(line)
    return "\n".join(keep) + "\n", pairs
