"""Shared fixtures. Tests marked ``spice`` run real ngspice on the FreePDK45 models."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# One BLAS/torch thread per process: the machine running CI has 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    if shutil.which("ngspice"):
        return
    skip = pytest.mark.skip(reason="ngspice not installed")
    for item in items:
        if "spice" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def charact_cmd() -> list[str]:
    """The command line of the CLI, in this interpreter."""
    return [sys.executable, "-m", "charact.cli"]
