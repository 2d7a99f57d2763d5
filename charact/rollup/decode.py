"""Decode roll-up: latency and energy per generated token against context length L, for
gain-cell attention (sliding window) and topkima (growing KV cache) side by side.

One generation step, per layer (layers run one after another, heads in parallel): the new
token's K and V are written, then its query attends over the KV cache. Only attention is
counted; the projections and the feed-forward block are the same for both and left out.
Buckets: ``write``, ``mac``, ``readout_adc``, ``softmax``, ``digital``.

Gain cell (N. Leroux, P.-P. Manea et al., arXiv 2409.19315; circuits in
:mod:`charact.gaincell`, values from the fitted ``gaincell_*`` models). The cache keeps the
last ``W`` tokens, so ``n = min(L, W)`` tokens are attended; all columns work in parallel,
so latency does not depend on L::

    T_layer = T_write + T_max + T_max + 2·T_reset + T_max
      write   = T_write               (the token's K and V rows, K and V arrays in parallel)
      mac     = T_max + T_max         (query pulses into K; score pulses into V: the first
                                       readout's output pulse is the V array's input)
      readout = 2·T_reset + T_max     (two readouts reset; the second one's output pulse)
    E_head  = 2·d·c·e_write                         write (c cells per signed element)
            + 2·n·d·e_mult                          mac (Q·Kᵀ and A·V, pair multiplies)
            + (n + d)·e_readout                     readout (one per key, one per output)
            + d·e_count + 4·d·b·e_buffer_bit        digital (output counters, buffers)

No ADC, no softmax (the readout's hard sigmoid replaces it).

Topkima (paper eqs. 3-4, :mod:`charact.rollup.latency` and :mod:`charact.rollup.energy`,
reused with one query). Keys are columns of 256-column crossbars: ``ceil(L/256)`` arrays
convert in parallel, each selecting ``k_i`` (sub-top-k, the k split as evenly as possible,
at least one per array, so ``k_sel = max(k, arrays)`` are selected). The macro functions
give ``d`` queries against ``d`` keys; every term but the write is ``d ×`` one query's, so
one query's terms are the macro's divided by ``d``. A new key is a new *column* of Kᵀ,
which spans all ``d_k`` rows: its write takes the same ``d_k`` row writes as all of Kᵀ,
``T_wr``. A·V as in :mod:`charact.rollup.module` (V row written, one sparse row of A
applied)::

    T_layer = T_wr + T_pwm + T_pwm,in + max_i T_ima,arb(k_i) + mux·T_clk + k_sel·T_NL
              + (ceil(log2 ceil(L/R)) + 1)·T_clk

The retention check: the oldest of the ``W`` tokens was written ``W`` steps ago, so a
window needs ``W·T_step ≤ t_ret``; otherwise tokens are refreshed (rewritten from a copy)
at ``W·T_step/t_ret − 1`` extra writes per step. ``T_step`` defaults to the gain-cell
attention latency per token, a lower bound (the rest of the model adds to it).
All values are SI (s, J).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from charact.errors import UserError
from charact.rollup.energy import macro_energies
from charact.rollup.inputs import (
    SECTIONS,
    MeasuredSources,
    RollupInputs,
    coerce_number,
    gather_inputs,
    parse_int_list,
    read_toml,
)
from charact.rollup.latency import macro_latencies
from charact.rollup.module import ArchParams, read_latency


def _src(text: str) -> dict[str, str]:
    """Field metadata naming where a default comes from (printed in the report)."""
    return {"source": text}


# The gain-cell defaults are the shipped FreePDK45 models at NOM, 1.0 V, 27 °C, rounded
# (models/gaincell_*_freepdk45.json); the same models given as files give exact values.
_SHIPPED = "shipped gaincell_{}_freepdk45 model, NOM 1.0 V 27 °C: {}"


@dataclass(frozen=True)
class DecodeInputs:
    """Inputs of the decode roll-up (SI units). Each default names its source."""

    n_layers: int = field(default=12, metadata=_src(
        "assumption: 12 layers, GPT-2 small (the model size arXiv 2409.19315 compares to)"))
    n_heads: int = field(default=12, metadata=_src("paper IV-B: 12 heads (BERT-base)"))
    d_head: int = field(default=64, metadata=_src("paper IV-B: d_k = 64"))
    window: int = field(default=1024, metadata=_src(
        "arXiv 2409.19315: sliding-window attention over 1,024 tokens"))
    gc_cells_per_element: int = field(default=2, metadata=_src(
        "charact/gaincell: a signed element is a cell pair (0.45 V ± w)"))
    gc_t_write: float = field(default=1.34e-10, metadata=_src(_SHIPPED.format(
        "write", "t_write, slowest stored level (0.9 V)")))
    gc_e_write_cell: float = field(default=5.76e-15, metadata=_src(_SHIPPED.format(
        "write", "e_write per cell, mean over stored levels")))
    gc_t_max: float = field(default=15e-9, metadata=_src(
        "arXiv 2409.19315: T_max = 15 ns, the longest pulse and readout window"))
    gc_t_reset: float = field(default=3e-9, metadata=_src(
        "gc_readout bench: t_reset = 3 ns (charact/gaincell/readout.py)"))
    gc_pulse_frac: float = field(default=0.5, metadata=_src(
        "assumption: the mean input pulse is half of T_max"))
    gc_e_mult: float = field(default=2.06e-14, metadata=_src(_SHIPPED.format(
        "multiply", "0.9 V × (q_pos + q_neg) at 7.5 ns, mean over stored levels")))
    gc_e_readout: float = field(default=1.5e-13, metadata=_src(
        "derived: VDD × i_ref × T_max = 1.0 V × 10 µA × 15 ns (reference branch on "
        "for the whole window; gc_readout bench i_ref)"))
    gc_e_count: float = field(default=1e-13, metadata=_src(
        "assumption: 0.1 pJ to count one output pulse into a digital word"))
    gc_t_ret_27: float = field(default=1.83e-6, metadata=_src(_SHIPPED.format(
        "retention", "50 mV droop of a stored 0.9 V (the shortest over levels) at 27 °C")))
    gc_t_ret_85: float = field(default=0.695e-6, metadata=_src(
        "shipped gaincell_retention_freepdk45 model, NOM 1.0 V 85 °C: 50 mV droop of a "
        "stored 0.9 V"))
    t_step: float | None = field(default=None, metadata=_src(
        "unset: the gain-cell attention latency per token (a lower bound)"))

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first out-of-range input."""
        for name in ("n_layers", "n_heads", "d_head", "window", "gc_cells_per_element"):
            if getattr(self, name) < 1:
                raise UserError(f"decode.{name} must be a positive integer, got "
                                f"{getattr(self, name)}")
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or isinstance(v, int):
                continue
            if not math.isfinite(v) or v < 0:
                raise UserError(f"decode.{f.name} must be a non-negative finite number, got {v}")
        for name in ("gc_t_max", "gc_t_ret_27", "gc_t_ret_85"):
            if getattr(self, name) <= 0:
                raise UserError(f"decode.{name} must be positive, got {getattr(self, name)}")
        if self.t_step is not None and self.t_step <= 0:
            raise UserError(f"decode.t_step must be positive, got {self.t_step}")
        if not 0 < self.gc_pulse_frac <= 1:
            raise UserError(f"decode.gc_pulse_frac must lie in (0, 1], got {self.gc_pulse_frac}")


DECODE_FIELDS: dict[str, str] = {f.name: str(f.type) for f in fields(DecodeInputs)}
RETENTION_TEMPS: tuple[tuple[float, str], ...] = ((27.0, "gc_t_ret_27"), (85.0, "gc_t_ret_85"))
BUCKETS: tuple[str, ...] = ("write", "mac", "readout_adc", "softmax", "digital")
ARCHS: tuple[str, str] = ("gaincell", "topkima")
DEFAULT_LENGTHS: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
MAX_LENGTH = 10_000_000  # beyond any context a model is run at; keeps a typo from hanging


def coerce_decode(name: str, value: Any) -> Any:
    """A TOML or command-line value as the type of ``DecodeInputs.<name>``, or UserError."""
    key = f"decode.{name}"
    if name not in DECODE_FIELDS:
        raise UserError(f"unknown decode input {key}; known: {', '.join(DECODE_FIELDS)}")
    return coerce_number(key, value, integer=DECODE_FIELDS[name] == "int")


def parse_lengths(value: Any) -> tuple[int, ...]:
    """Context lengths from a list or a comma-separated string; each an integer ≥ 1."""
    return tuple(sorted(set(parse_int_list(value, "context length", 1, MAX_LENGTH))))


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class GainCellModels:
    """Fitted gain-cell lookup models (paths; any may be left out) and the point to read."""

    write: str | None = None
    readout: str | None = None
    multiply: str | None = None
    retention: str | None = None
    corner: str = "NOM"
    vdd: float = 1.0
    temp: float = 27.0
    extrapolate: bool = False

    def given(self) -> dict[str, str]:
        return {k: v for k, v in (("write", self.write), ("readout", self.readout),
                                  ("multiply", self.multiply), ("retention", self.retention))
                if v}


_BLOCKS = {"write": "gc_write", "readout": "gc_readout", "multiply": "gc_multiply",
           "retention": "gc_retention"}


def _model_block(prov: Mapping[str, Any]) -> str | None:
    block = prov.get("block")
    if isinstance(block, dict):
        block = block.get("name")
    return str(block) if block else None


def _load(kind: str, path: str) -> Any:
    """Load one gain-cell model with :mod:`charact.lookup`; it must be of its block."""
    from charact.lookup.fileformat import resolve_model_path
    from charact.lookup.grid_table import GridTableModel
    from charact.lookup.pvt_table import PVTTableModel

    p = resolve_model_path(path)
    if not p.is_file():
        raise UserError(f"gain-cell {kind} model not found: {p}")
    model = (PVTTableModel if kind == "write" else GridTableModel).load(p)
    block = _model_block(model.provenance)
    if block is not None and block != _BLOCKS[kind]:
        raise UserError(f"{p}: a {block} model, expected a {_BLOCKS[kind]} model for --gc-{kind}")
    return model


def _level_names(model: Any, quantity: str) -> list[str]:
    """Names of ``quantity`` in a PVT table: plain, or one per level (``t_write@v_store=x``)."""
    return [n for n in model.names if n == quantity or n.startswith(quantity + "@")]


def read_gaincell_models(models: GainCellModels,
                         t_max: float | None = None,
                         pulse_frac: float = DecodeInputs.gc_pulse_frac
                         ) -> tuple[dict[str, tuple[float, str]], list[str]]:
    """Decode inputs measured by fitted gain-cell models, as ``{field: (value, origin)}``.

    * write (``pvt_table``): ``gc_t_write`` the slowest level's ``t_write``,
      ``gc_e_write_cell`` the mean ``e_write`` over the stored levels;
    * readout (``grid_table``): ``gc_t_max`` = ``t_sat`` (the widest pulse),
      ``gc_e_readout`` = VDD × i_ref × t_sat with i_ref = 1/``gain``;
    * multiply (``grid_table``): ``gc_e_mult`` = V_rbl × (q_pos + q_neg) at the mean pulse
      (``pulse_frac`` × T_max), averaged over the stored levels, V_rbl = rbl_frac × VDD;
    * retention (``grid_table``): ``gc_t_ret_27``/``gc_t_ret_85`` the shortest ``t_ret``
      over stored levels at 27 and 85 °C (a temperature the model lacks is left out).

    ``t_max`` (explicit) is used for the multiply pulse when given; else the readout's
    measured one, else the default. Returns the values and notes.
    """
    import numpy as np

    out: dict[str, tuple[float, str]] = {}
    notes: list[str] = []
    c, v, t, ex = models.corner, float(models.vdd), float(models.temp), models.extrapolate
    where = f"@{c}, {v:g} V, {t:g} °C"

    def at(model: Any, name: str, temp: float = t, **coords: Any) -> np.ndarray:
        vals = np.asarray(model.values(name, c, v, temp, extrapolate=ex, **coords), float)
        if not np.all(np.isfinite(vals)):
            raise UserError(f"{name} of the gain-cell model {where} is not finite")
        return vals

    if models.write:
        m = _load("write", models.write)
        tw, ew = _level_names(m, "t_write"), _level_names(m, "e_write")
        if not tw or not ew:
            raise UserError(f"{models.write}: holds no t_write/e_write (has: "
                            f"{', '.join(m.names)})")
        t_wr = max(float(m.value(n, c, v, t, extrapolate=ex)) for n in tw)
        e_wr = float(np.mean([m.value(n, c, v, t, extrapolate=ex) for n in ew]))
        out["gc_t_write"] = (t_wr, f"{models.write}{where} (slowest of {len(tw)} levels)")
        out["gc_e_write_cell"] = (e_wr, f"{models.write}{where} (mean of {len(ew)} levels)")
    if models.readout:
        m = _load("readout", models.readout)
        t_sat = float(at(m, "t_sat"))
        gain = float(at(m, "gain"))
        if t_sat <= 0 or gain <= 0:
            raise UserError(f"{models.readout}: t_sat {t_sat:g} s and gain {gain:g} s/C must "
                            "be positive")
        out["gc_t_max"] = (t_sat, f"{models.readout}{where} (t_sat)")
        out["gc_e_readout"] = (v / gain * t_sat, f"VDD × (1/gain) × t_sat from "
                               f"{models.readout}{where}")
    if models.multiply:
        m = _load("multiply", models.multiply)
        width = (t_max if t_max is not None
                 else out.get("gc_t_max", (DecodeInputs.gc_t_max, ""))[0]) * pulse_frac
        levels = m.axis_points(c, "v_store")
        q = at(m, "q_pos", v_store=levels, pulse=width) + at(m, "q_neg", v_store=levels,
                                                             pulse=width)
        measure = (m.provenance.get("spec") or {}).get("measure") or {}
        rbl_frac = float(measure.get("rbl_frac", 0.9))  # the benches' default read level
        e = rbl_frac * v * float(np.mean(q))
        out["gc_e_mult"] = (e, f"{rbl_frac:g} × VDD × (q_pos + q_neg) at "
                            f"{width * 1e9:.3g} ns, mean of {levels.size} levels, from "
                            f"{models.multiply}{where}")
    if models.retention:
        m = _load("retention", models.retention)
        temps = m.axis_points(c, "temp")
        levels = m.axis_points(c, "v_store")
        for temp, name in RETENTION_TEMPS:
            if not np.any(np.isclose(temps, temp)) and not ex:
                notes.append(f"{models.retention} has no {temp:g} °C point "
                             f"(temps {', '.join(f'{x:g}' for x in temps)}): "
                             f"decode.{name} keeps its default")
                continue
            t_ret = float(np.min(at(m, "t_ret", temp=temp, v_store=levels)))
            out[name] = (t_ret, f"{models.retention}@{c}, {v:g} V, {temp:g} °C "
                         f"(shortest of {levels.size} levels)")
    return out, notes


# --------------------------------------------------------------------------- gathering


@dataclass(frozen=True)
class DecodeSetup:
    """Everything the decode roll-up uses, with each value's origin."""

    decode: DecodeInputs
    topkima: RollupInputs
    provenance: dict[str, str]
    notes: tuple[str, ...]
    models: GainCellModels


def gather_decode_inputs(
    explicit_decode: Mapping[str, tuple[Any, str]] | None = None,
    explicit_rollup: Mapping[str, tuple[Any, str]] | None = None,
    models: GainCellModels | None = None,
    sources: MeasuredSources | None = None,
) -> DecodeSetup:
    """Decode inputs (explicit > measured by gain-cell models > default) and the topkima
    inputs (:func:`charact.rollup.inputs.gather_inputs`; the head size and count are the
    decode's unless given explicitly). ``explicit_*`` map ``name`` (decode) or
    ``section.name`` (rollup) to ``(value, origin)``. Everything is checked here."""
    models = models or GainCellModels()
    checked = {name: (coerce_decode(name, val), origin)
               for name, (val, origin) in (explicit_decode or {}).items()}
    prov = {f"decode.{f.name}": f"default: {f.metadata.get('source', 'default')}"
            for f in fields(DecodeInputs)}
    values: dict[str, Any] = {}
    notes: list[str] = []
    t_max = checked["gc_t_max"][0] if "gc_t_max" in checked else None
    frac = checked.get("gc_pulse_frac", (DecodeInputs.gc_pulse_frac, ""))[0]
    measured, model_notes = read_gaincell_models(models, t_max, frac)
    notes += model_notes
    for name, (val, origin) in measured.items():
        if name in checked:
            notes.append(f"decode.{name}: explicit {checked[name][0]:.6g} ({checked[name][1]}) "
                         f"overrides measured {val:.6g} ({origin})")
            continue
        values[name] = val
        prov[f"decode.{name}"] = f"measured: {origin}"
    for name, (val, origin) in checked.items():
        values[name] = val
        prov[f"decode.{name}"] = f"explicit: {origin}"
    dec = DecodeInputs(**values)
    dec.validate()

    # The topkima side attends with the same heads; its own inputs may still be given.
    rollup = dict(explicit_rollup or {})
    for key, val in (("macro.d_k", dec.d_head), ("arch.heads", dec.n_heads),
                     ("arch.d_model", dec.n_heads * dec.d_head)):
        rollup.setdefault(key, (val, "decode.n_heads/d_head"))
    top = gather_inputs(rollup, sources)
    if top.macro.d_k != dec.d_head or top.arch.heads != dec.n_heads:
        raise UserError(f"topkima heads {top.arch.heads} × d_k {top.macro.d_k} differ from "
                        f"decode.n_heads {dec.n_heads} × decode.d_head {dec.d_head}")
    prov.update({f"topkima.{k}": v for k, v in top.provenance.items()})
    notes += [f"topkima: {n}" for n in top.notes]
    return DecodeSetup(dec, top, prov, tuple(notes), models)


# --------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class StepCost:
    """One architecture's cost of one generated token at context length ``length``:
    latency (s, all layers) and energy (J, all layers and heads) per bucket."""

    arch: str
    length: int
    attended: int  # tokens the query attends over
    arrays: int  # key arrays per head (topkima crossbars; 1 for the gain cell's window)
    selected: int  # scores that reach A·V (k_sel for topkima, all attended for gain cells)
    latency: dict[str, float]
    energy: dict[str, float]

    @property
    def t_total(self) -> float:
        return sum(self.latency.values())

    @property
    def e_total(self) -> float:
        return sum(self.energy.values())


def _per_token(arch: str, length: int, attended: int, arrays: int, selected: int,
               lat_layer: dict[str, float], e_head: dict[str, float],
               dec: DecodeInputs) -> StepCost:
    lat = {b: dec.n_layers * lat_layer.get(b, 0.0) for b in BUCKETS}
    en = {b: dec.n_layers * dec.n_heads * e_head.get(b, 0.0) for b in BUCKETS}
    return StepCost(arch, length, attended, arrays, selected, lat, en)


def gaincell_step(dec: DecodeInputs, arch: ArchParams, length: int) -> StepCost:
    """Gain-cell attention for one token at context ``length`` (module docstring)."""
    n = min(length, dec.window)
    d, b = dec.d_head, arch.bits_act
    lat = {
        "write": dec.gc_t_write,
        "mac": 2 * dec.gc_t_max,
        "readout_adc": 2 * dec.gc_t_reset + dec.gc_t_max,
    }
    energy = {
        "write": 2 * d * dec.gc_cells_per_element * dec.gc_e_write_cell,
        "mac": 2 * n * d * dec.gc_e_mult,
        "readout_adc": (n + d) * dec.gc_e_readout,
        "digital": d * dec.gc_e_count + 4 * d * b * arch.e_buffer_bit,
    }
    return _per_token("gaincell", length, n, 1, n, lat, energy, dec)


def split_k(k: int, keys: list[int]) -> list[int]:
    """Sub-top-k: ``k`` selections spread over arrays holding ``keys`` as evenly as
    possible (earlier arrays first), at least one per array, at most its keys."""
    k_i = [1] * len(keys)
    left = k - len(keys)
    while left > 0:
        grew = False
        for i, n in enumerate(keys):
            if left > 0 and k_i[i] < n:
                k_i[i] += 1
                left -= 1
                grew = True
        if not grew:  # every key is selected already
            break
    return k_i


def topkima_step(inp: RollupInputs, dec: DecodeInputs, length: int) -> StepCost:
    """Topkima attention for one token at context ``length`` (module docstring)."""
    m, e, arch = inp.macro, inp.energy, inp.arch
    cols = arch.xbar_cols
    n_xb = math.ceil(length / cols)
    keys = [cols] * (length // cols) + ([length % cols] if length % cols else [])
    k_i = split_k(m.k, keys)
    k_sel = sum(k_i)
    qk_t = ima_t = 0.0
    e_terms = dict.fromkeys(("write", "mac", "ramp", "sa", "arb", "nl"), 0.0)
    nl_t = 0.0
    # Arrays with the same keys and k_i cost the same: evaluate each kind once.
    for (n_keys, ki), count in Counter(zip(keys, k_i, strict=True)).items():
        mx = replace(m, d=n_keys, k=ki)
        lat = macro_latencies(mx)[2]
        en = macro_energies(mx, e)[2]
        qk_t = max(qk_t, lat.pwm / n_keys)  # arrays convert in parallel
        ima_t = max(ima_t, lat.ima / n_keys)
        nl_t += count * lat.nl / n_keys  # the digital softmax takes every selected score
        for term in ("mac", "ramp", "sa", "arb", "nl"):
            e_terms[term] += count * getattr(en, term) / n_keys
    # one key's write: Kᵀ's write energy over its d keys (the same for every array)
    e_key_write = macro_energies(replace(m, d=cols), e)[2].write / cols
    b, dk = arch.bits_act, m.d_k
    t_clk = 1.0 / arch.f_clk
    av_tiles = math.ceil(length / arch.xbar_rows)
    adders = math.ceil(math.log2(av_tiles)) if av_tiles > 1 else 0
    av_read = read_latency(arch, av_tiles)  # pulse + muxed ADC + adders, split below
    t_av_adc = arch.mux * t_clk
    t_av_digital = (adders + 1) * t_clk
    addr_bits = max(1, math.ceil(math.log2(length))) if length > 1 else 1
    lat = {
        # K column (d_k row writes) and V row in parallel arrays
        "write": max(m.t_wr, arch.t_write_row),
        "mac": qk_t + (av_read - t_av_adc - t_av_digital),
        "readout_adc": ima_t + t_av_adc,
        "softmax": nl_t,
        "digital": t_av_digital,
    }
    energy = {
        "write": e_key_write + dk * b * e.e_write_cell,
        "mac": e_terms["mac"] + k_sel * dk * b * arch.e_sram_cell,
        "readout_adc": e_terms["ramp"] + e_terms["sa"] + e_terms["arb"] + dk * b * arch.e_adc,
        "softmax": e_terms["nl"],
        # q, k, v in and the output; selected scores and probabilities written and read
        "digital": (4 * dk * b + 2 * k_sel * (m.n_bits + addr_bits) + 2 * k_sel * (b + addr_bits))
        * arch.e_buffer_bit,
    }
    return _per_token("topkima", length, length, n_xb, k_sel, lat, energy, dec)


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class RetentionCheck:
    """Whether the window's oldest token is still within retention, at one temperature."""

    temp: float
    t_ret: float  # time for the stored level to droop by the retention criterion
    t_step: float  # time between generated tokens
    window: int
    w_max: int  # the longest window held without refresh: floor(t_ret / t_step)
    t_step_max: float  # the step the configured window needs: t_ret / W
    refresh_writes: float  # extra token writes per step (0 when the window fits)
    e_refresh: float  # their energy per step (all layers and heads)

    @property
    def ok(self) -> bool:
        return self.refresh_writes == 0.0


def retention_checks(dec: DecodeInputs, gc_at_window: StepCost) -> list[RetentionCheck]:
    """The retention constraint at 27 and 85 °C for the configured window."""
    t_step = dec.t_step if dec.t_step is not None else gc_at_window.t_total
    e_write_token = gc_at_window.energy["write"]
    out = []
    for temp, name in RETENTION_TEMPS:
        t_ret = getattr(dec, name)
        extra = max(0.0, dec.window * t_step / t_ret - 1.0)
        out.append(RetentionCheck(temp, t_ret, t_step, dec.window, int(t_ret // t_step),
                                  t_ret / dec.window, extra, extra * e_write_token))
    return out


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class DecodeResult:
    """The decode roll-up at each context length (SI units)."""

    setup: DecodeSetup
    lengths: tuple[int, ...]
    gaincell: list[StepCost]
    topkima: list[StepCost]
    retention: list[RetentionCheck]


def run_decode(setup: DecodeSetup, lengths: tuple[int, ...] = DEFAULT_LENGTHS) -> DecodeResult:
    """Both architectures at every context length, and the gain cell's retention check."""
    lengths = parse_lengths(lengths)
    dec, top = setup.decode, setup.topkima
    gc = [gaincell_step(dec, top.arch, n) for n in lengths]
    tk = [topkima_step(top, dec, n) for n in lengths]
    ret = retention_checks(dec, gaincell_step(dec, top.arch, dec.window))
    return DecodeResult(setup, lengths, gc, tk, ret)


def shipped_gaincell_models(corner: str = "NOM", vdd: float = 1.0, temp: float = 27.0,
                            extrapolate: bool = False) -> GainCellModels:
    """The shipped FreePDK45 gain-cell models (``models/gaincell_*_freepdk45.json``)."""
    from charact.paths import models_dir

    def path(kind: str) -> str | None:
        p = models_dir() / f"gaincell_{kind}_freepdk45.json"
        if not p.is_file():
            return None
        try:  # shorter in reports when run from the checkout
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(p)

    return GainCellModels(path("write"), path("readout"), path("multiply"), path("retention"),
                          corner, vdd, temp, extrapolate)


# --------------------------------------------------------------------------- config files


@dataclass(frozen=True)
class DecodeConfig:
    """A parsed decode TOML: explicit values, model sources, context lengths."""

    explicit_decode: dict[str, tuple[Any, str]]
    explicit_rollup: dict[str, tuple[Any, str]]
    models: dict[str, Any]  # keys of [models]; paths resolved from the TOML's folder
    lengths: tuple[int, ...] | None


MODEL_KEYS = ("gc_write", "gc_readout", "gc_multiply", "gc_retention", "shipped", "corner",
              "vdd", "temp", "extrapolate", "alpha_from", "delays_from")


def load_decode_config(path: str | os.PathLike) -> DecodeConfig:
    """Read a decode TOML: ``[decode]``, the topkima ``[macro]``/``[energy]``/``[arch]``,
    ``[models]`` (gain-cell model files, topkima's ``alpha_from``/``delays_from``, the
    point ``corner``/``vdd``/``temp``) and ``[sweep] lengths``. SI units. Relative model
    paths are taken from the TOML file's folder."""
    from charact.rollup.inputs import coerce

    p = Path(path)
    doc = read_toml(p)
    unknown = set(doc) - {"decode", "models", "sweep", *SECTIONS}
    if unknown:
        raise UserError(f"{p}: unknown section(s) {', '.join(sorted(unknown))}")
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise UserError(f"{p}: [{section}] must be a table")
    dec = {k: (coerce_decode(k, v), p.name) for k, v in doc.get("decode", {}).items()}
    rollup = {f"{s}.{k}": (coerce(s, k, v), p.name)
              for s in SECTIONS for k, v in doc.get(s, {}).items()}
    models = dict(doc.get("models", {}))
    if set(models) - set(MODEL_KEYS):
        raise UserError(f"{p}: unknown key(s) in [models]: "
                        f"{', '.join(sorted(set(models) - set(MODEL_KEYS)))}; known: "
                        f"{', '.join(MODEL_KEYS)}")

    def rel(x: Any) -> str:
        if not isinstance(x, str) or not x:
            raise UserError(f"{p}: a model path in [models] must be a non-empty string")
        return os.path.normpath(p.parent / x) if not Path(x).is_absolute() else x

    for key in ("gc_write", "gc_readout", "gc_multiply", "gc_retention", "alpha_from"):
        if key in models:
            models[key] = rel(models[key])
    if "delays_from" in models:
        d = models["delays_from"]
        models["delays_from"] = [rel(x) for x in ([d] if isinstance(d, str) else d)]
    sweep = doc.get("sweep", {})
    if set(sweep) - {"lengths"}:
        raise UserError(f"{p}: [sweep] takes only lengths")
    lengths = parse_lengths(sweep["lengths"]) if "lengths" in sweep else None
    return DecodeConfig(dec, rollup, models, lengths)


__all__ = [
    "ARCHS", "BUCKETS", "DEFAULT_LENGTHS", "DecodeConfig", "DecodeInputs", "DecodeResult",
    "DecodeSetup", "GainCellModels", "RetentionCheck", "StepCost", "coerce_decode",
    "gaincell_step", "gather_decode_inputs", "load_decode_config", "parse_lengths",
    "read_gaincell_models", "retention_checks", "run_decode", "shipped_gaincell_models",
    "split_k", "topkima_step",
]
