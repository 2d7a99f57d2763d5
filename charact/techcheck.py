"""Check a technology in ngspice before any job of a sweep runs.

A technology file can be wrong in ways its TOML cannot show: a corner naming a library
section that does not exist, a model or subcircuit name the library lacks, a library that
ngspice cannot parse, or a device that silently ignores the parameter charact uses to
shift its threshold (a subcircuit that does not declare ``delvto`` drops it without a
word, and every Monte-Carlo sample comes out identical). Each would otherwise fill a
results folder with failed rows, or worse, with numbers that look fine.

:func:`check_technology` loads every library section a sweep will use, instantiates each
device kind through the same wrappers the decks use, and, where the sweep draws Pelgrom
mismatch, applies a known threshold and current-factor shift to a probe device and checks
that the drain current moves as it must. Results are cached per technology fingerprint
and simulator version, so a resumed sweep does not pay again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from charact.bench import FindAt, dc, num
from charact.deck import Deck
from charact.errors import UserError
from charact.tech import Technology, wrapper_lines

PROBE_VERSION = "1"
DVT = 0.05  # V: threshold shift applied to the probe device
DBETA = 0.10  # current-factor shift applied to the probe device


@dataclass(frozen=True)
class DeviceProbe:
    """Drain currents of one device kind at one library section (A, magnitudes)."""

    kind: str
    i_nom: float
    i_vt: float  # with +DVT (NaN when the technology draws no threshold mismatch)
    i_beta: float  # with +DBETA (NaN when it draws no current-factor mismatch)


def _sections(tech: Technology, corners: list[str], mc: bool) -> dict[str, str]:
    out = {c: tech.corners[c] for c in corners}
    if mc and tech.mismatch.method == "native":
        out.update({f"{c}/mc": tech.mismatch.sections[c] for c in corners
                    if c in tech.mismatch.sections})
    return out


def library_sections(path: Path) -> list[str]:
    """The ``.lib NAME`` sections defined in a model library (not its includes)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) == 2 and words[0].lower() == ".lib":
            found.append(words[1])
    return found


def _probe_size(tech: Technology) -> tuple[float, float]:
    l_ = 2 * tech.l_min
    return max(4 * l_, tech.w_min), l_


def w_over_l(tech: Technology) -> float:
    w, l_ = _probe_size(tech)
    return w / l_


def _probe_deck(tech: Technology, section: str, pelgrom: bool
                ) -> tuple[Deck, dict[str, FindAt]]:
    """The probe deck of one library section and its drain-current measurement per
    probe device (``nfet_nom``, ``nfet_vt``, ...)."""
    vdd = tech.vdd_nominal
    w, l_ = _probe_size(tech)
    lines = [f"* technology probe: {tech.name}, section {section}", ".option noacct"
             + (f" scale={num(tech.scale)}" if tech.scale != 1.0 else "")
             + "".join(f" {o}" for o in tech.options),
             f".lib '{tech.model_lib}' {section}"]
    m = tech.mismatch
    coeffs = {"nfet": (m.avt_nmos, m.abeta_nmos), "pfet": (m.avt_pmos, m.abeta_pmos)}
    for cell, dev in (("nfet", tech.nmos), ("pfet", tech.pmos)):
        avt, abeta = coeffs[cell]
        lines += wrapper_lines(cell, dev, tech.scale, tech.l_min, pelgrom, avt, abeta)
    lines += [dc("vdd", "vdd", vdd), dc("vhalf", "half", vdd / 2), dc("vgate", "gate", 0)]
    names = []
    root = math.sqrt(w * l_)
    for cell in ("nfet", "pfet"):
        avt, abeta = coeffs[cell]
        cases = [("nom", "")]
        # nine digits, as charact.mismatch writes a die's scores
        if pelgrom and avt > 0:
            cases.append(("vt", f" zvt={DVT * root / avt:.9g}"))
        if pelgrom and abeta > 0:
            cases.append(("beta", f" zbeta={DBETA * root / abeta:.9g}"))
        for tag, extra in cases:
            name = f"{cell}_{tag}"
            names.append(name)
            # NMOS: gate at vdd, drain at vdd/2, source at ground; PMOS mirrored.
            if cell == "nfet":
                lines += [f"vm_{name} half d_{name} 0",
                          f"X{name} d_{name} vdd 0 0 nfet w={num(w)} l={num(l_)}{extra}"]
            else:
                lines += [f"vm_{name} d_{name} half 0",
                          f"X{name} d_{name} gate vdd vdd pfet w={num(w)} l={num(l_)}{extra}"]
    # two points: ngspice's FIND needs an interval around the point it reads
    lines.append(".dc vgate 0 1e-3 1e-3")
    meas = {n: FindAt(f"i_{n}", f"i(vm_{n})", at=5e-4, analysis="dc") for n in names}
    lines += [p.line() for p in meas.values()]
    lines.append(".end")
    spiceinit = ("set num_threads=1",) + tuple(tech.spiceinit)
    return Deck(name="probe", text="\n".join(lines) + "\n", spiceinit=spiceinit), meas


def _cache_path(tech: Technology, key: str) -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not base or base.startswith("~"):
        return None
    return Path(base) / "charact" / "techcheck" / f"{key}.json"


def check_technology(tech: Technology, corners: list[str] | None = None, mc: bool = True,
                     use_cache: bool = True) -> dict[str, list[DeviceProbe]]:
    """Probe ``tech`` at ``corners`` (all by default) and, with ``mc``, its statistical
    sections; raise :class:`UserError` naming the file and field on the first problem.
    Returns the probe currents per section."""
    from charact.runner import NgspiceBatch, ngspice_version

    corners = list(corners or tech.corners)
    for c in corners:
        tech.check_corner(c)
    sections = _sections(tech, corners, mc)
    pelgrom = mc and tech.mismatch.method == "pelgrom"
    # Sections first, in Python: ngspice's own message for a missing one is terse.
    defined = library_sections(tech.model_lib)
    lowered = {s.lower() for s in defined}
    for label, section in sections.items():
        if section.lower() not in lowered:
            field = f"[corners] {label}" if "/" not in label else \
                f"[mismatch.sections] {label.split('/')[0]}"
            have = ", ".join(defined) if defined else "none: the file has no '.lib NAME' " \
                "sections; wrap its models in '.lib NAME' ... '.endl'"
            raise UserError(f"{tech.source}: {field} = {section!r}: no such section in "
                            f"{tech.model_lib} (sections: {have})")
    key = hashlib.sha256(json.dumps(
        [PROBE_VERSION, tech.fingerprint(), ngspice_version(), sorted(sections.items()),
         pelgrom], sort_keys=True).encode()).hexdigest()[:24]
    cache = _cache_path(tech, key) if use_cache else None
    if cache is not None and cache.is_file():
        try:
            raw = json.loads(cache.read_text())
            return {s: [DeviceProbe(**d) for d in v] for s, v in raw.items()}
        except (OSError, ValueError, TypeError):
            pass  # a damaged cache entry: probe again
    sim = NgspiceBatch()
    out: dict[str, list[DeviceProbe]] = {}
    with tempfile.TemporaryDirectory(prefix="charact-probe-") as tmp:
        for label, section in sections.items():
            deck, meas = _probe_deck(tech, section, pelgrom)
            res = sim.run(deck, Path(tmp) / re.sub(r"\W", "_", label), timeout=120)
            out[label] = _judge(tech, label, section, res, meas)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({s: [p.__dict__ for p in v] for s, v in out.items()}))
        except OSError:
            pass  # an unwritable cache only costs the probe next time
    return out


def _judge(tech: Technology, label: str, section: str, res, meas: dict[str, FindAt]
           ) -> list[DeviceProbe]:
    where = f"{tech.source}: section {section!r} ({label})"
    log = res.log or ""
    if not res.ok or "could not find a valid modelname" in log.lower():
        reason = _model_error(tech, log)
        if reason:
            raise UserError(f"{tech.source}: {reason} (section {section})")
        raise UserError(f"{where}: ngspice cannot load the library: "
                        f"{res.reason or 'no reason given'}")
    probes = []
    for cell, field in (("nfet", "nmos"), ("pfet", "pmos")):
        dev = tech.nmos if cell == "nfet" else tech.pmos
        vals = {n.split("_", 1)[1]: abs(m.value(res)) for n, m in meas.items()
                if n.startswith(cell)}
        i_nom = vals.get("nom", math.nan)
        squares = w_over_l(tech)
        # Any MOS technology gives tens of uA per square at |Vgs| = VDD; far less means
        # the model is of the other polarity or not a transistor at all.
        if not (math.isfinite(i_nom) and i_nom > 2e-6 * squares):
            raise UserError(f"{tech.source}: [devices.{field}] model = {dev.model!r} is not "
                            f"an on {field} device in ngspice (|Id| = {i_nom:.3g} A at "
                            f"|Vgs| = VDD, W/L = {squares:g}; section {section})")
        i_vt, i_beta = vals.get("vt", math.nan), vals.get("beta", math.nan)
        if "vt" in vals:
            # +dVt lowers an NMOS current; for a PMOS it raises the (negative) threshold
            # toward zero, as BSIM's delvto does, and raises the current.
            rel = (i_vt - i_nom) / i_nom * (-1 if cell == "nfet" else 1)
            if not rel > 0.005:
                raise UserError(
                    f"{tech.source}: [devices.{field}] vt_shift = {dev.vt_shift!r}: a "
                    f"{DVT * 1e3:g} mV threshold shift does not reach model {dev.model!r} "
                    f"(drain current {i_nom:.4g} -> {i_vt:.4g} A): the device ignores "
                    "that parameter; set vt_shift = \"gate_source\"")
        if "beta" in vals:
            ratio = i_beta / i_nom
            if not 1 + 0.2 * DBETA < ratio < 1 + 2 * DBETA:
                raise UserError(
                    f"{tech.source}: [devices.{field}] beta_shift = {dev.beta_shift!r}: a "
                    f"{DBETA:.0%} current-factor shift changes the drain current of model "
                    f"{dev.model!r} by a factor {ratio:.4g}: the device ignores that "
                    "parameter; set beta_shift = \"multiplier\"")
        probes.append(DeviceProbe(cell, i_nom, i_vt, i_beta))
    return probes


def _model_error(tech: Technology, log: str) -> str:
    low = log.lower()
    for field, dev in (("nmos", tech.nmos), ("pmos", tech.pmos)):
        name = dev.model.lower()
        if (f"can't find model '{name}'" in low or "unknown subckt" in low and name in low
                or re.search(rf"subcircuit\s+{re.escape(name)}\s+not found", low)
                or f"could not find subcircuit {name}" in low):
            kind = "subcircuit" if dev.prefix == "X" else "model"
            return (f"[devices.{field}] model = {dev.model!r}: no such {kind} in "
                    f"{tech.model_lib.name}")
    return ""
