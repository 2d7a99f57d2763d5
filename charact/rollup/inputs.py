"""Roll-up inputs from three sources, and where each value came from.

Precedence, field by field: an explicit value (CLI flag or config TOML) wins over a measured
one (α from the attention pipeline's ``selection_stats.parquet``; delays and energies from a
``pvt_table`` lookup model at one corner/VDD/temperature), which wins over the default (the
paper's value, or a labelled assumption; each dataclass field names its source). A value
derived from others (``t_ima = 2^n_bits·t_clk_ima`` when only the clock is given) says so.
Every value's origin is kept in :attr:`RollupInputs.provenance` and printed in the report.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from charact.errors import UserError
from charact.rollup.energy import EnergyInputs
from charact.rollup.latency import MacroInputs
from charact.rollup.module import ArchParams

SECTIONS: dict[str, type] = {"macro": MacroInputs, "energy": EnergyInputs, "arch": ArchParams}

# Columns the attention pipeline writes to selection_stats.parquet (alpha is required).
STATS_COLUMNS = ("alpha", "n_tied", "k", "layer", "run_id")
# With sub-top-k a query has one row per crossbar (``crossbar``, its own ``k`` = k_i); these
# columns identify the query so its rows can be merged.
QUERY_KEYS = ("run_id", "layer", "image", "head", "query")


def default_source(section: str, name: str) -> str:
    """The source named for a field's default (its dataclass metadata)."""
    for f in fields(SECTIONS[section]):
        if f.name == name:
            return f.metadata.get("source", "default")
    raise UserError(f"unknown roll-up input {section}.{name}")


def field_names(section: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(SECTIONS[section]))


def coerce(section: str, name: str, value: Any) -> Any:
    """Turn a TOML or command-line value into the field's type, or raise UserError."""
    key = f"{section}.{name}"
    if section not in SECTIONS:
        raise UserError(f"unknown section {section!r} in {key}; known: {', '.join(SECTIONS)}")
    types = {f.name: str(f.type) for f in fields(SECTIONS[section])}
    if name not in types:
        raise UserError(f"unknown roll-up input {key}; known: {', '.join(types)}")
    return coerce_number(key, value, integer=types[name] == "int")


def coerce_number(key: str, value: Any, integer: bool = False) -> int | float:
    """A finite number (an integer when ``integer``) from a TOML or command-line value, or
    a one-line UserError naming ``key``."""
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(num):
        raise UserError(f"{key} must be a finite number, got {value!r}")
    if integer:
        if num != int(num):
            raise UserError(f"{key} must be an integer, got {value!r}")
        return int(num)
    return num


# --------------------------------------------------------------------------- α statistics


@dataclass(frozen=True)
class AlphaStats:
    """α samples read from a selection-statistics file (rows of one k)."""

    path: str
    alpha: np.ndarray
    k: int | None  # k of the rows used; None when the file has no k column
    k_values: tuple[int, ...]
    n_rows: int
    n_runs: int
    n_tied_mean: float | None
    n_crossbars: int = 1  # crossbars merged per query (sub-top-k), 1 without


def load_alpha_stats(path: str | os.PathLike, k: int | None = None) -> AlphaStats:
    """Read α (and its k) from ``selection_stats.parquet``.

    With a ``k`` column, the rows of ``k`` are used; with ``k=None`` the file must hold a
    single k (which then becomes a measured input). Rows of one query on several crossbars
    (sub-top-k: a ``crossbar`` column and a ``query`` column) are merged first: the crossbars
    convert in parallel, so the query's conversion ends with its slowest crossbar,
    α = max over crossbars, and its k is the sum of the crossbars' k_i.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise UserError(f"selection statistics file not found: {p}")
    try:
        df = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UserError(f"{p}: not a readable Parquet file ({type(exc).__name__})") from None
    if "alpha" not in df.columns:
        raise UserError(f"{p}: no 'alpha' column (has: {', '.join(map(str, df.columns))})")
    raw = df["alpha"].to_numpy(dtype=float)
    bad = ~(np.isfinite(raw) & (raw > 0) & (raw <= 1))
    if bad.any():
        raise UserError(f"{p}: alpha must lie in (0, 1], found {raw[bad][0]}")
    n_xb = 1
    if "crossbar" in df.columns and "query" in df.columns:
        n_xb = int(df["crossbar"].nunique())
        keys = [c for c in QUERY_KEYS if c in df.columns]
        agg = {"alpha": "max"}
        agg.update({c: "sum" for c in ("k", "n_tied") if c in df.columns})
        df = df.groupby(keys, as_index=False, sort=False).agg(agg)
    k_values: tuple[int, ...] = ()
    used_k: int | None = None
    if "k" in df.columns:
        k_values = tuple(sorted(int(x) for x in df["k"].dropna().unique()))
        if k is None:
            if len(k_values) != 1:
                raise UserError(f"{p}: holds several k {list(k_values)}; choose one with --k")
            k = k_values[0]
        df = df[df["k"] == k]
        if df.empty:
            raise UserError(f"{p}: no rows with k={k} (file has k {list(k_values)})")
        used_k = int(k)
    alpha = df["alpha"].to_numpy(dtype=float)
    if alpha.size == 0:
        raise UserError(f"{p}: 'alpha' column is empty")
    n_tied = float(df["n_tied"].mean()) if "n_tied" in df.columns else None
    n_runs = int(df["run_id"].nunique()) if "run_id" in df.columns else 1
    return AlphaStats(str(p), alpha, used_k, k_values, int(alpha.size), n_runs, n_tied, n_xb)


# --------------------------------------------------------------------------- delay models

# Names a pvt_table model may use for each roll-up input, first match wins. t_arb may also be
# the sum of an arbiter and an encoder delay (the paper's 1.51 + 0.57 ns); a per-row write
# time becomes T_wr = d_k · t_write_row (320 ns = 64 × 5 ns in the paper).
DELAY_NAMES: dict[str, tuple[str, ...]] = {
    "macro.t_arb": ("t_arb",),
    "macro.t_sa": ("t_sa", "t_sa_decision", "sa_delay"),
    "macro.t_wr": ("t_wr",),
    "energy.e_sa": ("e_sa", "e_sa_decision"),
    "energy.e_arb": ("e_arb",),
}
ARB_PARTS = ("t_arbiter", "t_encoder")
WRITE_ROW_NAMES = ("t_write_row", "t_write")
# Models fitted from one block's sweep keep that block's column names; the block is named
# in the model's provenance. The sense amplifier's sweep measures ``delay`` (decision delay
# at its reference input difference) and ``energy`` (per decision).
BLOCK_NAMES: dict[str, dict[str, str]] = {
    "sense_amp": {"delay": "macro.t_sa", "energy": "energy.e_sa"},
    # energy of one arbitration event (request -> grant -> address) of the top-k logic
    "topk_digital": {"energy_arb": "energy.e_arb"},
}


def load_delay_model(path: str | os.PathLike) -> Any:
    """Load a ``pvt_table`` lookup model with :mod:`charact.lookup` (UserError if not one)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"delay model file not found: {p}")
    from charact.lookup.pvt_table import PVTTableModel

    return PVTTableModel.load(p)


def _model_block(model: Any) -> str | None:
    block = (getattr(model, "provenance", None) or {}).get("block")
    if isinstance(block, dict):
        block = block.get("name")
    return str(block) if block else None


def read_delays(
    model: Any, corner: str, vdd: float, temp: float, d_k: int, extrapolate: bool = False
) -> dict[str, float]:
    """Map a PVT-table model's quantities at one point onto roll-up inputs (SI units).

    ``model`` needs ``.names`` and ``.value(name, corner, vdd, temp, stat=, extrapolate=)``
    (:class:`charact.lookup.pvt_table.PVTTableModel`). Generic names (:data:`DELAY_NAMES`)
    are used from any model, a block's own names (:data:`BLOCK_NAMES`) when its provenance
    names the block. Quantities the model does not hold are left out of the result.
    """
    names = set(model.names)

    def val(name: str) -> float:
        try:
            v = float(model.value(name, corner, vdd, temp, stat="mean", extrapolate=extrapolate))
        except UserError:
            raise
        except (KeyError, ValueError) as exc:
            raise UserError(f"delay model: {name} at {corner}, {vdd} V, {temp} °C: {exc}") from None
        if not math.isfinite(v) or v < 0:
            raise UserError(f"delay model: {name} at {corner}, {vdd} V, {temp} °C is {v}")
        return v

    out: dict[str, float] = {}
    for name, key in BLOCK_NAMES.get(_model_block(model) or "", {}).items():
        if name in names:
            out[key] = val(name)
    for key, candidates in DELAY_NAMES.items():
        hit = next((n for n in candidates if n in names), None)
        if hit is not None and key not in out:
            out[key] = val(hit)
    if "macro.t_arb" not in out and all(n in names for n in ARB_PARTS):
        out["macro.t_arb"] = sum(val(n) for n in ARB_PARTS)
    if "macro.t_wr" not in out:
        hit = next((n for n in WRITE_ROW_NAMES if n in names), None)
        if hit is not None:
            out["macro.t_wr"] = d_k * val(hit)
    return out


# --------------------------------------------------------------------------- gathering


@dataclass(frozen=True)
class RollupInputs:
    """Everything the roll-up uses, with each value's origin."""

    macro: MacroInputs
    energy: EnergyInputs
    arch: ArchParams
    alpha_stats: AlphaStats | None
    provenance: dict[str, str]
    notes: tuple[str, ...]

    @property
    def alpha_samples(self) -> np.ndarray | None:
        return None if self.alpha_stats is None else self.alpha_stats.alpha


@dataclass(frozen=True)
class MeasuredSources:
    """Where measured inputs come from (all optional)."""

    alpha_from: str | None = None
    delays_from: tuple[str, ...] = ()
    corner: str | None = None
    vdd: float | None = None
    temp: float | None = None
    extrapolate: bool = False


def gather_inputs(
    explicit: Mapping[str, tuple[Any, str]] | None = None,
    sources: MeasuredSources | None = None,
    delay_model: Any = None,
) -> RollupInputs:
    """Combine explicit values, measured data and defaults (in that precedence).

    ``explicit`` maps ``"section.name"`` to ``(value, origin)``, e.g.
    ``{"macro.t_arb": (2.08e-9, "--t-arb")}``. ``delay_model`` is an already loaded model
    (an object with ``.names`` and ``.value``) used after the files in ``sources``.
    """
    explicit = dict(explicit or {})
    src = sources or MeasuredSources()
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    prov: dict[str, str] = {}
    for s in SECTIONS:
        for f in fields(SECTIONS[s]):
            prov[f"{s}.{f.name}"] = f"default: {f.metadata.get('source', 'default')}"
    notes: list[str] = []

    checked: dict[str, Any] = {}
    for key, (value, origin) in explicit.items():
        section, _, name = key.partition(".")
        checked[key] = (coerce(section, name, value), origin)

    def set_measured(key: str, value: Any, origin: str) -> None:
        if key in checked:
            notes.append(f"{key}: explicit {checked[key][0]:.6g} ({checked[key][1]}) "
                         f"overrides measured {value:.6g} ({origin})")
            return
        section, _, name = key.partition(".")
        values[section][name] = value
        prov[key] = f"measured: {origin}"

    d_k = checked.get("macro.d_k", (MacroInputs.d_k, ""))[0]
    stats = None
    if src.alpha_from:
        k_req = checked["macro.k"][0] if "macro.k" in checked else None
        try:
            stats = load_alpha_stats(src.alpha_from, k_req)
        except UserError as exc:
            # Several k and none asked for: fall back to the default k if the file has it.
            if k_req is None and "several k" in str(exc):
                stats = load_alpha_stats(src.alpha_from, MacroInputs.k)
            else:
                raise
        origin = f"{src.alpha_from} ({stats.n_rows} queries, mean of per-query α)"
        set_measured("macro.alpha", float(stats.alpha.mean()), origin)
        if stats.k is not None and len(stats.k_values) == 1:
            set_measured("macro.k", stats.k, str(src.alpha_from))

    models: list[tuple[str, Any]] = [(str(f), None) for f in src.delays_from]
    if delay_model is not None:
        models.append(("delay model", delay_model))
    if models and (src.corner is None or src.vdd is None or src.temp is None):
        raise UserError("delays from a lookup model need --corner, --vdd and --temp")
    measured_by: dict[str, str] = {}
    for label, model in models:
        model = model if model is not None else load_delay_model(label)
        where = f"{label}@{src.corner}, {src.vdd:g} V, {src.temp:g} °C"
        found = read_delays(model, src.corner, src.vdd, src.temp, d_k, src.extrapolate)
        if not found:
            raise UserError(f"{label}: the model holds none of the roll-up's delays or "
                            f"energies (has: {', '.join(sorted(model.names))})")
        for key, v in found.items():
            if key in measured_by:
                notes.append(f"{key}: {label} replaces the value from {measured_by[key]}")
            measured_by[key] = label
            set_measured(key, v, where)

    for key, (value, origin) in checked.items():
        section, _, name = key.partition(".")
        values[section][name] = value
        prov[key] = f"explicit: {origin}"

    # A clock or resolution given without T_ima sets the full ramp: 2^n_bits cycles.
    if "t_ima" not in values["macro"] and {"t_clk_ima", "n_bits"} & set(values["macro"]):
        m = replace(MacroInputs(), **values["macro"])
        values["macro"]["t_ima"] = (2**m.n_bits) * m.t_clk_ima
        prov["macro.t_ima"] = "derived: 2^n_bits × t_clk_ima"

    macro = MacroInputs(**values["macro"])
    energy = EnergyInputs(**values["energy"])
    arch = ArchParams(**values["arch"])
    macro.validate()
    energy.validate()
    arch.validate()
    if macro.d_k != arch.d_k:
        raise UserError(f"macro.d_k = {macro.d_k} but arch d_model/heads = {arch.d_k}")
    if macro.t_sa is not None and macro.t_sa > macro.t_clk_ima:
        notes.append(f"SA decision delay {macro.t_sa * 1e9:.3g} ns exceeds the ramp clock "
                     f"{macro.t_clk_ima * 1e9:.3g} ns: the 5-bit ramp cannot run at this clock")
    if macro.t_arb > macro.t_clk_ima:
        notes.append(f"T_arb {macro.t_arb * 1e9:.3g} ns exceeds the ramp clock "
                     f"{macro.t_clk_ima * 1e9:.3g} ns")
    return RollupInputs(macro, energy, arch, stats, prov, tuple(notes))


# --------------------------------------------------------------------------- config files


@dataclass(frozen=True)
class RollupConfig:
    """A parsed roll-up TOML: explicit values, measured sources, sweep lengths."""

    explicit: dict[str, tuple[Any, str]]
    sources: MeasuredSources
    seq_lens: tuple[int, ...] | None


def read_toml(p: Path) -> dict[str, Any]:
    """A TOML config file's document, or a one-line UserError (missing, not TOML)."""
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not valid TOML ({exc})") from None


def load_config(path: str | os.PathLike) -> RollupConfig:
    """Read a roll-up TOML (sections macro, energy, arch, measured, sweep; SI units).

    Relative paths under ``[measured]`` are taken from the TOML file's folder.
    """
    p = Path(path)
    doc = read_toml(p)
    unknown = set(doc) - set(SECTIONS) - {"measured", "sweep"}
    if unknown:
        raise UserError(f"{p}: unknown section(s) {', '.join(sorted(unknown))}")
    explicit: dict[str, tuple[Any, str]] = {}
    for section in SECTIONS:
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise UserError(f"{p}: [{section}] must be a table")
        for name, value in table.items():
            explicit[f"{section}.{name}"] = (coerce(section, name, value), p.name)
    meas = doc.get("measured", {})
    allowed = {"alpha_from", "delays_from", "corner", "vdd", "temp", "extrapolate"}
    if set(meas) - allowed:
        extra = ", ".join(sorted(set(meas) - allowed))
        raise UserError(f"{p}: unknown key(s) in [measured]: {extra}")

    def rel(x: str | None) -> str | None:
        return None if x is None else str((p.parent / x) if not Path(x).is_absolute() else x)

    delays = meas.get("delays_from", [])
    delays = [delays] if isinstance(delays, str) else list(delays)
    sources = MeasuredSources(
        alpha_from=rel(meas.get("alpha_from")),
        delays_from=tuple(str(rel(x)) for x in delays),
        corner=meas.get("corner"),
        vdd=meas.get("vdd"),
        temp=meas.get("temp"),
        extrapolate=bool(meas.get("extrapolate", False)),
    )
    sweep = doc.get("sweep", {})
    if set(sweep) - {"seq_lens"}:
        raise UserError(f"{p}: [sweep] takes only seq_lens")
    seq_lens = None
    if "seq_lens" in sweep:
        seq_lens = parse_seq_lens(sweep["seq_lens"])
    return RollupConfig(explicit, sources, seq_lens)


def parse_seq_lens(value: Any) -> tuple[int, ...]:
    """Sequence lengths from a list or a comma-separated string; each an integer ≥ 2."""
    return parse_int_list(value, "sequence length", minimum=2)


def parse_int_list(value: Any, what: str, minimum: int = 1,
                   maximum: int | None = None) -> tuple[int, ...]:
    """Integers from a list or a comma-separated string, each in [minimum, maximum], in the
    order given; one-line UserErrors name ``what``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for x in items:
        try:
            n = int(str(x).strip())
        except ValueError:
            raise UserError(f"{what} {x!r} is not an integer") from None
        if maximum is not None and not minimum <= n <= maximum:
            raise UserError(f"{what} must be in {minimum}..{maximum}, got {n}")
        if n < minimum:
            raise UserError(f"{what} must be at least {minimum}, got {n}")
        out.append(n)
    if not out:
        raise UserError(f"no {what}s given")
    return tuple(out)
