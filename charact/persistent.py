"""Amortised model loading: a worker keeps ngspice alive and runs many samples in it.

Some foundry decks take seconds and hundreds of MB to parse (the SkyWater 130 library:
about 5 s and 420 MB per ``ngspice -b``). ngspice re-reads every ``.lib`` each time a
deck is sourced, so keeping the process alive alone saves only its start-up. What does
save the load is keeping the *circuit* loaded and rebuilding it from ngspice's parsed
copy:

* A deck is keyed by its text without the Monte-Carlo seed and without the device-keyed
  mismatch scores (``charact.mismatch``: global parameters, set with ``alterparam``
  before the ``reset`` below). The next deck with the same
  key (the next sample of the same point and bench) is re-drawn in place with
  ``setseed N`` + ``reset`` (about 20 ms on SkyWater 130 instead of 5 s: ``reset``
  rebuilds the circuit from the deck ngspice kept after reading the files, and redraws
  every ``agauss`` from the new seed). The numbers equal those of a fresh
  ``ngspice -b`` with ``.option seed=N``: the seed moves from the ``.option`` line to
  ``setseed``, which seeds the same generator.
* ``reset`` (and ``mc_source``) rebuild the most recently *sourced* deck, not the
  current circuit of a multi-circuit session (ngspice 39, ``inp_spsource``), and
  ``mc_source`` adds a circuit on every call. So each session (process) holds one
  circuit, and a worker keeps a few sessions (LRU): the fixed benches of a job with
  several decks stay loaded while the others change.
* A deck with new text (a stimulus that depends on an earlier measurement, a new
  operating point) is sourced: that load is paid again.
* After each run the result plots are destroyed, so memory stays flat.

Not amortised: the transient itself, decks whose text changes from sample to sample,
the first load of every distinct deck in each worker, and the memory: every kept
session holds its own parsed library. ``benchmarks/bench_scaleout.py`` measures it.

Sessions are interactive ``ngspice -p`` processes driven through a pipe (not the shared
library): a hung or crashed simulation is ended by killing its process, with a per-run
timeout, and the next run starts a fresh session.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from charact.deck import Deck
from charact.errors import SimulatorMissing
from charact.mismatch import split_scores
from charact.runner import (
    CHILD_PREEXEC,
    RunResult,
    failure_reason,
    ngspice_path,
    ngspice_version,
    parse_measures,
    track_child,
    untrack_child,
)

_SEED = re.compile(r"\s+seed\s*=\s*(\d+)", re.IGNORECASE)


@dataclass
class SessionStats:
    """What a session did: loads paid and loads saved."""

    loads: int = 0  # decks sourced (model libraries parsed)
    reuses: int = 0  # runs on an already loaded circuit
    runs: int = 0
    restarts: int = 0  # sessions started (after the first: after a timeout or a crash)
    load_seconds: float = 0.0
    reuse_seconds: float = 0.0
    run_seconds: float = 0.0


class SessionDied(Exception):
    """ngspice ended or stopped answering; the session must be restarted. ``log`` is
    what it printed last."""

    def __init__(self, reason: str, log: str = "") -> None:
        super().__init__(reason)
        self.log = log


class LoadFailed(RuntimeError):
    """ngspice refused a deck; ``log`` is what it printed (for the job's log file)."""

    def __init__(self, reason: str, log: str = "") -> None:
        super().__init__(reason)
        self.log = log


def split_seed(text: str) -> tuple[str, int | None]:
    """The deck text with ``seed=N`` removed from its ``.option`` lines, and N."""
    seed = None
    out = []
    for line in text.splitlines():
        if line.lstrip().lower().startswith(".option"):
            m = _SEED.search(line)
            if m:
                seed = int(m.group(1))
                line = _SEED.sub("", line)
        out.append(line)
    return "\n".join(out) + "\n", seed


class NgspiceSession:
    """One interactive ``ngspice -p`` process holding at most one loaded circuit."""

    def __init__(self, spiceinit: tuple[str, ...], stats: SessionStats | None = None) -> None:
        self.spiceinit = tuple(spiceinit)
        self.stats = stats or SessionStats()
        self.dir = Path(tempfile.mkdtemp(prefix="charact-ngspice-"))
        (self.dir / ".spiceinit").write_text("\n".join(self.spiceinit) + "\n")
        exe = ngspice_path()
        try:
            self.proc = subprocess.Popen(
                [exe, "-p"], cwd=self.dir, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace", bufsize=1, preexec_fn=CHILD_PREEXEC)
        except OSError as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise SimulatorMissing(f"cannot run {exe}: {exc.strerror or exc}; "
                                   "reinstall ngspice") from None
        track_child(self.proc)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.key: str | None = None  # the loaded circuit
        self._n = 0
        self._token = f"charact-{uuid.uuid4().hex}"
        self.stats.restarts += 1
        self.command("echo ready", timeout=60)  # drains the start-up banner

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)
        self.lines.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def command(self, text: str, timeout: float = 600.0) -> str:
        """Send command line(s); return what ngspice printed until they finished."""
        self._n += 1
        token = f"{self._token}-{self._n}"
        try:
            self.proc.stdin.write(f"{text}\necho {token}\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            raise SessionDied("ngspice exited") from None
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.0))
            except queue.Empty:
                self.kill()
                raise TimeoutError(f"timeout after {timeout:g} s") from None
            if line is None:
                raise SessionDied("ngspice exited: " + (failure_reason("".join(out))
                                                        or "no reason given"), "".join(out))
            if token in line:
                return "".join(out)
            out.append(line)

    def load(self, key: str, text: str, timeout: float) -> str:
        """Replace the loaded circuit by ``text``. LoadFailed if ngspice refused it."""
        log = ""
        if self.key is not None:
            log += self.command("remcirc", timeout=60)
            self.key = None
        path = self.dir / "deck.cir"
        path.write_text(text)
        log += self.command(f"source {path}", timeout=timeout)
        if "there aren't any circuits" in self.command("setcirc", timeout=60):
            raise LoadFailed(failure_reason(log) or "ngspice could not load the deck", log)
        self.key = key
        return log

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        untrack_child(self.proc)

    def close(self) -> None:
        if self.alive():
            with contextlib.suppress(Exception):
                self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
                self.proc.wait(timeout=5)
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def rss(self) -> int:
        """Resident memory of the ngspice process, bytes (0 if unknown)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0


# The sessions of each worker thread (dask may run threads), most recently used last;
# all closed at exit.
_LOCAL = threading.local()
_ALL: list[NgspiceSession] = []
STATS = SessionStats()  # this process's totals, for benchmarks and the manifest


@atexit.register
def close_sessions() -> None:
    """End every session this process started."""
    while _ALL:
        _ALL.pop().close()
    _LOCAL.__dict__.clear()


def _pool() -> list[NgspiceSession]:
    if not hasattr(_LOCAL, "pool"):
        _LOCAL.pool = []
    return _LOCAL.pool


def _discard(s: NgspiceSession) -> None:
    s.close()
    for group in (_pool(), _ALL):
        with contextlib.suppress(ValueError):
            group.remove(s)


def sessions() -> list[NgspiceSession]:
    """This thread's live sessions, least recently used first."""
    return list(_pool())


def checkout(key: str, spiceinit: tuple[str, ...],
             max_sessions: int) -> tuple[NgspiceSession, bool]:
    """The session that holds circuit ``key`` (True), or one to load it into (False):
    a new session while fewer than ``max_sessions`` run, else the least recently used."""
    pool = _pool()
    for s in list(pool):
        if not s.alive():
            _discard(s)
    for s in pool:
        if s.key == key and s.spiceinit == tuple(spiceinit):
            pool.remove(s)
            pool.append(s)
            return s, True
    if len(pool) >= max(1, max_sessions):
        victim = pool.pop(0)
        if victim.spiceinit == tuple(spiceinit):
            pool.append(victim)
            return victim, False
        _discard(victim)
    s = NgspiceSession(spiceinit, stats=STATS)
    pool.append(s)
    _ALL.append(s)
    return s, False


class NgspicePersistent:
    """Same interface as :class:`charact.runner.NgspiceBatch`; decks run in kept ngspice
    sessions and reuse loaded circuits (see the module text).

    ``max_sessions`` ngspice processes per worker each keep one circuit: 4 keep the
    fixed benches of a job with several decks loaded while the others change.
    """

    name = "ngspice-persistent"

    def __init__(self, max_sessions: int = 4) -> None:
        self.max_sessions = max_sessions

    def version(self) -> str:
        return ngspice_version()

    def run(self, deck: Deck, workdir: Path, timeout: float = 600.0,
            raw: bool = False) -> RunResult:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{deck.name}.cir").write_text(deck.text)  # to rerun by hand
        text, seed = split_seed(deck.text)
        # A die's device-keyed scores are parameters: the key is the deck without them.
        keyed_text, scores = split_scores(text)
        key = hashlib.sha256((keyed_text + "\0".join(deck.spiceinit)).encode()
                             ).hexdigest()[:20]
        raw_path = workdir / f"{deck.name}.raw"
        t0 = time.perf_counter()
        log = ""
        reason = ""
        s: NgspiceSession | None = None
        try:
            s, reused = checkout(key, deck.spiceinit, self.max_sessions)
            if seed is not None:
                log += s.command(f"setseed {seed}", timeout=60)
            t_load = time.perf_counter()
            if reused:
                # Rebuild the loaded circuit from ngspice's parsed copy: fresh state, this
                # die's scores, and new agauss draws from the seed just set.
                for name, value in scores:
                    s.command(f"alterparam {name}={value}", timeout=60)
                log += s.command("reset", timeout=timeout)
                STATS.reuses += 1
                STATS.reuse_seconds += time.perf_counter() - t_load
            else:
                try:
                    log += s.load(key, text, timeout)
                    STATS.loads += 1
                    STATS.load_seconds += time.perf_counter() - t_load
                except LoadFailed as exc:
                    reason = str(exc)
                    log += exc.log
            if not reason:
                t_run = time.perf_counter()
                run_log = s.command("run", timeout=max(timeout - (t_run - t0), 0.01))
                STATS.runs += 1
                STATS.run_seconds += time.perf_counter() - t_run
                log += run_log
                if "aborted" in run_log.lower() or "there aren't any circuits" in run_log:
                    reason = failure_reason(run_log) or "simulation aborted"
                elif raw:
                    log += s.command(f"write {raw_path}", timeout=120)
                # Results of this run are read from the log: free its plots.
                s.command("destroy all", timeout=60)
        except (TimeoutError, SessionDied) as exc:
            if s is not None:
                _discard(s)
            reason = str(exc)
            log += getattr(exc, "log", "")
        elapsed = time.perf_counter() - t0
        (workdir / f"{deck.name}.log").write_text(log)
        if raw and not reason and not raw_path.is_file():
            reason = "ngspice wrote no raw file"
        return RunResult(ok=not reason, measures=parse_measures(log), reason=reason,
                         elapsed=elapsed, raw=raw_path if raw and not reason else None,
                         log=log)


def probe_load_time(tech, corner: str | None = None, timeout: float = 300.0) -> float:
    """Seconds ``ngspice -b`` spends loading the technology's model library: a one-device
    deck with the library minus the same deck without it."""
    from charact.deck import Point, render_deck
    from charact.runner import NgspiceBatch

    corner = corner or next(iter(tech.corners))
    point = Point(corner, tech.vdd_nominal, tech.temp_nominal)
    body = "vd d 0 {vdd}\nxn d d 0 0 nfet\n.op\n"
    with_lib = render_deck("probe_lib", body, tech, point)
    # The same deck with an ideal device in place of the library's.
    bare_text = "* probe_bare\nvd d 0 1\nrd d 0 1k\n.op\n.end\n"
    bare = Deck("probe_bare", bare_text, with_lib.spiceinit)
    sim = NgspiceBatch()
    with tempfile.TemporaryDirectory(prefix="charact-probe-") as tmp:
        t = {}
        for d in (bare, with_lib, bare, with_lib):  # second pass: file cache warm
            t0 = time.perf_counter()
            sim.run(d, Path(tmp) / d.name, timeout=timeout)
            t[d.name] = time.perf_counter() - t0
    return max(0.0, t["probe_lib"] - t["probe_bare"])


#: ``auto`` keeps ngspice alive when loading the models costs at least this long per
#: deck: the sense amplifier's decks simulate in 0.1-0.5 s, so a load of this size is
#: already a large part of every run.
AUTO_LOAD_THRESHOLD = 0.25


def choose_backend(tech) -> tuple[str, str]:
    """(``persistent`` or ``batch``, why) from the measured model-load time."""
    load = probe_load_time(tech)
    if load >= AUTO_LOAD_THRESHOLD:
        return "persistent", f"model library loads in {load:.2f} s per deck"
    return "batch", f"model library loads in {load:.2f} s per deck"
