"""Figures of lookup models (matplotlib, Agg backend, imported only when plotting)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from charact.lookup.error_model import ErrorModel
from charact.lookup.pvt_table import PVTTableModel


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    """Atomic PNG write: a failed save leaves no half-written figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=130)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def plot_error_model(model: ErrorModel, path: str | os.PathLike, title: str = "") -> None:
    """Converted against ideal code in the manner of the paper's Fig. 4(b): per PVT point the
    mean converted code with a +-sigma band and the 5-95 % quantile range, and the ideal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    n = model.n_codes
    codes = np.arange(n)
    ax.plot(codes, codes, "k--", lw=1, label="ideal (theoretical)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (pvt, t) in enumerate(model.items()):
        c = colors[i % len(colors)]
        mean = codes + t.mean_error()
        sd = t.sigma()
        q = t.quantiles((0.05, 0.95)) + codes[:, None]
        ax.plot(codes, mean, "-o", ms=2.5, color=c, label=f"{pvt.label()} simulated")
        ax.fill_between(codes, mean - sd, mean + sd, color=c, alpha=0.2, lw=0)
        ax.plot(codes, q[:, 0], ":", color=c, lw=0.8, drawstyle="steps-mid")
        ax.plot(codes, q[:, 1], ":", color=c, lw=0.8, drawstyle="steps-mid")
        if t.interpolated.any():
            ax.plot(codes[t.interpolated], mean[t.interpolated], "x", color=c, ms=5)
    ax.set_xlabel("ideal code (MAC value mapped to the ADC range)")
    ax.set_ylabel("converted code")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_title(title or "converted vs ideal code: mean, +-sigma band, 5-95 % (dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_pvt_table(model: PVTTableModel, path: str | os.PathLike, title: str = "") -> None:
    """Mean (+-sigma) of each value against vdd, one line per corner and temperature."""
    plt = _pyplot()
    names = model.names[:9]  # beyond nine panels a figure is unreadable; export the rest
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for corner, g in model.grids.items():
            st = g.stats[name]
            for j, temp in enumerate(g.temp):
                m, s = st["mean"][:, j], st["sigma"][:, j]
                line, = ax.plot(g.vdd, m, "-o", ms=3, label=f"{corner} {temp:g} C")
                ax.fill_between(g.vdd, m - np.nan_to_num(s), m + np.nan_to_num(s),
                                color=line.get_color(), alpha=0.15, lw=0)
        unit = model.units.get(name, "")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("VDD (V)")
        ax.set_ylabel(f"{name} {f'({unit})' if unit else ''}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
