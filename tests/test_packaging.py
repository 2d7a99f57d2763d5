"""The wheel carries every subpackage and the data folders (netlists/, models/)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "charact").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {found - listed}"


@pytest.mark.slow
def test_wheel_ships_templates_technologies_and_models(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip()[-200:]}")
    wheel = next(tmp_path.glob("charact-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (REPO / "netlists").glob("*.sp"):
        assert f"charact/netlists/{f.name}" in names
    assert "charact/netlists/tech/freepdk45.toml" in names
    for f in (REPO / "models").glob("*.json"):
        assert f"charact/models/{f.name}" in names
    assert "charact/sweep.py" in names and "charact/lookup/fit.py" in names
    # installed (not editable), the data folders are found inside the package
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    probe = ("import charact.paths as p; from charact.tech import load_technology; "
             "print(p.netlists_dir()); print(load_technology('freepdk45').name)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0].startswith(str(target)) and lines[1] == "freepdk45"
