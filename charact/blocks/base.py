"""The extension point for circuit blocks.

A block is one circuit with its test bench and measurements: it names its template
file(s) and main subcircuit, the extra sweep axes it understands (``conditions``), its
measurement options (``Options``: a frozen dataclass of documented, typed fields, see
:mod:`charact.blocks.options`), and the columns it measures. ``simulate`` turns one job (an
operating point, template parameters, conditions and one Monte-Carlo sample) into one
row. It may run several decks (a coarse then a fine search, say) through ``ctx.run``.
"""

from __future__ import annotations

import copy
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from charact.blocks.options import NoOptions, check_values, option_defaults
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
        if self.point.seed is not None and deck.devices:
            write_die_table(deck, self.tech, self.workdir)
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
    #: Measurement options (the spec's ``[measure]`` table): a frozen dataclass whose
    #: fields, made by :func:`charact.blocks.options.opt`, carry default, doc and constraint.
    Options: ClassVar[type] = NoOptions
    #: The defaults of ``Options`` as a dict (derived; what job keys and benches see).
    options: ClassVar[dict[str, Any]] = {}
    #: Columns ``simulate`` returns, in order.
    columns: ClassVar[tuple[str, ...]]
    #: The few columns the end-of-sweep summary shows (mean and std per corner);
    #: empty = the first six of ``columns``.
    summary_columns: ClassVar[tuple[str, ...]] = ()
    #: SI unit of each column in ``columns`` (and of each ``conditions`` axis): 'V', 's',
    #: 'J', 'F', 'A', 'C', 'W', 'LSB' (a fraction of one ADC code), '1' for dimensionless
    #: numbers (counts, codes, indices, ratios, flags), '-' for text (digests, patterns,
    #: JSON). The sweep manifest records them, and fitted models carry them on.
    units: ClassVar[dict[str, str]] = {}
    #: Units of columns named by a pattern (a block may add columns per option value,
    #: ``delay_dv10mV`` say): ``(regular expression, unit)`` pairs, matched in full.
    unit_patterns: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options" in cls.__dict__:
            # one source of truth: the dict is derived, never written by hand
            raise TypeError(f"{cls.__name__}: declare [measure] options as an Options "
                            "dataclass, not an options dict")
        cls.options = option_defaults(cls.Options)

    def summary(self) -> tuple[str, ...]:
        return self.summary_columns or self.columns[:6]

    def unit(self, column: str) -> str:
        """The unit of ``column``: from ``units``, else the first matching
        ``unit_patterns`` entry; '' for a column this block does not measure."""
        if column in self.units:
            return self.units[column]
        for pattern, unit in self.unit_patterns:
            if re.fullmatch(pattern, column):
                return unit
        return ""

    def load_templates(self, tech: Technology | None = None) -> tuple[Template, ...]:
        """The block's templates; with ``tech``, their sizes follow that technology."""
        found = tuple(load_template(f) for f in self.template_files)
        return found if tech is None else tuple(t.for_technology(tech) for t in found)

    def check_params(self, params: dict[str, float], tech: Technology | None = None
                     ) -> dict[str, float]:
        """``params`` over the main subcircuit's defaults (for ``tech``, when given);
        unknown names, non-numbers and sizes below the technology's minimums refused."""
        main = next(t for t in self.load_templates(tech) if self.subckt in t.subckts)
        values = check_params(main.subckt(self.subckt), params)
        if tech is not None:
            main.check_sizes(tech, values, self.subckt)
        return values

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Merge options over the defaults and check every value against its field of
        ``Options``; a block overrides this to add its cross-field rules (calling this
        first). Returns the merged dict, values as given (they enter the job key)."""
        from charact.errors import UserError

        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise UserError(
                f"unknown [measure] option(s) {', '.join(unknown)} for block {self.name}; "
                f"known: {', '.join(sorted(self.options)) or 'none'}"
            )
        merged = {**copy.deepcopy(self.options), **options}
        check_values(self.Options, merged)
        return merged

    @abstractmethod
    def simulate(self, ctx: JobContext) -> dict[str, float] | list[dict[str, float]]:
        """Run the bench(es) for one job and return the measured columns: one row, or a
        list of rows (several conversions of one deck; the table gets an ``item`` column)."""

    def empty_row(self) -> dict[str, float]:
        return {c: math.nan for c in self.columns}


def write_die_table(deck: Deck, tech: Technology, workdir: Path) -> Path:
    """``<deck>.mismatch.csv`` beside the deck: every device's mismatch on this die
    (kept with ``--keep-work`` and for failed jobs; ``charact render`` writes it too)."""
    import csv

    from charact.mismatch import die_table

    rows = die_table(deck.devices, *tech.coefficients())
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{deck.name}.mismatch.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
