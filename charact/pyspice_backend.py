"""The PySpice (ngspice shared library) backend, for interactive single runs.

Same interface as :class:`charact.runner.NgspiceBatch`. ngspice's shared library holds
one simulator per process, so this backend keeps one instance per process and removes
every circuit after its run (otherwise memory grows with each run). The Debian package
(``libngspice0``) ships only the versioned ``libngspice.so.0``, in the multiarch folder
(``/usr/lib/x86_64-linux-gnu``), where PySpice does not look: :func:`library_path`
finds it and ``NGSPICE_LIBRARY_PATH`` is pointed at it when unset. Sweeps default to the
batch backend: ``benchmarks/bench_engine.py`` measures both.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from charact.deck import Deck
from charact.errors import SimulatorMissing
from charact.runner import RunResult, failure_reason, parse_measures

_LIB_GLOBS = ("/usr/lib/*/libngspice.so.0", "/usr/lib/*/libngspice.so",
              "/usr/lib64/libngspice.so*", "/usr/lib/libngspice.so*",
              "/usr/local/lib/libngspice.so*", "/opt/homebrew/lib/libngspice.dylib",
              "/usr/local/lib/libngspice.dylib")

_INSTALL = "install it with 'sudo apt-get install -y libngspice0' (Debian/Ubuntu)"


def _dpkg_library() -> list[str]:
    """``libngspice.so.0`` as Debian's package lists it, wherever it was put."""
    if not shutil.which("dpkg"):
        return []
    try:
        out = subprocess.run(["dpkg", "-L", "libngspice0"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.strip() for ln in out.stdout.splitlines()
            if ln.strip().endswith("/libngspice.so.0") and Path(ln.strip()).is_file()]


def library_candidates() -> list[str]:
    """Installed ngspice shared libraries, the likeliest first: this platform's multiarch
    folder (another architecture's library would not load), this Python's prefix (conda),
    the usual folders, then what dpkg says."""
    patterns = []
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        patterns += [f"/usr/lib/{multiarch}/libngspice.so.0",
                     f"/usr/lib/{multiarch}/libngspice.so"]
    patterns += [os.path.join(sys.prefix, "lib", "libngspice.so*"), *_LIB_GLOBS]
    found: list[str] = []
    for pattern in patterns:
        found += [f for f in sorted(glob.glob(pattern)) if f not in found]
    return found or _dpkg_library()


def library_path() -> str:
    """The ngspice shared library to load: ``NGSPICE_LIBRARY_PATH`` if set, else the
    first of :func:`library_candidates`. Raises :class:`SimulatorMissing`."""
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env:
        # PySpice formats the path with an instance id when it has braces.
        if "{" not in env and not Path(env).is_file():
            raise SimulatorMissing(f"NGSPICE_LIBRARY_PATH={env} is not a file; unset it, "
                                   f"point it at libngspice.so.0, or {_INSTALL}")
        return env
    found = library_candidates()
    if not found:
        raise SimulatorMissing(f"ngspice shared library (libngspice.so.0) not found, "
                               f"needed by --backend pyspice; {_INSTALL} or set "
                               "NGSPICE_LIBRARY_PATH")
    return found[0]


_INSTANCE = None


def _ngspice():
    global _INSTANCE  # one shared-library simulator per process is all ngspice allows
    if _INSTANCE is None:
        path = library_path()
        os.environ["NGSPICE_LIBRARY_PATH"] = path
        import logging

        # PySpice logs ngspice's own stderr chatter and a version warning as errors; the
        # runs are judged by their results instead.
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared
        except ImportError as exc:
            raise SimulatorMissing(f"--backend pyspice needs PySpice ({exc}); "
                                   "pip install PySpice") from None
        # PySpice reads the variable when first imported: set it here too, in case it
        # was imported before.
        NgSpiceShared.LIBRARY_PATH = path
        try:
            _INSTANCE = NgSpiceShared.new_instance()
        except (OSError, NameError) as exc:  # dlopen failure; ngSpice_Init's NameError
            raise SimulatorMissing(f"cannot load the ngspice shared library {path}: "
                                   f"{exc}") from None
    return _INSTANCE


class PySpiceShared:
    """One ngspice shared-library instance per process, driven through PySpice."""

    name = "pyspice-shared"

    def version(self) -> str:
        return f"ngspice-{_ngspice().ngspice_version}"

    def run(self, deck: Deck, workdir: Path, timeout: float = 600.0,
            raw: bool = False) -> RunResult:
        ng = _ngspice()  # sets NGSPICE_LIBRARY_PATH before PySpice is first imported
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{deck.name}.cir").write_text(deck.text)
        t0 = time.perf_counter()
        reason = ""
        raw_path = workdir / f"{deck.name}.raw"
        parts: list[str] = []

        def take() -> None:
            # Each PySpice command clears ngspice's output: keep it stage by stage, or
            # the load's "Error on line ..." is lost to the run's "circuit not parsed".
            parts.append(ng.stdout + "\n" + ng.stderr)

        try:
            for line in deck.spiceinit:
                ng.exec_command(line)
            ng.load_circuit(deck.text)
            take()
            # Foreground run: PySpice's background-thread callback is broken with
            # ngspice 39, so this backend has no per-run timeout (the batch one does).
            try:
                ng.run(background=False)
            except Exception as exc:
                # PySpice counts every stderr line that is not a "Warning:" as an error,
                # ngspice's "Note: Starting dynamic gmin stepping" included: judge a failed
                # run by what ngspice said, as the batch backend does.
                take()
                if type(exc).__name__ != "NgSpiceCommandError" \
                        or failure_reason("\n".join(parts)):
                    raise
            else:
                take()
            if raw:
                ng.exec_command(f"write {raw_path}")
            log = "\n".join(parts)
        except Exception as exc:  # PySpice raises generic errors; ngspice explains in stdout
            take()
            log = "\n".join(parts)
            reason = failure_reason(log) or f"{type(exc).__name__}: {exc}"
        finally:
            try:
                ng.remove_circuit()
                ng.destroy()
            except Exception:  # noqa: BLE001 - nothing to clean up after a failed load
                pass
        elapsed = time.perf_counter() - t0
        (workdir / f"{deck.name}.log").write_text(log)
        measures = parse_measures(log)
        if not reason and "aborted" in log.lower():
            reason = failure_reason(log) or "simulation aborted"
        return RunResult(ok=not reason, measures=measures, reason=reason, elapsed=elapsed,
                         raw=raw_path if raw and not reason and raw_path.is_file() else None,
                         log=log)
