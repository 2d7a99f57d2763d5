"""The shared vocabulary of test benches: numbers, sources and measurements.

Every bench writes the same few kinds of SPICE lines: a number, a DC/PULSE/PWL source,
a ``.tran`` analysis and ``.meas`` statements. Written once here, they are formatted the
same way everywhere, and a measurement is one object that both writes its ``.meas``
line and reads its value back from a :class:`~charact.runner.RunResult`, so the name in
the deck and the name read can never drift apart::

    ms = [FindAt(f"dec{i}", "v(dout)", at=t) for i, t in enumerate(times)]
    body += [m.line() for m in ms]
    decisions = read_all(ctx.run("offset", "\\n".join(body)), ms)

Values are numbers or SPICE expressions: a ``str`` (``"{vdd}"``, ``"10p"``) is written
as it is, a number through :func:`num`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from charact.runner import RunResult

Value = float | str  # a number, or a SPICE expression written verbatim

# What ngspice accepts as a .meas name and prints back (charact.runner.parse_measures).
_NAME = re.compile(r"[A-Za-z_][\w.]*")
_EDGES = ("RISE", "FALL", "CROSS")
_ANALYSES = ("tran", "dc", "ac", "sp")


def num(x: float) -> str:
    """The SPICE form of a number: six significant digits (``.6g``).

    A NaN or an infinity would reach ngspice as ``nan``/``inf`` and fail there with a
    message far from its cause; it is refused here instead.
    """
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"not a finite number for a SPICE deck: {x!r}")
    return f"{x:.6g}"


def val(v: Value) -> str:
    """A number through :func:`num`; a string (a SPICE expression) as it is."""
    return v if isinstance(v, str) else num(v)


# -- sources ---------------------------------------------------------------------------------
# Each returns one element line, ``name node 0 ...``: the element's first letter (V or I)
# makes it a voltage or a current source.

def dc(name: str, node: str, value: Value) -> str:
    """A constant source."""
    return f"{name} {node} 0 {val(value)}"


def pulse(name: str, node: str, v0: Value, v1: Value, delay: float, rise: float,
          fall: float, width: float, period: float, count: int | None = None) -> str:
    """``PULSE(v0 v1 delay rise fall width period [count])``; ``count`` limits the number
    of pulses (ngspice's optional seventh argument)."""
    args = [val(v0), val(v1), num(delay), num(rise), num(fall), num(width), num(period)]
    if count is not None:
        args.append(str(int(count)))
    return f"{name} {node} 0 PULSE({' '.join(args)})"


def pwl(name: str, node: str, points: Sequence[tuple[float, Value]]) -> str:
    """``PWL(t0 v0 t1 v1 ...)`` through ``points``."""
    if not points:
        raise ValueError(f"{name}: a PWL source needs at least one point")
    return f"{name} {node} 0 PWL({' '.join(f'{num(t)} {val(v)}' for t, v in points)})"


def clock(name: str, node: str, period: float, edge: float, high_level: Value = "{vdd}",
          delay: float | None = None, width: float | None = None,
          count: int | None = None) -> str:
    """A comparator clock: low (reset) in the first half of each period, high (evaluate)
    in the second.

    ``delay`` is the first rising edge (default half a period); ``width`` the flat top
    (default half a period less one edge, so the fall ends one edge into the next
    cycle's reset); ``count`` limits the number of pulses.
    """
    delay = period / 2 if delay is None else delay
    width = period / 2 - edge if width is None else width
    return pulse(name, node, 0, high_level, delay, edge, edge, width, period, count)


def trapezoid_points(t_on: float, width: float, level: Value, edge: float
                     ) -> list[tuple[float, Value]]:
    """PWL points of one pulse from 0 to ``level`` whose 50 % points are ``t_on`` and
    ``t_on + width``, with linear edges of ``edge``."""
    a = t_on - edge / 2
    b = t_on + width - edge / 2
    return [(0.0, 0.0), (a, 0.0), (a + edge, level), (b, level), (b + edge, 0.0)]


def trapezoid(name: str, node: str, t_on: float, width: float, level: Value,
              edge: float) -> str:
    """A PWL source of one pulse (a word-line pulse) whose 50 % points are ``t_on`` and
    ``t_on + width``: its width is the time the line is above half its level."""
    return pwl(name, node, trapezoid_points(t_on, width, level, edge))


def staircase(values: Sequence[float], period: float, edge: float
              ) -> list[tuple[float, float]]:
    """PWL points holding ``values[i]`` over cycle ``i`` of ``period``; each step takes
    ``edge`` and starts a tenth into its cycle, early in the comparator's reset phase."""
    if not values:
        raise ValueError("a staircase needs at least one value")
    pts = [(0.0, values[0])]
    for i, v in enumerate(values[1:], start=1):
        t = i * period + 0.1 * period
        pts.append((t, values[i - 1]))
        pts.append((t + edge, v))
    return pts


def tran(step: Value, stop: Value, tmax: Value | None = None, uic: bool = False) -> str:
    """``.tran step stop [0 tmax] [uic]``: output from t = 0, largest step ``tmax``."""
    words = [".tran", val(step), val(stop)]
    if tmax is not None:
        words += ["0", val(tmax)]
    if uic:
        words.append("uic")
    return " ".join(words)


# -- measurements ----------------------------------------------------------------------------

def _edge(e: str) -> str:
    up = e.upper()
    if up not in _EDGES:
        raise ValueError(f"edge must be one of {', '.join(_EDGES)}, got {e!r}")
    return up


@dataclass(frozen=True)
class Measure:
    """One ``.meas`` statement: :meth:`line` writes it, :meth:`value` reads its result.

    ``name`` is what ngspice prints back (in lower case: :meth:`value` lower-cases it,
    as :meth:`RunResult.need` does); ``analysis`` the analysis it measures.
    """

    name: str
    analysis: str = field(default="tran", kw_only=True)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"not a .meas name: {self.name!r}")
        if self.analysis not in _ANALYSES:
            raise ValueError(f"{self.name}: analysis must be one of {', '.join(_ANALYSES)}, "
                             f"got {self.analysis!r}")

    def spec(self) -> str:
        """What follows ``.meas <analysis> <name>``."""
        raise NotImplementedError

    def line(self) -> str:
        return f".meas {self.analysis} {self.name} {self.spec()}"

    def value(self, result: RunResult) -> float:
        """The measured value; NaN when ngspice did not report it (a FIND outside the
        simulated span, a TRIG/TARG edge that never came, a failed run)."""
        return float(result.measures.get(self.name.lower(), math.nan))


@dataclass(frozen=True)
class FindAt(Measure):
    """``FIND expr AT=at``: the value of ``expr`` at one time (or sweep value)."""

    expr: str
    at: float

    def spec(self) -> str:
        return f"FIND {self.expr} AT={num(self.at)}"


@dataclass(frozen=True)
class Delay(Measure):
    """``TRIG .. TARG ..``: the time from an edge of ``trig_expr`` through ``trig_val``
    to an edge of ``targ_expr`` through ``targ_val``.

    ``td``: both edges are looked for only after this time (omitted when None);
    ``trig_edge``/``targ_edge``: RISE, FALL or CROSS; ``trig_n``/``targ_n``: which such
    edge counts (1 = the first).
    """

    trig_expr: str
    trig_val: Value
    targ_expr: str
    targ_val: Value
    td: float | None = None
    trig_edge: str = "RISE"
    targ_edge: str = "RISE"
    trig_n: int = 1
    targ_n: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "trig_edge", _edge(self.trig_edge))
        object.__setattr__(self, "targ_edge", _edge(self.targ_edge))

    def spec(self) -> str:
        td = "" if self.td is None else f" TD={num(self.td)}"
        return (f"TRIG {self.trig_expr} VAL={val(self.trig_val)}{td} "
                f"{self.trig_edge}={int(self.trig_n)} "
                f"TARG {self.targ_expr} VAL={val(self.targ_val)}{td} "
                f"{self.targ_edge}={int(self.targ_n)}")


@dataclass(frozen=True)
class When(Measure):
    """``WHEN expr=level EDGE=n``: the time ``expr`` crosses ``level``."""

    expr: str
    level: Value
    edge: str = "RISE"
    n: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "edge", _edge(self.edge))

    def spec(self) -> str:
        return f"WHEN {self.expr}={val(self.level)} {self.edge}={int(self.n)}"


@dataclass(frozen=True)
class Integ(Measure):
    """``INTEG expr FROM=t_from TO=t_to``: the integral of ``expr`` over a window (the
    charge a supply delivers, from its current)."""

    expr: str
    t_from: float
    t_to: float

    def spec(self) -> str:
        return f"INTEG {self.expr} FROM={num(self.t_from)} TO={num(self.t_to)}"


@dataclass(frozen=True)
class _Extreme(Measure):
    expr: str
    t_from: float | None = None
    t_to: float | None = None
    kind: ClassVar[str] = ""  # MAX or MIN, set by the subclass

    def spec(self) -> str:
        window = "" if self.t_from is None else f" FROM={num(self.t_from)}"
        window += "" if self.t_to is None else f" TO={num(self.t_to)}"
        return f"{self.kind} {self.expr}{window}"


@dataclass(frozen=True)
class MaxOf(_Extreme):
    """``MAX expr [FROM= TO=]``: the largest value, over the whole run or a window."""

    kind: ClassVar[str] = "MAX"


@dataclass(frozen=True)
class MinOf(_Extreme):
    """``MIN expr [FROM= TO=]``: the smallest value, over the whole run or a window."""

    kind: ClassVar[str] = "MIN"


def read_all(result: RunResult, measures: Sequence[Measure]) -> np.ndarray:
    """The values of ``measures``, in order, as floats (NaN where not reported)."""
    return np.array([m.value(result) for m in measures], dtype=float)


__all__ = ["Delay", "FindAt", "Integ", "MaxOf", "Measure", "MinOf", "Value", "When", "clock",
           "dc", "num", "pulse", "pwl", "read_all", "staircase", "tran", "trapezoid",
           "trapezoid_points", "val"]
