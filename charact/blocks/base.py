"""The extension point for circuit blocks.

A block is one circuit with its test bench and measurements: it names its template
file(s) and main subcircuit, the extra sweep axes it understands (``conditions``), its
measurement options, and the columns it measures. ``simulate`` turns one job (an
operating point, template parameters, conditions and one Monte-Carlo sample) into one
row. It may run several decks (a coarse then a fine search, say) through ``ctx.run``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from charact.deck import Deck, Point, render_deck
from charact.runner import RunResult, Simulator
from charact.tech import Technology
from charact.templates import Template, check_params, load_template


class JobFailed(Exception):
    """A simulation of the job failed; the sweep records the reason and goes on."""


@dataclass
class JobContext:
    """Everything one job needs, and the means to run its decks."""

    tech: Technology
    point: Point
    params: dict[str, float]  # template parameters, defaults filled in
    conditions: dict[str, float]  # block-specific sweep axes
    options: dict[str, Any]  # measurement options, defaults filled in
    workdir: Path
    sim: Simulator
    templates: tuple[Template, ...]
    timeout: float = 600.0
    elapsed: float = 0.0
    decks: list[str] = field(default_factory=list)

    def deck(self, name: str, body: str) -> Deck:
        # A block may tighten tolerances through its "spice_options" measurement option.
        extra = tuple(str(x) for x in self.options.get("spice_options", ()))
        return render_deck(name, body, self.tech, self.point, self.templates,
                           extra_options=extra)

    def run(self, name: str, body: str, raw: bool = False) -> RunResult:
        """Render and run one deck; raise :class:`JobFailed` if ngspice failed."""
        deck = self.deck(name, body)
        result = self.sim.run(deck, self.workdir, timeout=self.timeout, raw=raw)
        self.elapsed += result.elapsed
        self.decks.append(deck.sha256)
        if not result.ok:
            raise JobFailed(f"{name}: {result.reason}")
        return result


class Block(ABC):
    """Base class of a characterized circuit block."""

    name: ClassVar[str]
    #: Bump when the bench or the measurement changes: it is part of every job key.
    version: ClassVar[str] = "1"
    template_files: ClassVar[tuple[str, ...]]
    #: The subcircuit whose parameters a sweep spec may set in ``[params]``.
    subckt: ClassVar[str]
    #: Extra sweep axes with their defaults (for example the comparator common mode).
    conditions: ClassVar[dict[str, float]] = {}
    #: Measurement options (the spec's ``[measure]`` table) with their defaults.
    options: ClassVar[dict[str, Any]] = {}
    #: Columns ``simulate`` returns, in order.
    columns: ClassVar[tuple[str, ...]]
    #: The few columns the end-of-sweep summary shows (mean and std per corner);
    #: empty = the first six of ``columns``.
    summary_columns: ClassVar[tuple[str, ...]] = ()

    def summary(self) -> tuple[str, ...]:
        return self.summary_columns or self.columns[:6]

    def load_templates(self) -> tuple[Template, ...]:
        return tuple(load_template(f) for f in self.template_files)

    def check_params(self, params: dict[str, float]) -> dict[str, float]:
        main = next(t for t in self.load_templates() if self.subckt in t.subckts)
        return check_params(main.subckt(self.subckt), params)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Merge options over the defaults; a block may override to check values."""
        from charact.errors import UserError

        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise UserError(
                f"unknown [measure] option(s) {', '.join(unknown)} for block {self.name}; "
                f"known: {', '.join(sorted(self.options)) or 'none'}"
            )
        return {**self.options, **options}

    @abstractmethod
    def simulate(self, ctx: JobContext) -> dict[str, float] | list[dict[str, float]]:
        """Run the bench(es) for one job and return the measured columns: one row, or a
        list of rows (several conversions of one deck; the table gets an ``item`` column)."""

    def empty_row(self) -> dict[str, float]:
        return {c: math.nan for c in self.columns}
