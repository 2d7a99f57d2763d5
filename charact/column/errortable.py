"""Error tables of column conversions (the paper's Fig. 4(b)): converted code against the
ideal value, over Monte-Carlo samples and random patterns, per corner/VDD/temperature.

Works directly on a column sweep's table (block ``ima_column``: ``corner, vdd, temp,
status, mac_ideal, code_ideal, code``). ``charact export`` of the lookup package makes a
similar table from a fitted model; this one is the raw statistics of the sweep.

Statistics per (corner, vdd, temp, ideal value), over rows with status "ok":
``count``, ``mean_code``, ``mean_error`` (code - code_ideal, LSB), ``sigma``
(population standard deviation of the error, ddof = 0, so it is finite, 0, for a single
sample: read it with ``count``), ``sigma_unbiased`` (ddof = 1, NaN for one sample),
``rms_error``, the error quantiles ``q01 .. q99`` (the lookup package's set) and the
fraction of conversions more than one LSB off.

The MAC transfer (bitline differential ``v_mac`` against ``mac_ideal``) is summarised per
operating point by a least-squares line: slope (V per MAC unit), offset and the largest
residual in LSB of that point (``transfer_inl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from charact.errors import UserError
from charact.lookup.error_model import QUANTILES
from charact.lookup.export import QUANTILE_COLUMNS
from charact.tables import read_sweep

PVT = ["corner", "vdd", "temp"]
REQUIRED = ("corner", "vdd", "temp", "status", "mac_ideal", "code_ideal", "code")
# The blocks whose sweeps have the column-conversion format (full SPICE and composed).
COLUMN_BLOCKS = ("ima_column", "ima_column_composed")


def load_sweep_table(sweep: str | Path) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    """A column sweep folder (or its table.parquet): the table, its manifest and the
    folder. A sweep of another block is refused."""
    st = read_sweep(sweep, REQUIRED, block=COLUMN_BLOCKS, what="column sweep table")
    return st.table, st.manifest, st.folder


def error_table(table: pd.DataFrame, by: str = "code_ideal") -> pd.DataFrame:
    """One row per operating point per observed ideal value (``code_ideal`` or
    ``mac_ideal``), statistics of ``code - code_ideal``."""
    if by not in ("code_ideal", "mac_ideal"):
        raise UserError(f"--by must be code_ideal or mac_ideal, got {by!r}")
    ok = table[table["status"] == "ok"].copy()
    if ok.empty:
        raise UserError("the table has no successful conversion")
    ok["error"] = ok["code"].astype(float) - ok["code_ideal"].astype(float)
    rows = []
    for key, g in ok.groupby(PVT + [by], sort=True):
        e = g["error"].to_numpy()
        row = dict(zip(PVT + [by], key, strict=True))
        if by == "mac_ideal":
            row["code_ideal"] = int(g["code_ideal"].iloc[0])
        q = np.quantile(e, QUANTILES)
        row.update({
            "count": int(e.size), "mean_code": float(g["code"].mean()),
            "mean_error": float(e.mean()), "sigma": float(e.std(ddof=0)),
            "sigma_unbiased": float(e.std(ddof=1)) if e.size > 1 else float("nan"),
            "rms_error": float(np.sqrt((e ** 2).mean())),
            "frac_over_1lsb": float((np.abs(e) > 1).mean()),
        })
        row.update({name: float(v) for name, v in zip(QUANTILE_COLUMNS, q, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


def transfer_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per operating point: the MAC transfer line (v_mac against mac_ideal), its largest
    residual in LSB, the ramp step and linearity, and the code/MAC rank correlation."""
    ok = table[table["status"] == "ok"]
    rows = []
    for key, g in ok.groupby(PVT, sort=True):
        row: dict[str, Any] = dict(zip(PVT, key, strict=True))
        row["conversions"] = int(len(g))
        if "v_mac" in g and g["mac_ideal"].nunique() > 1:
            m = g["mac_ideal"].to_numpy(float)
            v = g["v_mac"].to_numpy(float)
            slope, off = np.polyfit(m, v, 1)
            lsb_v = slope * float(g["lsb_mac"].iloc[0]) if "lsb_mac" in g else np.nan
            row.update({"transfer_slope": float(slope), "transfer_offset": float(off),
                        "transfer_inl": float(np.abs(v - (slope * m + off)).max() / lsb_v)})
        for col in ("ramp_step", "ramp_dnl", "ramp_inl", "t_cal", "t_step", "volts_per_mac"):
            if col in g:
                row[col] = float(pd.to_numeric(g[col], errors="coerce").mean())
        row["spearman_code_mac"] = float(g["code"].rank().corr(g["mac_ideal"].rank()))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_error_table(table: pd.DataFrame, errors: pd.DataFrame, path: Path,
                     title: str = "") -> None:
    """Fig. 4(b)-style: every conversion's code against its ideal MAC, the mean code
    (+-sigma) per ideal code at the centre of its MAC bin, and the ideal staircase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from charact.provenance import atomic_path

    ok = table[table["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, g) in enumerate(ok.groupby(PVT, sort=True)):
        c = colors[i % len(colors)]
        label = f"{key[0]} {key[1]:g} V {key[2]:g} C"
        ax.plot(g["mac_ideal"], g["code"], ".", ms=3, alpha=0.35, color=c)
        e = errors[(errors["corner"] == key[0]) & np.isclose(errors["vdd"], key[1])
                   & np.isclose(errors["temp"], key[2])]
        if "code_ideal" in e and "lsb_mac" in g:
            lo, lsb = float(g["mac_lo"].iloc[0]), float(g["lsb_mac"].iloc[0])
            xm = lo + (e["code_ideal"].to_numpy() + 0.5) * lsb
            ax.errorbar(xm, e["mean_code"], yerr=e["sigma"], fmt="-o", ms=3, lw=1, color=c,
                        capsize=2, label=f"{label} simulated (mean +- sigma)")
    if "mac_lo" in ok:
        lo, hi = float(ok["mac_lo"].iloc[0]), float(ok["mac_hi"].iloc[0])
        m = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 800)
        ideal = np.clip(np.floor((m - lo) / ((hi - lo) / 32)), 0, 31)
        ax.plot(m, ideal, "k-", lw=1, label="theoretical (ideal transfer)")
    ax.set_xlabel("ideal MAC value (Q . K, integer units)")
    ax.set_ylabel("converted code")
    ax.set_title(title or "IMA column: simulated against theoretical")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def write_error_tables(sweep: str | Path, out_dir: str | Path | None = None,
                       by: str = "code_ideal", plot: bool = True,
                       command: str = "") -> list[Path]:
    """``errortable.csv``/``.parquet``, ``transfer.csv`` and ``errortable.png`` of a
    column sweep, with provenance (the sweep's manifest stamp and this command)."""
    from charact.outputs import check_output_dir
    from charact.provenance import stamp, write_table

    table, sweep_prov, folder = load_sweep_table(sweep)
    out = Path(out_dir) if out_dir else folder
    check_output_dir(out, "output folder")  # before the tables are computed
    errors = error_table(table, by)
    transfer = transfer_table(table)
    prov = stamp(kind="column_error_table", by=by, source=str(folder),
                 sweep={k: sweep_prov.get(k) for k in ("sweep", "spec", "seed", "samples",
                                                        "technology", "simulator",
                                                        "code_revision", "created")},
                 rows=int(len(table)), rows_ok=int((table["status"] == "ok").sum()))
    if command:
        prov["command"] = command
    paths = [out / "errortable.csv", out / "errortable.parquet", out / "transfer.csv"]
    write_table(errors, paths[0], prov)
    write_table(errors, paths[1], prov)
    write_table(transfer, paths[2], prov)
    if plot:
        paths.append(out / "errortable.png")
        plot_error_table(table, errors, paths[-1])
    return paths
