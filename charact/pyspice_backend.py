"""The PySpice (ngspice shared library) backend, for interactive single runs.

Same interface as :class:`charact.runner.NgspiceBatch`. ngspice's shared library holds
one simulator per process, so this backend keeps one instance per process and removes
every circuit after its run (otherwise memory grows with each run). The Debian package
ships only the versioned ``libngspice.so.0``; ``NGSPICE_LIBRARY_PATH`` is pointed at it
when unset. Sweeps default to the batch backend: ``benchmarks/bench_engine.py`` measures
both.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

from charact.deck import Deck
from charact.errors import UserError
from charact.runner import RunResult, failure_reason, parse_measures

_LIB_GLOBS = ("/usr/lib/*/libngspice.so.0", "/usr/lib/libngspice.so.0",
              "/usr/local/lib/libngspice.so*", "/opt/homebrew/lib/libngspice.dylib")


def _library_path() -> str:
    if os.environ.get("NGSPICE_LIBRARY_PATH"):
        return os.environ["NGSPICE_LIBRARY_PATH"]
    for pattern in _LIB_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise UserError("ngspice shared library not found; install it with "
                    "'sudo apt-get install -y libngspice0' or set NGSPICE_LIBRARY_PATH")


_INSTANCE = None


def _ngspice():
    global _INSTANCE  # one shared-library simulator per process is all ngspice allows
    if _INSTANCE is None:
        os.environ["NGSPICE_LIBRARY_PATH"] = _library_path()
        import logging

        # PySpice logs ngspice's own stderr chatter and a version warning as errors; the
        # runs are judged by their results instead.
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared

        _INSTANCE = NgSpiceShared.new_instance()
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
        try:
            for line in deck.spiceinit:
                ng.exec_command(line)
            ng.load_circuit(deck.text)
            # Foreground run: PySpice's background-thread callback is broken with
            # ngspice 39, so this backend has no per-run timeout (the batch one does).
            ng.run(background=False)
            log = ng.stdout + "\n" + ng.stderr
            raw_path = workdir / f"{deck.name}.raw"
            if raw and not reason:
                ng.exec_command(f"write {raw_path}")
        except Exception as exc:  # PySpice raises generic errors; ngspice explains in stdout
            log = ng.stdout + "\n" + ng.stderr
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
