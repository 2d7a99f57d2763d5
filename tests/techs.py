"""Test technologies built on the default FreePDK45 models.

``write_subckt_technology`` writes a foundry-style technology: every transistor wrapped in
a subcircuit (instance prefix X) that takes its geometry in micrometres through
``.option scale = 1e-6``, a 150 nm minimum length, sectioned corners, and no threshold
parameter on the subcircuit (it declares only ``w`` and ``l``), so mismatch must reach
the devices through the gate-series source and the multiplier.
"""

from __future__ import annotations

from pathlib import Path

from charact.tech import load_technology


def freepdk45_lib() -> Path:
    return load_technology("freepdk45").model_lib


def write_subckt_technology(folder: Path, name: str = "sub150", **fields: str) -> Path:
    """The technology TOML (and its library) in ``folder``; ``fields`` replace lines of
    the TOML by key (for the tests that break it on purpose)."""
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"{name}.lib"
    sections = []
    for section in ("NOM", "FF", "SS"):
        sections.append(
            f".lib {section}\n"
            f".lib '{freepdk45_lib()}' {section}\n"
            "* geometry in um: .option scale = 1e-6 turns it into metres for the M card\n"
            ".subckt nch150 d g s b w=1 l=0.15\n"
            "M1 d g s b NMOS_VTG w={w} l={l}\n"
            ".ends nch150\n"
            ".subckt pch150 d g s b w=1 l=0.15\n"
            "M1 d g s b PMOS_VTG w={w} l={l}\n"
            ".ends pch150\n"
            f".endl {section}\n")
    lib.write_text("* foundry-style test deck wrapping FreePDK45\n" + "\n".join(sections))
    lines = {
        "name": f'name = "{name}"',
        "model_lib": f'model_lib = "{lib.name}"',
        "vdd_nominal": "vdd_nominal = 1.0",
        "l_min": "l_min = 150e-9",
        "w_min": "w_min = 270e-9",
        "corners": '[corners]\nNOM = "NOM"\nFF = "FF"\nSS = "SS"',
        "nmos": '[devices.nmos]\nmodel = "nch150"\nprefix = "X"',
        "pmos": '[devices.pmos]\nmodel = "pch150"\nprefix = "X"',
        "netlist": '[netlist]\nscale = 1e-6\nspiceinit = ["set ngbehavior=hsa"]',
        "mismatch": '[mismatch]\nmethod = "pelgrom"\navt_nmos = 2.5e-9\navt_pmos = 2.5e-9\n'
                    'abeta_nmos = 0.01e-6\nabeta_pmos = 0.01e-6',
    }
    lines.update(fields)
    path = folder / f"{name}.toml"
    path.write_text("\n".join(v for v in lines.values() if v) + "\n")
    return path
