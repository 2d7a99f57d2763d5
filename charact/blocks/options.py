"""Typed measurement options: a block's ``[measure]`` table as a frozen dataclass.

Each field is made by :func:`opt` and carries its default, a one-line doc and its
constraint; the field's annotation is its type:

* ``float``: a number (an integer is accepted, ``true``/``false`` never), finite unless
  declared otherwise;
* ``int``: an integer (not a bool, not ``16.0``);
* ``bool``, ``str``;
* ``list[T]`` of any of these (nested lists too), ``dict[str, T]`` (a TOML table).

Bounds (``positive``, ``min``, ``max``, ``finite``) apply to every number of the value,
inside lists and tables too; ``choices`` to a string; ``length`` / ``min_len`` to a list
or a string. :func:`check_values` checks a merged options dict against every field and
raises :class:`charact.errors.UserError` with one line naming ``[measure] <field>`` and
what it must be. Rules that tie several fields together (``delay_ref`` one of
``delta_v``, ``k <= n_cols``) stay in the block's ``check_options``; ``rule`` documents
them beside the field so that the option table shows them.

The option values are never converted: a job key holds them as the spec wrote them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Iterator
from typing import Any

from charact.errors import UserError

_META = "charact.option"


@dataclasses.dataclass(frozen=True)
class Constraint:
    """What :func:`opt` records in a field's metadata."""

    doc: str
    positive: bool = False  # every number > 0
    min: float | None = None  # every number >= min
    max: float | None = None  # every number <= max
    finite: bool = True  # every float finite (no nan, inf)
    choices: tuple[str, ...] | None = None  # a string, one of these
    length: int | None = None  # a list (or string) of exactly this many items
    min_len: int = 0  # a list (or string) of at least this many items
    rule: str = ""  # a cross-field rule the block checks, shown in the option table
    # a rule on the value itself, beyond type and bounds: the problem in words, or None
    check: Callable[[Any], str | None] | None = None


def opt(default: Any, doc: str, *, positive: bool = False, min: float | None = None,
        max: float | None = None, finite: bool = True,
        choices: tuple[str, ...] | None = None, length: int | None = None,
        min_len: int = 0, rule: str = "",
        check: Callable[[Any], str | None] | None = None) -> Any:
    """A documented option field: its default, a one-line doc and its constraint.

    ``check`` is a rule on the value itself (run after the type and bounds): it returns
    what is wrong, in words, or None. Lists and tables get a ``default_factory`` (each
    instance its own copy)."""
    meta = {_META: Constraint(doc, positive, min, max, finite,
                              tuple(choices) if choices is not None else None, length,
                              min_len, rule, check)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A block without measurement options."""


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One option as the reference table shows it."""

    name: str
    type: Any
    default: Any
    constraint: Constraint

    @property
    def text(self) -> str:
        """What a value must be, rule included."""
        text = describe(self.type, self.constraint)
        return f"{text}; {self.constraint.rule}" if self.constraint.rule else text


@functools.cache
def option_fields(cls: type) -> tuple[OptionInfo, ...]:
    """The options of an options dataclass, in declaration order (inherited ones first)."""
    params = getattr(cls, "__dataclass_params__", None)
    if not (dataclasses.is_dataclass(cls) and params is not None and params.frozen):
        raise TypeError(f"{cls.__name__}: options must be a frozen dataclass")
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        c = f.metadata.get(_META)
        if c is None:
            raise TypeError(f"{cls.__name__}.{f.name}: declare options with opt()")
        default = f.default if f.default_factory is dataclasses.MISSING \
            else f.default_factory()
        out.append(OptionInfo(f.name, hints[f.name], default, c))
    return tuple(out)


def option_defaults(cls: type) -> dict[str, Any]:
    """The defaults of an options dataclass as a plain dict (fresh copies)."""
    return {o.name: copy.deepcopy(o.default) for o in option_fields(cls)}


def check_values(cls: type, values: dict[str, Any]) -> None:
    """Check every field of ``cls`` present in ``values`` against its type and
    constraint; the first violation raises a one-line :class:`UserError`."""
    for o in option_fields(cls):
        if o.name in values and not _valid(values[o.name], o.type, o.constraint):
            raise UserError(f"[measure] {o.name} must be {o.text}, got "
                            f"{toml_value(values[o.name])}")
        if o.name in values and o.constraint.check is not None:
            problem = o.constraint.check(values[o.name])
            if problem:
                raise UserError(f"[measure] {o.name}: {problem}")


# -- ngspice .option words -------------------------------------------------------------------

# The ngspice .option names a block's ``spice_options`` may set (ngspice manual, "Simulator
# Variables"), by the value each takes. ngspice skips a name it does not know without
# failing the run, so a typo would silently leave its default in force: unknown names
# are refused. Options that would change what charact controls itself (seed, scale,
# output and accounting) are left out.
_SPICE_POSITIVE = ("reltol", "abstol", "vntol", "chgtol", "trtol", "gmin", "gshunt",
                   "pivtol", "pivrel", "rshunt", "cshunt", "xmu")
_SPICE_COUNTS = ("itl1", "itl2", "itl3", "itl4", "itl5", "itl6", "gminsteps", "srcsteps",
                 "maxord")
_SPICE_TEMPS = ("temp", "tnom")
_SPICE_CHOICES = {"method": ("trap", "trapezoidal", "gear")}
_SPICE_FLAGS = ("noopiter", "keepopinfo", "klu", "sparse", "interp", "savecurrents",
                "noinit", "norefvalue")
SPICE_OPTION_NAMES = tuple(sorted(_SPICE_POSITIVE + _SPICE_COUNTS + _SPICE_TEMPS
                                  + tuple(_SPICE_CHOICES) + _SPICE_FLAGS))
_SPICE_SCALE = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "m": 1e-3, "u": 1e-6,
                "n": 1e-9, "p": 1e-12, "f": 1e-15}
SPICE_OPTIONS_RULE = ("each word name=value (or a bare flag) with an ngspice .option name "
                      "charact allows: " + ", ".join(SPICE_OPTION_NAMES)
                      + "; numbers finite and > 0 (temp, tnom: finite)")


def _spice_number(text: str) -> float | None:
    """A SPICE number (``1e-5``, ``10u``, ``2meg``), or None."""
    t = text.strip().lower()
    try:
        return float(t)
    except ValueError:
        pass
    for suffix in sorted(_SPICE_SCALE, key=len, reverse=True):
        if t.endswith(suffix):
            try:
                return float(t[:-len(suffix)]) * _SPICE_SCALE[suffix]
            except ValueError:
                return None
    return None


def _spice_word_problem(word: str) -> str | None:
    name, eq, value = word.partition("=")
    name, value = name.strip().lower(), value.strip()
    if name not in SPICE_OPTION_NAMES:
        return (f"unknown ngspice option {name or word!r} in {word!r} (ngspice would "
                f"ignore it); allowed: {', '.join(SPICE_OPTION_NAMES)}")
    if name in _SPICE_FLAGS:
        return None if not eq else f"{name!r} is a flag and takes no value, got {word!r}"
    if not eq or not value:
        return f"{name!r} needs a value ({name}=...), got {word!r}"
    if name in _SPICE_CHOICES:
        return None if value.lower() in _SPICE_CHOICES[name] else \
            f"{name} must be one of {', '.join(_SPICE_CHOICES[name])}, got {value!r}"
    x = _spice_number(value)
    if x is None or not math.isfinite(x):
        return f"{name} must be a finite number, got {value!r}"
    if name in _SPICE_TEMPS:
        return None
    if not x > 0:
        return f"{name} must be > 0, got {value!r}"
    if name in _SPICE_COUNTS and x != int(x):
        return f"{name} must be a whole number, got {value!r}"
    return None


def check_spice_options(words: Any) -> str | None:
    """The problem with a ``spice_options`` list (ngspice .option words), or None."""
    for word in words if isinstance(words, list) else []:
        if not isinstance(word, str) or not word.strip() or any(c.isspace() for c in
                                                                  word.strip()):
            return f"each entry is one word name=value, got {toml_value(word)}"
        problem = _spice_word_problem(word.strip())
        if problem:
            return problem
    return None


# -- checking -------------------------------------------------------------------------------

def _valid(value: Any, tp: Any, c: Constraint) -> bool:
    if not _conforms(value, tp):
        return False
    if isinstance(value, (list, str)):
        if c.length is not None and len(value) != c.length:
            return False
        if len(value) < c.min_len:
            return False
    if c.choices is not None and value not in c.choices:
        return False
    return all(_in_bounds(x, c) for x in _numbers(value))


def _conforms(value: Any, tp: Any) -> bool:
    """``value`` has type ``tp`` (bool is not a number; int stands for a float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    if tp in (int, str):
        return isinstance(value, tp)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and _conforms(v, args[1]) for k, v in value.items())
    raise TypeError(f"unsupported option type {tp!r}")


def _numbers(value: Any) -> Iterator[int | float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)


def _in_bounds(x: int | float, c: Constraint) -> bool:
    if c.finite and not math.isfinite(x):
        return False
    if math.isnan(x):
        return False
    if c.positive and not x > 0:
        return False
    if c.min is not None and not x >= c.min:
        return False
    return not (c.max is not None and not x <= c.max)


# -- describing ------------------------------------------------------------------------------

def _noun(tp: Any, plural: bool, finite: bool) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is float:
        word = "finite number" if finite else "number"
    elif tp is int:
        word = "integer"
    elif tp is bool:
        return "true or false"
    elif tp is str:
        word = "string"
    elif origin is list:
        return ("lists" if plural else "list") + " of " + _noun(args[0], True, finite)
    elif origin is dict:
        return ("tables" if plural else "table") + " of " + _noun(args[1], True, finite)
    else:
        word = str(tp)
    return word + "s" if plural else word


def _bounds(c: Constraint) -> str:
    if c.positive and c.max is not None:
        return f" in (0, {c.max:g}]"
    if c.min is not None and c.max is not None:
        return f" in {c.min:g}..{c.max:g}"
    if c.positive:
        return " > 0"
    if c.min is not None:
        return f" >= {c.min:g}"
    if c.max is not None:
        return f" <= {c.max:g}"
    return ""


def _article(text: str) -> str:
    return ("an " if text[0] in "aeiou" else "a ") + text


def describe(tp: Any, c: Constraint) -> str:
    """What a value of type ``tp`` under ``c`` must be, in words: 'a finite number > 0',
    'a non-empty list of finite numbers > 0', 'one of lean, ideal, 6t'."""
    if c.choices is not None:
        return "one of " + ", ".join(c.choices)
    if tp is bool:
        return "true or false"
    noun = _noun(tp, False, c.finite) + _bounds(c)
    if c.length is not None:
        head, _, rest = noun.partition(" of ")
        return f"a {head} of {c.length} {rest}" if rest else f"{noun} of length {c.length}"
    if c.min_len == 1:
        return "a non-empty " + noun
    if c.min_len > 1:
        head, _, rest = noun.partition(" of ")
        return f"a {head} of at least {c.min_len} {rest}"
    return _article(noun)


def toml_value(value: Any, limit: int = 80) -> str:
    """``value`` as TOML writes it (true, nan, "text", [1, 2]), cut at ``limit``."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            text = repr(v)  # shortest round-trip form: 0.125, 1.0, 4e-09
            mant, e, exp = text.partition("e")
            return f"{mant}e{int(exp)}" if e else text
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + "}"
        return repr(v)

    text = fmt(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


__all__ = ["SPICE_OPTIONS_RULE", "SPICE_OPTION_NAMES", "Constraint", "NoOptions",
           "OptionInfo", "check_spice_options", "check_values", "describe", "opt",
           "option_defaults", "option_fields", "toml_value"]
