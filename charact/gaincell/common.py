"""What the gain-cell benches share: the option groups, the column instance, and the
waveforms of a write and of pulse-width inputs.

Every gain-cell bench follows the conventions of ``netlists/gain_cell.sp``: a read word
line idles at VDD and is pulled to vss for the input's duration; a read bitline is held
at (or precharged to) ``rbl_frac x VDD``; a write word line rises to the boosted level
``v_wwl`` so that the NMOS write transistor passes the whole storage range; a signed
weight ``w`` is the pair ``(v_offset + w, v_offset - w)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from charact.bench import Value, num, pwl
from charact.blocks.base import JobContext
from charact.blocks.options import SPICE_OPTIONS_RULE, check_spice_options, opt
from charact.errors import UserError
from charact.templates import Template

TEMPLATE = "gain_cell.sp"
#: rows of ``gc_column`` (fixed by the template)
COLUMN_ROWS = 4


@dataclass(frozen=True)
class CellOptions:
    """Options of every bench that writes gain cells (voltages in V, times in s)."""

    v_wwl: float = opt(1.8, "boosted write word-line level (an NMOS write transistor passes "
                       "up to about v_wwl - Vt)", positive=True, max=3.0)
    t_write: float = opt(2e-9, "write word-line pulse of the writes that set up a bench",
                         positive=True, max=1e-6)
    t_edge: float = opt(50e-12, "edge of every word-line and control pulse", positive=True,
                        max=1e-9, rule="at most t_write / 4")
    rbl_frac: float = opt(0.9, "read bitline level (the readout's precharge) as a fraction "
                          "of VDD", positive=True, max=1.0)


@dataclass(frozen=True)
class PairOptions(CellOptions):
    """Options of the benches that write signed pairs."""

    v_offset: float = opt(0.45, "K_offset of the paper's Eq. (4): the stored level of a zero "
                          "weight; the '-' cell of a pair holds 2 v_offset - v_store",
                          min=0.0, max=2.0)


def check_cell_options(opts: dict[str, Any]) -> None:
    """The cross-field rules of :class:`CellOptions`."""
    if opts["t_edge"] > opts["t_write"] / 4:
        raise UserError(f"[measure] t_edge must be at most t_write / 4 "
                        f"({opts['t_write'] / 4:g} s), got {opts['t_edge']:g}")


def spice_options_field(default: list[str]) -> Any:
    """The ``spice_options`` field of a gain-cell block with its own default."""
    return opt(default, "extra .option words of every deck", rule=SPICE_OPTIONS_RULE,
               check=check_spice_options)


def template(ctx: JobContext, subckt: str) -> Template:
    """The loaded template that defines ``subckt``."""
    return next(t for t in ctx.templates if subckt in t.subckts)


def rbl_level(ctx: JobContext) -> str:
    """The read bitline level as a SPICE expression of the deck's ``vdd``."""
    return f"{{{num(ctx.options['rbl_frac'])}*vdd}}"


def column_line(ctx: JobContext, wwl: Sequence[str], rwl: Sequence[str],
                params: dict[str, float] | None = None) -> str:
    """The ``gc_column`` instance ``xcol`` on bitlines ``wblp wbln`` / ``rblp rbln``, its
    row word lines named by ``wwl`` and ``rwl`` (``COLUMN_ROWS`` each)."""
    if len(wwl) != COLUMN_ROWS or len(rwl) != COLUMN_ROWS:
        raise ValueError(f"gc_column has {COLUMN_ROWS} rows")
    nodes = [*wwl, "wblp", "wbln", *rwl, "rblp", "rbln", "0"]
    return template(ctx, "gc_column").instance("col", "gc_column", nodes,
                                               ctx.params if params is None else params)


def pulse_points(t_on: float, width: float, edge: float, idle: Value, active: Value
                 ) -> list[tuple[float, Value]]:
    """PWL points of one pulse from ``idle`` to ``active`` whose 50 % points are ``t_on``
    and ``t_on + width`` (without the leading ``(0, idle)`` point)."""
    a, b = t_on - edge / 2, t_on + width - edge / 2
    return [(a, idle), (a + edge, active), (b, active), (b + edge, idle)]


def pulses_source(name: str, node: str, pulses: Sequence[tuple[float, float]], edge: float,
                  idle: Value, active: Value) -> str:
    """A PWL source idling at ``idle`` with one pulse to ``active`` per ``(t_on, width)``."""
    pts: list[tuple[float, Value]] = [(0.0, idle)]
    for t_on, width in pulses:
        pts += pulse_points(t_on, width, edge, idle, active)
    return pwl(name, node, pts)


def step_source(name: str, node: str, steps: Sequence[tuple[float, float]], edge: float,
                start: float) -> str:
    """A PWL source at ``start`` that moves to each ``(t, level)`` within ``edge`` from t."""
    pts: list[tuple[float, Value]] = [(0.0, start)]
    level = start
    for t, new in steps:
        pts += [(t, level), (t + edge, new)]
        level = new
    return pwl(name, node, pts)


__all__ = ["COLUMN_ROWS", "TEMPLATE", "CellOptions", "PairOptions", "check_cell_options",
           "column_line", "pulse_points", "pulses_source", "rbl_level", "spice_options_field",
           "step_source", "template"]
