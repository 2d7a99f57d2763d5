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

import contextlib
import ctypes
import ctypes.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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
        # which() skips files without execute permission: name such a file if there is one.
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            candidate = Path(folder or ".") / "ngspice"
            if candidate.is_file():
                raise SimulatorMissing(f"{candidate} is not executable; fix its permissions "
                                       "or reinstall ngspice")
        raise SimulatorMissing(
            "ngspice not found on PATH; install it with 'sudo apt-get install -y ngspice' "
            "(Debian/Ubuntu), 'brew install ngspice' (macOS) or 'conda install -c "
            "conda-forge ngspice'"
        )
    return exe


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Loaded here, not in the forked child: preexec_fn must not import or allocate much.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the kernel kills this ngspice when the thread that started it dies
    (Linux), so a killed worker leaves no simulator behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


#: preexec_fn for every ngspice this process starts (None where prctl is unknown; there
#: the worker's watchdog, ``kill_children``, is what ends them).
CHILD_PREEXEC: Callable[[], None] | None = _die_with_parent if _PRCTL is not None else None

# The ngspice processes running now, for kill_children.
_CHILDREN: set[subprocess.Popen] = set()
_CHILDREN_LOCK = threading.Lock()


def track_child(proc: subprocess.Popen) -> None:
    with _CHILDREN_LOCK:
        _CHILDREN.add(proc)


def untrack_child(proc: subprocess.Popen) -> None:
    with _CHILDREN_LOCK:
        _CHILDREN.discard(proc)


def kill_children() -> None:
    """Kill every ngspice this process started and has not reaped (batch and kept
    sessions): called when the sweep that owns this worker is gone."""
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()


def _cannot_run(exe: str, exc: OSError) -> SimulatorMissing:
    return SimulatorMissing(f"cannot run {exe}: {exc.strerror or exc}; reinstall ngspice")


@lru_cache(maxsize=1)
def ngspice_version() -> str:
    exe = ngspice_path()
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30,
                             errors="replace")
    except OSError as exc:
        raise _cannot_run(exe, exc) from None
    except subprocess.TimeoutExpired:
        raise SimulatorMissing(f"{exe} -v did not answer within 30 s") from None
    m = re.search(r"ngspice-(\S+)", out.stdout + out.stderr)
    if m:
        return f"ngspice-{m.group(1)}"
    if out.returncode != 0:  # a broken install: missing shared objects and the like
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise SimulatorMissing(f"{exe} does not run: {last.strip()[:200]}")
    return "ngspice-unknown"


def parse_measures(log: str) -> dict[str, float]:
    """``name = value`` lines that ngspice prints for ``.meas``/``print`` results."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = _MEAS.match(line)
        if m:
            out[m.group(1).lower()] = float(m.group(2))
    return out


# Lines that close an error block ngspice has already explained on the lines above.
_TRAILERS = ("simulation interrupted", "fatal error in ngspice", "simulation(s) aborted")


def _is_failure(line: str) -> bool:
    low = line.lower()
    # "Circuit: <title>" echoes the deck's first line, whatever words it has.
    return any(p in low for p in _FAIL_PATTERNS) and "warning" not in low \
        and not low.startswith("circuit:")


def failure_reason(log: str, limit: int = 300) -> str:
    """ngspice's explanation of a failure, in one line of at most ``limit`` characters,
    or ''.

    ngspice 39 spreads a message over lines: ``Error on line 5 or its substitute:``, the
    offending netlist line, then what is wrong with it; ``Netlist line no. 2:`` then the
    message; or the message and then ``Simulation interrupted due to error!``. The
    whole block is kept, joined.
    """
    lines = [" ".join(ln.split()) for ln in log.splitlines()]
    for i, line in enumerate(lines):
        low = line.lower()
        if not line or not (_is_failure(line) or low.startswith("netlist line no")):
            continue
        if any(t in low for t in _TRAILERS):
            # The message is the block just above this closing line.
            j = i
            while j > 0 and i - j < 3 and lines[j - 1] \
                    and "warning" not in lines[j - 1].lower():
                j -= 1
            parts = lines[j:i] or [line]
        else:
            parts = [line]
            k = i + 1
            # A header ending in ':' continues on the next lines, up to a blank line.
            while line.endswith(":") and k < len(lines) and lines[k] and k - i <= 6 \
                    and not any(t in lines[k].lower() for t in _TRAILERS) \
                    and "warning" not in lines[k].lower():
                parts.append(lines[k])
                k += 1
        text = " ".join(parts)
        return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."
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
        log_path = workdir / f"{deck.name}.log"
        t0 = time.perf_counter()
        try:
            child = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     preexec_fn=CHILD_PREEXEC)
        except OSError as exc:
            raise _cannot_run(exe, exc) from None
        track_child(child)
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            log, _ = child.communicate()
            log_path.write_text(log)
            return RunResult(False, reason=f"timeout after {timeout:g} s",
                             elapsed=time.perf_counter() - t0, log=log)
        finally:
            untrack_child(child)
        proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
        elapsed = time.perf_counter() - t0
        if "error while loading shared libraries" in proc.stderr:
            raise SimulatorMissing(f"{exe} does not run: {proc.stderr.strip()[:200]}")
        log = proc.stdout + "\n" + proc.stderr
        log_path.write_text(log)
        measures = parse_measures(proc.stdout)
        reason = ""
        if proc.returncode != 0:
            reason = failure_reason(log) or exit_reason(proc.returncode, proc.stderr)
        elif "simulation(s) aborted" in log.lower() or "tran simulation(s) aborted" in log:
            reason = failure_reason(log) or "simulation aborted"
        if raw and not reason and not raw_path.is_file():
            reason = "ngspice wrote no raw file"
        return RunResult(ok=not reason, measures=measures, reason=reason, elapsed=elapsed,
                         raw=raw_path if raw and raw_path.is_file() else None, log=log)


def exit_reason(status: int, stderr: str) -> str:
    """The reason for an ngspice exit with no error message: the status and ngspice's
    last word (ngspice 39 drops some malformed netlist lines without saying which)."""
    last = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return f"ngspice exited with status {status}" + (f": {last[-1][:200]}" if last else "")


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
