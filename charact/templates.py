"""Parametric SPICE templates: plain subcircuit files in ``netlists/``.

A template file holds one block as one or more ``.subckt NAME ports... params: p=v ...``
definitions written with the generic devices ``nfet``/``pfet`` (ports d g s b, params
w l in metres) that each technology renders. A file is runnable by hand once a device
library is included. This module reads the subcircuit headers so that benches can be
rendered with explicit parameters and unknown or missing ones are refused by name.

Sizes follow the technology: a template states the minimum length it was drawn for in a
comment line ``* charact: l_ref=50e-9``; :meth:`Template.for_technology` scales every
size parameter (``w``, ``l``, ``w_*``, ``l_*``) by ``l_min / l_ref``, applies the
technology's ``[sizes.<subcircuit>]`` defaults, and writes the result into the
subcircuit headers, so decks, instance lines and checks all see the same sizes.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from charact.errors import UserError
from charact.paths import netlists_dir

if TYPE_CHECKING:
    from charact.tech import Technology

_L_REF = re.compile(r"(?im)^\*\s*charact:\s*l_ref\s*=\s*(\S+)\s*$")
_SIZE = re.compile(r"^[wl](_\w+)?$")


def is_size(param: str) -> bool:
    """A parameter that is a transistor width or length (``w``, ``l``, ``w_*``, ``l_*``)."""
    return bool(_SIZE.match(param))

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?([a-zA-Z]*)$")
_SUFFIX = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "u": 1e-6,
           "n": 1e-9, "p": 1e-12, "f": 1e-15, "mil": 25.4e-6}


def spice_number(text: str) -> float:
    """Parse a SPICE number with an optional scale suffix (``0.5u``, ``2meg``, ``1e-9``)."""
    m = _NUMBER.match(text.strip())
    if not m:
        raise ValueError(text)
    suffix = m.group(3).lower()
    for key in ("meg", "mil", "t", "g", "k", "m", "u", "n", "p", "f"):
        if suffix.startswith(key):
            return float(m.group(1) + (m.group(2) or "")) * _SUFFIX[key]
    if suffix and not suffix.isalpha():
        raise ValueError(text)
    return float(m.group(1) + (m.group(2) or ""))  # units such as "V" or "s" are ignored


@dataclass(frozen=True)
class Subckt:
    name: str
    ports: tuple[str, ...]
    params: dict[str, float]  # defaults


@dataclass(frozen=True)
class Template:
    """One template file."""

    path: Path
    text: str
    subckts: dict[str, Subckt]
    l_ref: float | None = None  # the minimum length the template is drawn for
    technology: str = ""  # set once sizes follow a technology

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def subckt(self, name: str) -> Subckt:
        if name not in self.subckts:
            raise UserError(f"template {self.path.name} has no subcircuit {name!r}")
        return self.subckts[name]

    def instance(self, inst: str, subckt: str, nodes: list[str],
                 params: dict[str, float] | None = None) -> str:
        """An ``X`` line for ``subckt`` with explicit parameters, checked by name."""
        sc = self.subckt(subckt)
        if len(nodes) != len(sc.ports):
            raise ValueError(f"{subckt} has {len(sc.ports)} ports, got {len(nodes)} nodes")
        values = check_params(sc, params or {})
        args = " ".join(f"{k}={v:.6g}" for k, v in values.items())
        return f"X{inst} {' '.join(nodes)} {subckt} {args}".rstrip()

    def for_technology(self, tech: Technology) -> Template:
        """This template with its size defaults for ``tech`` (see the module doc)."""
        factor = tech.l_min / self.l_ref if self.l_ref else 1.0
        subckts, lines = {}, _joined(self.text)
        for name, sc in self.subckts.items():
            params = {k: (v * factor if is_size(k) else v) for k, v in sc.params.items()}
            for k, v in tech.sizes.get(name, {}).items():
                if k not in params:
                    raise UserError(f"technology {tech.name}: [sizes.{name}] names "
                                    f"{k!r}, not a parameter of {name} "
                                    f"(known: {', '.join(sorted(params))})")
                params[k] = v
            subckts[name] = Subckt(sc.name, sc.ports, params)
        out = []
        for line in lines:
            words = line.split()
            if line.lower().startswith(".subckt") and len(words) > 1 \
                    and words[1].lower() in subckts:
                out.append(_header(subckts[words[1].lower()]))
            else:
                out.append(line)
        return replace(self, text="\n".join(out) + "\n", subckts=subckts,
                       technology=tech.name)

    def check_sizes(self, tech: Technology, values: dict[str, float], subckt: str) -> None:
        """Refuse a size parameter below the technology's minimums."""
        for k, v in values.items():
            if not is_size(k):
                continue
            if not (v > 0 and math.isfinite(v)):
                raise UserError(f"{subckt} parameter {k} must be a positive size in metres, "
                                f"got {v}")
            floor = tech.l_min if k.startswith("l") else tech.w_min
            if v < floor * (1 - 1e-6):
                raise UserError(
                    f"{subckt} parameter {k} = {v:.4g} m is below the technology's "
                    f"{'l_min' if k.startswith('l') else 'w_min'} {floor:.4g} m "
                    f"({tech.name})")


def _header(sc: Subckt) -> str:
    params = " ".join(f"{k}={v:.6g}" for k, v in sc.params.items())
    head = f".subckt {sc.name} {' '.join(sc.ports)}"
    if not params:
        return head
    # wrapped so rendered decks stay readable
    words, lines, cur = params.split(), [], head + " params:"
    for w in words:
        if len(cur) + len(w) > 95:
            lines.append(cur)
            cur = "+"
        cur += " " + w
    lines.append(cur)
    return "\n".join(lines)


def _joined(text: str) -> list[str]:
    """Lines with the continuations of ``.subckt`` headers joined (others as written)."""
    out: list[str] = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("+") and out and out[-1].lower().startswith(".subckt"):
            out[-1] = out[-1].rstrip() + " " + raw.lstrip()[1:].strip()
        else:
            out.append(raw)
    return out


def check_params(sc: Subckt, params: dict[str, float]) -> dict[str, float]:
    """Merge ``params`` over the defaults; an unknown name or a non-number is an error."""
    unknown = sorted(set(params) - set(sc.params))
    if unknown:
        raise UserError(
            f"unknown template parameter(s) {', '.join(unknown)} for {sc.name}; "
            f"known: {', '.join(sorted(sc.params))}"
        )
    out = dict(sc.params)
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise UserError(f"template parameter {key!r} of {sc.name} must be a finite "
                            f"number, got {value!r}")
        out[key] = float(value)
    return out


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split(";")[0].rstrip()  # ngspice's end-of-line comment
        if not line.strip() or line.lstrip().startswith("*"):
            continue
        if line.lstrip().startswith("+") and lines:
            lines[-1] += " " + line.lstrip()[1:]
        else:
            lines.append(line.strip())
    return lines


def parse_template(path: Path) -> Template:
    text = path.read_text()
    subckts: dict[str, Subckt] = {}
    for line in _logical_lines(text):
        if not line.lower().startswith(".subckt"):
            continue
        m = re.search(r"(?i)\bparams:", line)
        head, tail = (line[: m.start()], line[m.end():]) if m else (line, "")
        words = head.split()
        ports = [w for w in words[2:] if "=" not in w]
        assigns = re.findall(r"(\w+)\s*=\s*([^\s=]+)", tail + " " + " ".join(words[2:]))
        params: dict[str, float] = {}
        for key, val in assigns:
            try:
                params[key.lower()] = spice_number(val)
            except ValueError:
                raise UserError(f"{path.name}: parameter {key} default {val!r} is not a number")\
                    from None
        subckts[words[1].lower()] = Subckt(words[1].lower(), tuple(ports), params)
    if not subckts:
        raise UserError(f"template {path} defines no .subckt")
    m = _L_REF.search(text)
    l_ref = None
    if m:
        try:
            l_ref = spice_number(m.group(1))
        except ValueError:
            raise UserError(f"{path.name}: l_ref {m.group(1)!r} is not a number") from None
    return Template(path=path, text=text, subckts=subckts, l_ref=l_ref)


def load_template(name: str) -> Template:
    """A shipped template by file name (``sense_amp.sp``) or a path."""
    path = Path(name)
    if not path.is_file():
        path = netlists_dir() / name
    if not path.is_file():
        raise UserError(f"template not found: {name}")
    return parse_template(path)
