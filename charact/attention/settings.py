"""The settings an accuracy run sweeps, as the command line spells them: k, crossbar sizes
(with the paper's crossbars scaled to the model) and PVT points. No torch needed here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from charact.errors import UserError

ALL = "all"


@dataclass(frozen=True)
class Crossbar:
    """A crossbar of ``rows`` x ``cols`` cells (None = unlimited).

    ``paper``: a crossbar of the paper's Fig. 4(c) (128 or 256, square) scaled to the
    model, resolved by :func:`resolve_crossbar` once the head size and token count are
    known (rows and cols are None until then).
    """

    rows: int | None = None
    cols: int | None = None
    paper: int | None = None

    @property
    def label(self) -> str:
        if self.paper is not None:
            if self.rows is None:
                return f"paper{self.paper}"
            return f"paper{self.paper}={self.rows}x{self.cols}"
        if self.rows is None and self.cols is None:
            return "none"
        if self.rows == self.cols:
            return f"{self.rows}"
        return f"{self.rows}x{self.cols}"


# The paper's BERT setting (Sec. IV-B, Fig. 4(c)): head size 64, 384 keys (SQuAD), 64
# replica rows per column; a 128-row crossbar leaves 64 MAC rows = 1 ternary cell per K
# weight, a 256-row one 192 = 3 cells (15 levels); 384 keys on 128 columns = 3 crossbars.
PAPER_D_K = 64
PAPER_KEYS = 384
PAPER_SIZES = (128, 256)


def resolve_crossbar(xb: Crossbar, d_k: int, n_keys: int, replica_rows: int = 64,
                     max_cells: int = 3) -> Crossbar:
    """A ``paper`` crossbar scaled to a model with head size ``d_k`` and ``n_keys`` keys.

    Rows keep the paper's K precision: ``replica_rows + d_k * cells`` with the paper's
    cells per weight, ``(size - 64) // 64`` (128 -> 1 ternary cell, 256 -> 3 cells). Columns
    keep the paper's split of the keys: ``ceil(n_keys * size / 384)`` (128 -> thirds,
    256 -> two thirds + one third), so the per-crossbar k_i of k = 5 are the paper's
    2, 2, 1 and 3, 2. On this ViT (d_k = 16, 65 keys): paper128 = 80x22 (22 + 22 + 21
    keys), paper256 = 112x44 (44 + 21 keys). Other crossbars come back unchanged.
    """
    if xb.paper is None:
        return xb
    cells = min(max_cells, (xb.paper - replica_rows) // PAPER_D_K)
    rows = replica_rows + d_k * cells
    cols = -(-n_keys * xb.paper // PAPER_KEYS)
    return Crossbar(rows, cols, xb.paper)


def parse_crossbar(text: str) -> Crossbar:
    """``none``, ``R`` (square R x R), ``RxC``, or ``paper128``/``paper256`` (scaled)."""
    t = text.strip().lower()
    if t in ("none", "global", ""):
        return Crossbar()
    m = re.fullmatch(r"paper(\d+)", t)
    if m:
        size = int(m.group(1))
        if size not in PAPER_SIZES:
            raise UserError(f"bad crossbar size {text!r}; the paper's sizes are "
                            f"{', '.join(f'paper{p}' for p in PAPER_SIZES)}")
        return Crossbar(paper=size)
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", t)
    if not m:
        raise UserError(
            f"bad crossbar size {text!r}; use none, R (square), RxC (e.g. 256 or 128x32) "
            "or paper128/paper256"
        )
    rows = int(m.group(1))
    cols = int(m.group(2)) if m.group(2) else rows
    if rows <= 64 or cols < 1:
        raise UserError(
            f"crossbar {text!r}: needs more than 64 rows (64 are replica rows) and >= 1 column"
        )
    return Crossbar(rows, cols)


def parse_pvt(text: str) -> tuple[str, float, float]:
    """``CORNER/VDD/TEMP`` (``SS/1/125``; the labels ``SS/1V/125C`` of ``charact show``
    also work) as (corner, vdd in V, temp in degC)."""
    parts = str(text).strip().split("/")
    if len(parts) != 3 or not parts[0]:
        raise UserError(f"bad --pvt {text!r}; use CORNER/VDD/TEMP, e.g. SS/1/125")
    corner, vdd, temp = parts
    try:
        v = float(vdd[:-1] if vdd.lower().endswith("v") else vdd)
        t = float(temp[:-1] if temp.lower().endswith("c") else temp)
    except ValueError as exc:
        raise UserError(f"bad --pvt {text!r}; VDD and TEMP must be numbers, e.g. "
                        "SS/1/125") from exc
    if not (math.isfinite(v) and math.isfinite(t)):
        raise UserError(f"bad --pvt {text!r}; VDD and TEMP must be finite numbers")
    return corner, v, t


def parse_k(text: str) -> int | None:
    """An integer k >= 1, or ``all``."""
    if str(text).lower() == ALL:
        return None
    try:
        k = int(text)
    except ValueError as exc:
        raise UserError(f"bad k {text!r}; use a positive integer or 'all'") from exc
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    return k
