"""Run decks in ngspice.

Two backends behind one interface (:class:`Simulator`):

* :class:`NgspiceBatch` (default): one ``ngspice -b`` subprocess per deck, in its own
  directory with a ``.spiceinit``; a per-run timeout; a crash or a convergence failure
  comes back as a failed :class:`RunResult` carrying ngspice's reason.
* :class:`PySpiceShared` (``charact.pyspice_backend``): the ngspice shared library through
  PySpice, for interactive single runs.

Measurements come from ``.meas`` lines in the log; waveforms, where a bench asks for
them, from the binary raw file (:func:`read_raw`).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from charact.deck import Deck
from charact.errors import SimulatorMissing

_MEAS = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_FAIL_PATTERNS = (
    "timestep too small", "singular matrix", "gmin stepping failed",
    "source stepping failed", "no such vector", "could not find", "unknown model",
    "error", "fatal", "aborted", "cannot",
)


@dataclass
class RunResult:
    """What one deck run gave."""

    ok: bool
    measures: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    elapsed: float = 0.0
    raw: Path | None = None
    log: str = ""

    def need(self, *names: str) -> list[float]:
        """The named measurements; NaN for any that ngspice did not report."""
        return [self.measures.get(n.lower(), math.nan) for n in names]


class Simulator(Protocol):
    name: str

    def version(self) -> str: ...

    def run(self, deck: Deck, workdir: Path, timeout: float = 600.0,
            raw: bool = False) -> RunResult: ...


def ngspice_path() -> str:
    exe = shutil.which("ngspice")
    if not exe:
        raise SimulatorMissing(
            "ngspice not found on PATH; install it with 'sudo apt-get install -y ngspice' "
            "(Debian/Ubuntu), 'brew install ngspice' (macOS) or 'conda install -c "
            "conda-forge ngspice'"
        )
    return exe


@lru_cache(maxsize=1)
def ngspice_version() -> str:
    out = subprocess.run([ngspice_path(), "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"ngspice-(\S+)", out.stdout + out.stderr)
    return f"ngspice-{m.group(1)}" if m else "ngspice-unknown"


def parse_measures(log: str) -> dict[str, float]:
    """``name = value`` lines that ngspice prints for ``.meas``/``print`` results."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = _MEAS.match(line)
        if m:
            out[m.group(1).lower()] = float(m.group(2))
    return out


def failure_reason(log: str) -> str:
    """The first line of the log that explains a failure, or ''."""
    for line in log.splitlines():
        low = line.lower()
        if any(p in low for p in _FAIL_PATTERNS) and "warning" not in low:
            return line.strip()[:300]
    return ""


def write_run_dir(deck: Deck, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".spiceinit").write_text("\n".join(deck.spiceinit) + "\n")
    path = workdir / f"{deck.name}.cir"
    path.write_text(deck.text)
    return path


def with_raw_output(deck: Deck, raw_name: str) -> Deck:
    """The deck with a control block that runs it once and writes the raw file.

    ``ngspice -b -r FILE`` would skip every ``.meas``; a ``.control`` block that runs and
    writes keeps them, and ``quit`` stops batch mode from simulating a second time.
    """
    if ".control" in deck.text.lower():
        raise ValueError(f"deck {deck.name} has its own .control block")
    body = deck.text.rstrip()
    if body.lower().endswith(".end"):
        body = body[:-4].rstrip()
    text = f"{body}\n.control\nrun\nwrite {raw_name}\nquit\n.endc\n.end\n"
    return Deck(name=deck.name, text=text, spiceinit=deck.spiceinit)


class NgspiceBatch:
    """One ``ngspice -b`` subprocess per deck."""

    name = "ngspice-batch"

    def version(self) -> str:
        return ngspice_version()

    def run(self, deck: Deck, workdir: Path, timeout: float = 600.0,
            raw: bool = False) -> RunResult:
        exe = ngspice_path()
        raw_path = workdir / f"{deck.name}.raw"
        if raw:
            deck = with_raw_output(deck, raw_path.name)
        cir = write_run_dir(deck, workdir)
        cmd = [exe, "-b", cir.name]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                                  timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired as exc:
            log = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
            return RunResult(False, reason=f"timeout after {timeout:g} s",
                             elapsed=time.perf_counter() - t0, log=log)
        elapsed = time.perf_counter() - t0
        log = proc.stdout + "\n" + proc.stderr
        (workdir / f"{deck.name}.log").write_text(log)
        measures = parse_measures(proc.stdout)
        reason = ""
        if proc.returncode != 0:
            reason = failure_reason(log) or f"ngspice exited with status {proc.returncode}"
        elif "simulation(s) aborted" in log.lower() or "tran simulation(s) aborted" in log:
            reason = failure_reason(log) or "simulation aborted"
        if raw and not reason and not raw_path.is_file():
            reason = "ngspice wrote no raw file"
        return RunResult(ok=not reason, measures=measures, reason=reason, elapsed=elapsed,
                         raw=raw_path if raw and raw_path.is_file() else None, log=log)


def read_raw(path: Path) -> dict[str, np.ndarray]:
    """Vectors of an ngspice raw file (binary or ascii), real analyses only."""
    data = path.read_bytes()
    header_end = data.find(b"Binary:\n")
    binary = header_end >= 0
    if not binary:
        header_end = data.find(b"Values:\n")
        if header_end < 0:
            raise ValueError(f"{path}: not an ngspice raw file")
    header = data[:header_end].decode(errors="replace").splitlines()
    n_vars = n_points = 0
    names: list[str] = []
    complex_data = False
    in_vars = False
    for line in header:
        key = line.split(":", 1)[0].strip().lower()
        if in_vars and line.startswith(("\t", " ")):
            names.append(line.split()[1].lower())
            continue
        in_vars = False
        if key == "no. variables":
            n_vars = int(line.split(":")[1])
        elif key == "no. points":
            n_points = int(line.split(":")[1])
        elif key == "flags":
            complex_data = "complex" in line.lower()
        elif key == "variables":
            in_vars = True
    if complex_data:
        raise ValueError(f"{path}: complex raw data is not supported")
    body = data[header_end + 8:]
    if binary:
        arr = np.frombuffer(body[: 8 * n_vars * n_points], dtype="<f8")
        n_points = arr.size // n_vars
        arr = arr[: n_points * n_vars].reshape(n_points, n_vars)
    else:
        rows: list[list[float]] = []
        tokens = body.decode().split()
        i = 0
        while i + n_vars < len(tokens) + 1 and len(rows) < n_points:
            i += 1  # point index
            rows.append([float(t) for t in tokens[i:i + n_vars]])
            i += n_vars
        arr = np.array(rows)
    return {name: arr[:, j].copy() for j, name in enumerate(names)}
