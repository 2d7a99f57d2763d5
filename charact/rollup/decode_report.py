"""Decode roll-up outputs: CSV tables (SI units), a Markdown report, a figure, provenance.

Files written by :func:`write_decode_outputs` (all rendered before any is written, each
one atomically), every one saying how it was made:

* ``decode_per_token.csv`` - per context length and architecture: latency and energy per
  generated token, total and by bucket (write, mac, readout_adc, softmax, digital)
* ``decode_retention.csv`` - the gain cell's retention check at 27 and 85 °C
* ``decode_inputs.csv`` - every input with its value and source
* ``report.md`` - the tables as text, the model, the notes
* ``decode_vs_length.png`` - latency and energy per token against L, and the breakdown
* ``provenance.json`` - command, versions, code revision, model files and checksums
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from charact.errors import UserError
from charact.provenance import write_bytes
from charact.rollup.decode import ARCHS, BUCKETS, DecodeInputs, DecodeResult
from charact.rollup.inputs import SECTIONS
from charact.rollup.report import csv_bytes, display_value, fmt_table

NS, US, NJ, PJ = 1e9, 1e6, 1e9, 1e12
_UNITS = {"t": "s", "e": "J", "f": "Hz"}

MODEL_TEXT = (
    "Per generated token and layer (layers in series, heads in parallel): the new token's "
    "K and V are written, then its query attends over the cache. Gain cell: the window "
    "keeps W tokens, all attended columns work in parallel (latency independent of L, "
    "energy grows up to W); T = T_write + 2·T_max (query pulses, then score pulses into V) "
    "+ 2·T_reset + T_max (readouts); no ADC, no softmax. Topkima: the cache grows with L on "
    "256-column crossbars converting in parallel, each selecting k_i (sub-top-k, at least "
    "one each, k_sel = max(k, arrays)); one query's terms of the paper's eq. (4) and the "
    "macro energies, the new key's column write T_wr (d_k row writes), softmax over k_sel, "
    "sparse A·V as in the attention-module model. Projections and feed-forward are left "
    "out (the same for both); word-line drivers are left out as in the macro roll-up."
)


def per_token_table(res: DecodeResult) -> pd.DataFrame:
    """One row per context length and architecture (s, J)."""
    rows = []
    for gc, tk in zip(res.gaincell, res.topkima, strict=True):
        for c in (gc, tk):
            row: dict[str, Any] = {"length": c.length, "arch": c.arch, "attended": c.attended,
                                   "arrays": c.arrays, "selected": c.selected}
            row.update({f"t_{b}_s": c.latency[b] for b in BUCKETS})
            row["t_total_s"] = c.t_total
            row.update({f"e_{b}_J": c.energy[b] for b in BUCKETS})
            row["e_total_J"] = c.e_total
            row["latency_over_gaincell"] = c.t_total / gc.t_total
            row["energy_over_gaincell"] = c.e_total / gc.e_total
            rows.append(row)
    return pd.DataFrame(rows)


def retention_table(res: DecodeResult) -> pd.DataFrame:
    return pd.DataFrame([
        {"temp_C": r.temp, "t_ret_s": r.t_ret, "t_step_s": r.t_step, "window": r.window,
         "w_max_without_refresh": r.w_max, "t_step_max_for_window_s": r.t_step_max,
         "refresh_writes_per_step": r.refresh_writes, "e_refresh_per_step_J": r.e_refresh,
         "window_within_retention": r.ok}
        for r in res.retention
    ])


def inputs_table(res: DecodeResult) -> pd.DataFrame:
    """Every input: section, name, value (SI), unit, source."""
    s = res.setup
    rows = []
    for f in fields(DecodeInputs):
        v = getattr(s.decode, f.name)
        rows.append({"section": "decode", "name": f.name, "value": v,
                     "unit": _unit(f.name.removeprefix("gc_"), v),
                     "source": s.provenance[f"decode.{f.name}"]})
    top = s.topkima
    for section, obj in (("macro", top.macro), ("energy", top.energy), ("arch", top.arch)):
        for f in fields(SECTIONS[section]):
            v = getattr(obj, f.name)
            rows.append({"section": f"topkima.{section}", "name": f.name, "value": v,
                         "unit": _unit(f.name, v),
                         "source": s.provenance[f"topkima.{section}.{f.name}"]})
    return pd.DataFrame(rows)


def _unit(name: str, v: object) -> str:
    return _UNITS.get(name.split("_")[0], "") if isinstance(v, float) else ""


def _display(name: str, v: object) -> str:
    return display_value(name.removeprefix("gc_"), v)


def summary_lines(res: DecodeResult) -> list[str]:
    """The printed summary: per-token table, breakdown at the window, retention, inputs."""
    d = res.setup.decode
    m = res.setup.topkima.macro
    out = [f"Decode, per generated token: {d.n_layers} layers x {d.n_heads} heads x d "
           f"{d.d_head}; gain-cell window W = {d.window}; topkima k = {m.k}, alpha = "
           f"{m.alpha:.4g}", ""]
    rows = []
    for gc, tk in zip(res.gaincell, res.topkima, strict=True):
        rows.append([str(gc.length), f"{gc.t_total * US:.4g}", f"{gc.e_total * NJ:.4g}",
                     f"{tk.t_total * US:.4g}", f"{tk.e_total * NJ:.4g}", str(tk.arrays),
                     str(tk.selected), f"{tk.t_total / gc.t_total:.3g}x",
                     f"{tk.e_total / gc.e_total:.3g}x"])
    out += fmt_table(["L", "gain cell us", "gain cell nJ", "topkima us", "topkima nJ",
                       "crossbars", "k_sel", "t topk/gc", "E topk/gc"], rows)
    at = max((i for i, n in enumerate(res.lengths) if n <= d.window), default=0)
    n = res.lengths[at]
    out += ["", f"Breakdown at L = {n}: latency ns / energy nJ per token"]
    rows = []
    for c in (res.gaincell[at], res.topkima[at]):
        rows.append([c.arch, *(f"{c.latency[b] * NS:.4g} / {c.energy[b] * NJ:.4g}"
                               for b in BUCKETS),
                     f"{c.t_total * NS:.4g} / {c.e_total * NJ:.4g}"])
    out += fmt_table(["arch", *BUCKETS, "total"], rows)
    out += ["", "Gain-cell retention (the oldest of W tokens was written W steps ago)"]
    rows = []
    for r in res.retention:
        rows.append([f"{r.temp:g} C", f"{r.t_ret * US:.4g}", f"{r.t_step * NS:.4g}",
                     str(r.w_max), f"{r.t_step_max * NS:.4g}",
                     "yes" if r.ok else "no", f"{r.refresh_writes:.4g}",
                     f"{r.e_refresh * NJ:.4g}"])
    out += fmt_table(["temp", "t_ret us", "T_step ns", "W max", "T_step for W ns",
                       "W fits", "refresh/step", "refresh nJ/step"], rows)
    out.append("(T_step " + ("given" if d.t_step is not None else "= the gain-cell attention "
               "latency per token, a lower bound") + "; refresh rewrites a token from a copy)")
    out += ["", "Inputs and where they came from (times in ns, energies in pJ)"]
    rows = []
    s = res.setup
    for f in fields(DecodeInputs):
        rows.append([f"decode.{f.name}", _display(f.name, getattr(s.decode, f.name)),
                     s.provenance[f"decode.{f.name}"]])
    top = s.topkima
    for section, obj in (("macro", top.macro), ("energy", top.energy), ("arch", top.arch)):
        for f in fields(SECTIONS[section]):
            rows.append([f"topkima.{section}.{f.name}", _display(f.name, getattr(obj, f.name)),
                         s.provenance[f"topkima.{section}.{f.name}"]])
    out += fmt_table(["input", "value", "source"], rows, left=(0, 2))
    if s.notes:
        out += ["", "Notes"] + [f"- {x}" for x in s.notes]
    return out


def markdown_report(res: DecodeResult, provenance: Mapping[str, Any]) -> str:
    lines = ["# Decode roll-up: gain-cell attention and topkima per generated token", ""]
    lines += [f"- {k}: {v}" for k, v in provenance.items() if not isinstance(v, (dict, list))]
    lines += ["", "## Model", "", MODEL_TEXT, "", "Equations: `charact/rollup/decode.py` "
              "(module docstring).", "", "## Tables", "", "```"]
    lines += summary_lines(res)
    lines += ["```", "", "Figure: `decode_vs_length.png`.", ""]
    return "\n".join(lines)


def render_figure(res: DecodeResult, caption: str) -> bytes:
    """Latency and energy per token against L, and the breakdown at the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = res.setup.decode
    lens = list(res.lengths)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    styles = {"gaincell": ("o-", "gain cell (window W)"), "topkima": ("s-", "topkima")}
    for arch, costs in (("gaincell", res.gaincell), ("topkima", res.topkima)):
        fmt, label = styles[arch]
        axes[0].plot(lens, [c.t_total * US for c in costs], fmt, label=label)
        axes[1].plot(lens, [c.e_total * NJ for c in costs], fmt, label=label)
    for ax, what in ((axes[0], "latency per token (µs)"), (axes[1], "energy per token (nJ)")):
        ax.axvline(d.window, color="grey", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lens, [str(n) for n in lens], fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("context length L (tokens)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, title=f"W = {d.window} (dotted)", title_fontsize=8)
    axes[0].set_title(f"Attention latency per token, {d.n_layers} layers")
    axes[1].set_title(f"Attention energy per token, {d.n_layers}x{d.n_heads} heads")
    at = max((i for i, n in enumerate(lens) if n <= d.window), default=0)
    bottom = [0.0, 0.0]
    for b in BUCKETS:
        vals = [res.gaincell[at].energy[b] * NJ, res.topkima[at].energy[b] * NJ]
        axes[2].bar(list(ARCHS), vals, bottom=bottom, label=b)
        bottom = [x + y for x, y in zip(bottom, vals, strict=True)]
    axes[2].set_ylabel("energy per token (nJ)")
    axes[2].set_title(f"Energy by bucket at L = {lens[at]}")
    axes[2].legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120,
                metadata={"Description": caption, "Software": "charact decode"})
    plt.close(fig)
    return buf.getvalue()


def write_decode_outputs(res: DecodeResult, outdir: str | os.PathLike,
                         provenance: Mapping[str, Any], figures: bool = True) -> list[Path]:
    """Write the tables, the report, the figure and ``provenance.json`` into ``outdir``."""
    flat = {k: v for k, v in provenance.items() if not isinstance(v, (dict, list))}
    header = [f"{k}: {v}" for k, v in flat.items()] + ["units: SI (s, J)"]
    files: dict[str, bytes] = {
        "decode_per_token.csv": csv_bytes(per_token_table(res), header),
        "decode_retention.csv": csv_bytes(retention_table(res), header),
        "decode_inputs.csv": csv_bytes(inputs_table(res), header),
        "report.md": markdown_report(res, provenance).encode(),
        "provenance.json": (json.dumps(dict(provenance), indent=2, default=str) + "\n").encode(),
    }
    if figures:
        files["decode_vs_length.png"] = render_figure(res, "; ".join(header))
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror}") from None
    return [write_bytes(out / name, payload) for name, payload in files.items()]
