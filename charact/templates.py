"""Parametric SPICE templates: plain subcircuit files in ``netlists/``.

A template file holds one block as one or more ``.subckt NAME ports... params: p=v ...``
definitions written with the generic devices ``nfet``/``pfet`` (ports d g s b, params
w l in metres) that each technology renders. A file is runnable by hand once a device
library is included. This module reads the subcircuit headers so that benches can be
rendered with explicit parameters and unknown or missing ones are refused by name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from charact.errors import UserError
from charact.paths import netlists_dir

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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"template parameter {key!r} of {sc.name} must be a number")
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
    return Template(path=path, text=text, subckts=subckts)


def load_template(name: str) -> Template:
    """A shipped template by file name (``sense_amp.sp``) or a path."""
    path = Path(name)
    if not path.is_file():
        path = netlists_dir() / name
    if not path.is_file():
        raise UserError(f"template not found: {name}")
    return parse_template(path)
