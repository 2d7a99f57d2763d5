"""Render a complete ngspice deck: technology devices + templates + a bench body."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from charact.errors import UserError
from charact.mismatch import DeviceDraw, check_sizes, expand, stream_seed
from charact.tech import Technology
from charact.templates import Template


@dataclass(frozen=True)
class Deck:
    """A self-contained netlist and the ``.spiceinit`` lines it needs."""

    name: str
    text: str
    spiceinit: tuple[str, ...]
    # the transistors of the deck with their sizes and (Monte-Carlo) mismatch scores
    devices: tuple[DeviceDraw, ...] = field(default=(), compare=False)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(self.text.encode())
        h.update("\n".join(self.spiceinit).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Point:
    """An operating point: process corner, supply and temperature, and the die.

    ``seed`` is None for a nominal run (no mismatch). Otherwise the point is die ``die``
    of the Monte-Carlo stream ``seed``: every device's mismatch is keyed by
    ``(seed, die, instance path)`` (``charact.mismatch``), so the die is the same at
    every corner, supply and temperature and in every deck that holds the device.
    """

    corner: str
    vdd: float
    temp: float
    seed: int | None = None
    die: int = 0

    @property
    def stream_seed(self) -> int | None:
        """A seed for the die's other randomness (ngspice's own draws, patterns)."""
        return None if self.seed is None else stream_seed(self.seed, self.die)


def check_point(tech: Technology, point: Point) -> None:
    tech.check_corner(point.corner)
    if not point.vdd > 0:
        raise UserError(f"supply voltage must be positive, got vdd={point.vdd}")
    if not -273.15 < point.temp < 400:
        raise UserError(f"temperature out of range: {point.temp} degC")
    if point.seed is not None and (point.seed < 0 or point.die < 0):
        raise UserError(f"Monte-Carlo seed and die must be >= 0, got {point.seed}, "
                        f"{point.die}")


def render_deck(name: str, body: str, tech: Technology, point: Point,
                templates: tuple[Template, ...] = (), tmax: float | None = None,
                extra_options: tuple[str, ...] = ()) -> Deck:
    """Assemble a deck.

    ``body`` holds the bench: sources, instances of template subcircuits, the analysis,
    ``.save`` and ``.meas`` lines. The deck defines ``.param vdd`` and sets ``.temp``.
    """
    check_point(tech, point)
    mc = point.seed is not None
    parts = [f"* {name}  (rendered by charact; technology {tech.name})"]
    opts = ["noacct"]
    if tech.scale != 1.0:
        opts.append(f"scale={tech.scale:g}")
    if mc:
        # ngspice's own generator only serves a deck's native statistical sections
        opts.append(f"seed={point.stream_seed}")
    opts += list(tech.options) + list(extra_options)
    parts.append(".option " + " ".join(opts))
    parts.append(f".param vdd={point.vdd:.6g}")
    parts.append(f".temp {point.temp:.6g}")
    parts.append(tech.device_library(point.corner, mc))
    for t in templates:
        parts.append(f"* ---- template {t.path.name} sha256 {t.sha256[:16]}")
        parts.append(_strip_end(t.text))
    parts.append("* ---- bench")
    parts.append(body.rstrip())
    if tmax is not None and ".tran" not in body:
        raise ValueError("tmax given without a .tran analysis in the body")
    parts.append(".end")
    spiceinit = ("set num_threads=1",) + tuple(tech.spiceinit)
    text = "\n".join(parts) + "\n"
    keyed = mc and tech.mismatch.method == "pelgrom"
    exp = expand(text, seed=point.seed if keyed else None, die=point.die)
    check_sizes(exp.devices, tech.l_min, tech.w_min, f"deck {name} ({tech.name})")
    return Deck(name=name, text=exp.text, spiceinit=spiceinit, devices=tuple(exp.devices))


def _strip_end(text: str) -> str:
    # A template may end in .end so it runs by hand; inside a deck that would stop parsing.
    lines = [ln for ln in text.splitlines() if ln.strip().lower() != ".end"]
    return "\n".join(lines)
