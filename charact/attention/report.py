"""What an accuracy run writes: the tables' summaries over seeds and simulated chips,
``accuracy.md``, the figures and the files of the run folder.

``summarize_accuracy`` and ``markdown_report`` read only the tables and the provenance,
so a finished run folder can be summarized again without training or evaluating.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from charact.attention.settings import ALL
from charact.attention.vit import CALIBRATION_BATCH, CALIBRATION_BATCHES
from charact.provenance import atomic_path

if TYPE_CHECKING:
    from charact.attention.experiment import AccuracySpec

#: the chip quantile reported (5th percentile) and the normal density at its z value,
#: for its standard error sigma * sqrt(p (1 - p) / n) / phi(z_p)
CHIP_QUANTILE = 0.05
_PHI_Z05 = math.exp(-0.5 * 1.6448536269514722**2) / math.sqrt(2 * math.pi)


def chip_statistics(acc: Any) -> dict[str, float]:
    """Mean over chips with its standard error, the 5th percentile with its standard error
    (normal approximation), minimum, sigma (ddof 1) and the count; NaN where one chip
    cannot say."""
    a = np.asarray(acc, dtype=np.float64)
    n = a.size
    std = float(a.std(ddof=1)) if n > 1 else math.nan
    return {
        "n_chips": int(n), "accuracy": float(a.mean()),
        "accuracy_se": std / math.sqrt(n) if n > 1 else math.nan,
        "accuracy_p05": float(np.percentile(a, 100 * CHIP_QUANTILE)),
        "accuracy_p05_se": (std * math.sqrt(CHIP_QUANTILE * (1 - CHIP_QUANTILE) / n) / _PHI_Z05
                            if n > 1 else math.nan),
        "accuracy_min": float(a.min()), "accuracy_std": std,
    }


CHIP_COLUMNS = ["run_id", "seed", "scheme", "k", "crossbar", "error", "pvt", "chip",
                "noise_seed", "accuracy", "eval_seconds"]


def write_atomic(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` and move the file into place at ``path`` in one step."""
    with atomic_path(path) as tmp:
        write(str(tmp))


SETTING = ["scheme", "k", "crossbar", "error"]


def _k_labels(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(k=frame["k"].astype(object).where(frame["k"].notna(), ALL))


def summarize_accuracy(table: pd.DataFrame, chips: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean and spread of accuracy over seeds per setting (percent): ``mean``, ``std``,
    ``se`` (std / sqrt(count)) and ``count`` (seeds). With ``chips`` (one row per chip),
    also the chip statistics of each error setting over all its chips of all seeds:
    ``chips``, ``chip_mean``/``chip_se``, ``chip_p05``/``chip_p05_se``, ``chip_min``,
    ``chip_std`` (NaN for settings without chips)."""
    g = _k_labels(table)
    agg = g.groupby(SETTING, sort=False)["accuracy"].agg(["mean", "std", "count"]).reset_index()
    agg["mean"] *= 100
    agg["std"] = (agg["std"] * 100).fillna(0.0)
    agg["se"] = np.where(agg["count"] > 1, agg["std"] / np.sqrt(agg["count"]), np.nan)
    if chips is not None:
        per = []
        for key, c in _k_labels(chips).groupby(SETTING, sort=False):
            st = chip_statistics(c["accuracy"].to_numpy())
            per.append({**dict(zip(SETTING, key, strict=True)), "chips": st["n_chips"],
                        "chip_mean": 100 * st["accuracy"], "chip_se": 100 * st["accuracy_se"],
                        "chip_p05": 100 * st["accuracy_p05"],
                        "chip_p05_se": 100 * st["accuracy_p05_se"],
                        "chip_min": 100 * st["accuracy_min"],
                        "chip_std": 100 * st["accuracy_std"]})
        cols = ["chips", "chip_mean", "chip_se", "chip_p05", "chip_p05_se", "chip_min",
                "chip_std"]
        frame = pd.DataFrame(per, columns=SETTING + cols)
        agg = agg.merge(frame, on=SETTING, how="left")
    return agg


def spec_get(prov: dict, key: str) -> Any:
    """A field of the run's spec from its provenance (``?`` if absent)."""
    return prov.get("spec", {}).get(key, "?")


def _cell(v: Any, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else f"{v:.{digits}f}"


def markdown_report(
    table: pd.DataFrame, stats: pd.DataFrame, prov: dict, figures: list[str],
    chips: pd.DataFrame | None = None,
) -> str:
    """``accuracy.md``: settings, accuracy per setting over seeds and chips, ramp
    statistics."""
    s = summarize_accuracy(table, chips if chips is not None else pd.DataFrame(
        columns=CHIP_COLUMNS))
    lines = [
        f"# Accuracy run `{table['run'].iloc[0]}`", "",
        f"Command: `{prov['command']}`", "",
        f"Data: {table['dataset'].iloc[0]}, {int(table['n_train'].iloc[0])} training images, "
        f"{int(table['n_test'].iloc[0])} test images, {int(table['epochs'].iloc[0])} epochs; "
        f"seeds {', '.join(map(str, prov['seeds']))}. Created {prov['created']}, "
        f"{prov['wall_seconds']} s.", "",
        *_device_lines(prov),
        "Schemes: `tfcbp` = trained with top-k forward / full-softmax backward; `inference` = "
        "trained with the full softmax, top-k only at inference; `full` = full softmax. All "
        "with QAT (Q 5-bit magnitude + sign, K 15 levels, V 5-bit, A 5-bit) and the 5-bit "
        "ramp ADC on Q.K^T. Trained with each sample's own quantization ranges; evaluated "
        "with a static calibration per layer and head (Q/K/V/A.V scales and ramp window) "
        f"from a pass over the first {CALIBRATION_BATCHES * CALIBRATION_BATCH} training "
        "images with the final weights. Crossbars "
        "`paperR=RxC` are the paper's R x R crossbars scaled to this model (same K "
        "precision and split of the keys).", "",
        f"Training: AdamW, peak lr {spec_get(prov, 'lr')}, batch "
        f"{spec_get(prov, 'batch_size')}, 5 % linear warm-up then cosine decay, gradient "
        f"norm clipped to 1, the first {spec_get(prov, 'softmax_warmup')} of the steps of a "
        "TFCBP model with the full softmax.", "",
        *_error_lines(prov),
        "| scheme | k | crossbar | error | accuracy % (mean) | SE | std (seeds) | seeds | chips | "
        "chip mean % | SE | chip p5 % | SE | chip min % | chip std |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for _, r in s.iterrows():
        chip = "| - " * 7 + "|"
        if pd.notna(r.get("chips")):
            chip = (f"| {int(r['chips'])} | {_cell(r['chip_mean'])} | {_cell(r['chip_se'])} | "
                    f"{_cell(r['chip_p05'])} | {_cell(r['chip_p05_se'])} | "
                    f"{_cell(r['chip_min'])} | {_cell(r['chip_std'])} |")
        lines.append(f"| {r['scheme']} | {r['k']} | {r['crossbar']} | {r['error']} | "
                     f"{r['mean']:.2f} | {_cell(r['se'])} | {r['std']:.2f} | {int(r['count'])} "
                     + chip)
    if len(stats) and "alpha" in stats:
        lines += ["", "## Ramp statistics (per query and crossbar)", "",
                  "alpha = (stop cycle + 1) / n_codes; n_tied = keys crossing in the "
                  "stopping cycle.",
                  "", "| run_id | alpha mean | alpha p10 | alpha p50 | alpha p90 | "
                  "n_tied mean | rows |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for rid, g in stats.groupby("run_id", sort=False):
            a = g["alpha"]
            lines.append(f"| {rid} | {a.mean():.3f} | {a.quantile(0.1):.3f} | "
                         f"{a.median():.3f} | {a.quantile(0.9):.3f} | "
                         f"{g['n_tied'].mean():.2f} | {len(g)} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _device_lines(prov: dict) -> list[str]:
    """Where the numbers were computed, and why another device gives other ones."""
    device = prov.get("device")
    if device is None:  # a run from before devices: the CPU
        return []
    det = bool(prov.get("deterministic"))
    if str(device).startswith("cuda") and not det:
        again = "repeated GPU runs may differ slightly (use --deterministic to pin them)"
    else:
        again = "the same spec, seeds and device give the same numbers"
    mode = " (deterministic kernels, no TF32)" if det else ""
    return [f"Device: {device}{mode}; {again}. CPU and GPU numbers differ: other error "
            "draws, summation orders and TF32 move scores that sit on a rounding tie "
            "between two ADC codes to the neighbouring code (`charact.attention.device`).",
            ""]


def _error_lines(prov: dict) -> list[str]:
    """What the error columns mean: PVT point, structured or not, chips."""
    models = prov.get("error_models") or []
    if not models:
        return []
    chips = (prov.get("chips") or {}).get("per_error_case", 1)
    kinds = {True: "static per-column part + per-conversion noise",
             False: "per-conversion noise only"}
    named = ", ".join(f"`{Path(m['path']).stem}` at {m.get('pvt', '?')} "
                      f"({kinds[bool(m.get('structured'))]})" for m in models)
    return [f"Error models: {named}. Each error setting is evaluated on {chips} simulated "
            "chip(s) with the same weights and test images (chip j: static per-column draws "
            "seeded by j, the same for every setting). `accuracy %` is the mean over seeds "
            "of each seed's mean over chips; the chip columns pool every chip of every seed "
            "(p5 = 5th percentile, its SE by the normal approximation; SE of a mean = "
            "std / sqrt(n)); `-` where one evaluation cannot say.", ""]


def write_outputs(
    out: Path, table: pd.DataFrame, stats: pd.DataFrame, prov: dict, spec: AccuracySpec,
    chips: pd.DataFrame | None = None,
) -> None:
    """Write tables, figures, report and provenance, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    chips = chips if chips is not None else pd.DataFrame(columns=CHIP_COLUMNS)
    write_atomic(out / "accuracy.parquet", lambda p: table.to_parquet(p, index=False))
    write_atomic(out / "chip_accuracy.parquet", lambda p: chips.to_parquet(p, index=False))
    write_atomic(out / "selection_stats.parquet", lambda p: stats.to_parquet(p, index=False))
    figures = plot_figures(out, table)
    write_atomic(out / "accuracy.md", lambda p: Path(p).write_text(
        markdown_report(table, stats, prov, figures, chips)))
    write_atomic(out / "provenance.json", lambda p: Path(p).write_text(
        json.dumps(prov, indent=2, default=str)))


def _save_figure(fig: Any, path: Path) -> None:
    write_atomic(path, lambda p: fig.savefig(p, dpi=120, format="png"))


def plot_figures(out: Path, table: pd.DataFrame) -> list[str]:
    """Fig. 3 (accuracy vs k), Fig. 4(c) (sub-top-k), Fig. 4(b) (injected error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarize_accuracy(table)
    made = []
    glob = s[(s["crossbar"] == "none") & (s["error"] == "none")]
    ks = sorted({k for k in glob["k"] if k != ALL})
    if ks:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = {k: i for i, k in enumerate(ks)}
        for scheme, marker in (("tfcbp", "o"), ("inference", "s")):
            g = glob[(glob["scheme"] == scheme) & (glob["k"] != ALL)]
            if len(g):
                g = g.sort_values("k", key=lambda c: c.astype(int))
                ax.errorbar([xs[k] for k in g["k"]], g["mean"], yerr=g["std"], marker=marker,
                            capsize=3, label=scheme)
        full = glob[(glob["scheme"] == "full") & (glob["k"] == ALL)]
        if len(full):
            ax.axhline(full["mean"].iloc[0], color="k", ls="--", label="full softmax")
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("k")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Accuracy against k (cf. paper Fig. 3)")
        ax.legend()
        fig.tight_layout()
        _save_figure(fig, out / "fig3_accuracy_vs_k.png")
        plt.close(fig)
        made.append("fig3_accuracy_vs_k.png")
    xb = s[(s["scheme"] == "tfcbp") & (s["error"] == "none")]
    xb_labels = list(dict.fromkeys(xb["crossbar"]))
    if len(xb_labels) > 1:
        k_xb = xb[xb["crossbar"] != "none"]["k"].iloc[0]
        g = xb[xb["k"] == k_xb]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        labels = ["global" if c == "none" else c for c in g["crossbar"]]
        ax.bar(labels, g["mean"], yerr=g["std"], capsize=3, color="tab:blue")
        ax.set_ylim(max(0, g["mean"].min() - 10), min(100, g["mean"].max() + 3))
        ax.set_xlabel("crossbar (rows x cols)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Sub-top-k, k = {k_xb} (cf. paper Fig. 4(c))")
        fig.tight_layout()
        _save_figure(fig, out / "fig4c_subtopk.png")
        plt.close(fig)
        made.append("fig4c_subtopk.png")
    errs = [e for e in dict.fromkeys(s["error"]) if e != "none"]
    if errs:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        groups = s[(s["crossbar"] == "none") & (
            ((s["scheme"] == "tfcbp") & s["k"].isin(list(s[s["error"] != "none"]["k"])))
            | ((s["scheme"] == "full") & (s["k"] == ALL)))]
        labels, means, stds = [], [], []
        for (scheme, k), g in groups.groupby(["scheme", "k"], sort=False):
            for e in ["none", *errs]:
                row = g[g["error"] == e]
                if len(row):
                    labels.append(f"{scheme} k={k}\n{'ideal' if e == 'none' else e}")
                    means.append(row["mean"].iloc[0])
                    stds.append(row["std"].iloc[0])
        ax.bar(range(len(labels)), means, yerr=stds, capsize=3,
               color=["tab:green" if "ideal" in lab else "tab:red" for lab in labels])
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylim(max(0, min(means) - 10), min(100, max(means) + 3))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Injected Q.K^T and A.V code error (cf. paper Fig. 4(b))")
        fig.tight_layout()
        _save_figure(fig, out / "fig4b_error.png")
        plt.close(fig)
        made.append("fig4b_error.png")
    return made
