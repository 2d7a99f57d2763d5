"""The column family is one package whose modules import only the layers below them, with
no calls to another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import charact.column as column

PKG = Path(column.__file__).parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from charact.column.X import ...`` anywhere in a file,
    function-level imports included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("charact.column."):
            out.append((node.module.split(".")[2], [a.name for a in node.names]))
    return out


def test_every_module_has_a_layer():
    mods = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert mods == set(column.LAYERS)


def test_modules_import_only_lower_layers():
    rank = {m: i for i, m in enumerate(column.LAYERS)}
    bad = []
    for m in column.LAYERS:
        for dep, _ in _imports(PKG / f"{m}.py"):
            if rank[dep] >= rank[m]:
                bad.append(f"{m} imports {dep}")
    assert not bad, bad


def test_no_private_names_across_modules():
    bad = []
    for m in column.LAYERS:
        path = PKG / f"{m}.py"
        bad += [f"{m} imports {dep}.{n}" for dep, names in _imports(path) for n in names
                if n.startswith("_")]
        src = path.read_text()
        # e.g. ImaColumn()._rows(...): a private method of another module's class
        bad += [f"{m}: {line.strip()}" for line in src.splitlines()
                if "()._" in line]
    assert not bad, bad


def test_old_locations_are_gone():
    import importlib.util

    for old in ("charact.hier", "charact.calibration", "charact.errortable",
                "charact.blocks.column", "charact.blocks.column_netlist"):
        assert importlib.util.find_spec(old) is None, old
