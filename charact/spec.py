"""Sweep specifications: a declarative, versioned TOML file expanded into jobs.

Example (``examples/sense_amp.toml``)::

    schema = "charact.sweep/1"
    name = "sense_amp_pvt"
    block = "sense_amp"
    technology = "freepdk45"          # shipped name or path to a technology TOML

    [params]                          # template parameters (defaults from the template)
    w_in = 1e-6

    [conditions]                      # lists, or {start, stop, step} / {start, stop, num}
    corner = ["NOM", "SS"]
    vdd = [0.8, 1.0, 1.2]
    temp = [-40, 27, 125]
    vcm = [0.2, 0.35, 0.5]            # block-specific axis

    [montecarlo]
    samples = 20                      # 0 = one nominal run per point, no mismatch
    seed = 1                          # the mismatch stream: sample i is die i of it,
                                      # the same die at every corner, VDD, temperature

    [measure]                         # block measurement options
    delta_v = [1e-4, 1e-3, 1e-2, 1e-1]

    [run]
    timeout = 300                     # seconds per job
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charact.blocks import Block, get_block
from charact.deck import Point, check_point
from charact.errors import UserError
from charact.mismatch import STREAM_VERSION
from charact.tech import Technology, load_technology

SCHEMA = "charact.sweep/1"
_TOP = {"schema", "name", "block", "technology", "description", "params", "conditions",
        "montecarlo", "measure", "run"}
_PVT = ("corner", "vdd", "temp")
MAX_AXIS = 100_000  # values of one range axis
MAX_JOBS = 1_000_000  # jobs of one spec (each is a file in jobs/)


@dataclass(frozen=True)
class Job:
    """One Monte-Carlo sample of one sweep point: the unit that is run, keyed and kept."""

    index: int
    point: Point
    conditions: dict[str, float]
    sample: int  # -1 for a nominal run
    key: str


@dataclass
class SweepSpec:
    """A checked sweep specification."""

    path: Path | None
    raw: dict[str, Any]
    name: str
    block: Block
    tech: Technology
    params: dict[str, float]
    axes: dict[str, list]  # corner, vdd, temp, then block conditions
    samples: int
    seed: int
    options: dict[str, Any]
    timeout: float = 600.0
    description: str = ""
    jobs: list[Job] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.raw, default=str))

    def job_spec(self) -> JobSpec:
        """What a worker needs to run any job of this spec, without the job list: a
        parallel task carries this, so its size does not grow with the sweep."""
        return JobSpec(name=self.name, block=self.block, tech=self.tech, params=self.params,
                       options=self.options, timeout=self.timeout)

    def identity(self) -> dict[str, Any]:
        """What makes a results folder this sweep's (``identity.json``): its name, block,
        technology (fingerprint of its files), template parameters and measurement
        options. Corners, supplies, temperatures, block axes, samples and seed are left
        out: a spec that differs only in those (command-line overrides, a sub-spec)
        shares the folder and reuses its jobs."""
        return json.loads(json.dumps({
            "sweep": self.name, "block": self.block.name, "technology": self.tech.name,
            "technology_fingerprint": self.tech.fingerprint(), "params": self.params,
            "options": self.options}, default=str, sort_keys=True))


@dataclass(frozen=True)
class JobSpec:
    """The part of a :class:`SweepSpec` that :func:`charact.sweep.run_job` reads."""

    name: str
    block: Block
    tech: Technology
    params: dict[str, float]
    options: dict[str, Any]
    timeout: float = 600.0


def _axis(name: str, value: Any, where: str) -> list:
    if isinstance(value, dict):
        keys = set(value)
        if not {"start", "stop"} <= keys or not keys <= {"start", "stop", "step", "num"} \
                or len(keys) != 3:
            raise UserError(f"{where}: range for {name!r} needs start, stop and step or num")
        try:
            start, stop = float(value["start"]), float(value["stop"])
            if "num" in value:
                num = int(value["num"])
            else:
                step = float(value["step"])
                if step <= 0:
                    raise UserError(f"{where}: step of {name!r} must be positive")
                num = int((stop - start) / step + 1.5)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{where}: range for {name!r} must hold numbers") from None
        if not (math.isfinite(start) and math.isfinite(stop)) or not 0 < num <= MAX_AXIS:
            raise UserError(f"{where}: range for {name!r} must be finite and hold 1 to "
                            f"{MAX_AXIS} values")
        vals = np.linspace(start, stop, num) if "num" in value \
            else np.arange(start, stop + step / 2, step)
        return [round(float(v), 12) for v in vals]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise UserError(f"{where}: {name!r} is an empty list")
    if name == "corner":
        if not all(isinstance(v, str) for v in values):
            raise UserError(f"{where}: corner names must be strings")
        return list(values)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v) for v in values):
        raise UserError(f"{where}: {name!r} must be finite numbers")
    return [float(v) for v in values]


def job_key(spec_identity: dict[str, Any]) -> str:
    blob = json.dumps(spec_identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def parse_spec(data: dict[str, Any], where: str = "spec", path: Path | None = None,
               simulator_version: str = "",
               on_size: Callable[[int], None] | None = None) -> SweepSpec:
    """Check a spec dictionary and expand it into jobs. Raises UserError on any problem.

    ``on_size``, if given, is called with the number of jobs once every field is checked
    and before the jobs are expanded (expanding 10^6 jobs takes most of a minute), so a
    caller can say how large the sweep is.
    """
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise UserError(f"{where}: unknown section(s) or field(s) {', '.join(unknown)}")
    if data.get("schema") != SCHEMA:
        raise UserError(f"{where}: schema must be {SCHEMA!r}, got {data.get('schema')!r}")
    for key in ("name", "block", "technology"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise UserError(f"{where}: missing or empty field {key!r}")
    name = data["name"]
    # the name is a folder name (results/<name>): ".", ".." or a hidden name would not be
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise UserError(f"{where}: name {name!r} may hold only letters, digits, - _ . "
                        "and may not start with '.'")
    block = get_block(data["block"])
    tech_ref = data["technology"]
    if path is not None and tech_ref.endswith(".toml") and not Path(tech_ref).is_absolute():
        tech_ref = str((path.parent / tech_ref).resolve())
    tech = load_technology(tech_ref)
    for section in ("params", "conditions", "montecarlo", "measure", "run"):
        if section in data and not isinstance(data[section], dict):
            raise UserError(f"{where}: [{section}] must be a table")
    params = block.check_params(dict(data.get("params", {})), tech)
    cond = dict(data.get("conditions", {}))
    axes: dict[str, list] = {}
    axes["corner"] = _axis("corner", cond.pop("corner", list(tech.corners)[:1]), where)
    axes["vdd"] = _axis("vdd", cond.pop("vdd", tech.vdd_nominal), where)
    axes["temp"] = _axis("temp", cond.pop("temp", tech.temp_nominal), where)
    for cname, default in block.conditions.items():
        axes[cname] = _axis(cname, cond.pop(cname, default), where)
    if cond:
        raise UserError(
            f"{where}: unknown condition(s) {', '.join(sorted(cond))} for block {block.name}; "
            f"known: {', '.join(_PVT + tuple(block.conditions))}"
        )
    mc = dict(data.get("montecarlo", {}))
    samples, seed = mc.pop("samples", 0), mc.pop("seed", 1)
    if mc:
        raise UserError(f"{where}: unknown [montecarlo] field(s) {', '.join(sorted(mc))}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise UserError(f"{where}: [montecarlo] samples must be a non-negative integer")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise UserError(f"{where}: [montecarlo] seed must be an integer >= 0")
    if samples and tech.mismatch.method == "none":
        raise UserError(f"{where}: technology {tech.name!r} has no mismatch description")
    options = block.check_options(dict(data.get("measure", {})))
    run = dict(data.get("run", {}))
    timeout = run.pop("timeout", 600)
    if run:
        raise UserError(f"{where}: unknown [run] field(s) {', '.join(sorted(run))}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise UserError(f"{where}: [run] timeout must be a positive number of seconds")

    spec = SweepSpec(path=path, raw=data, name=name, block=block, tech=tech, params=params,
                     axes=axes, samples=samples, seed=seed, options=options,
                     timeout=float(timeout), description=str(data.get("description", "")))
    identity = {
        "block": block.name, "block_version": block.version,
        "templates": [t.sha256 for t in block.load_templates(tech)],
        "mismatch_stream": STREAM_VERSION,
        "tech": tech.fingerprint(), "params": params, "options": options,
        "simulator": simulator_version,
    }
    names = list(axes)
    n_jobs = math.prod(len(v) for v in axes.values()) * max(samples, 1)
    if n_jobs > MAX_JOBS:
        raise UserError(f"{where}: the sweep has {n_jobs} jobs, more than {MAX_JOBS}; "
                        "split it into several specs")
    if on_size is not None:
        on_size(n_jobs)
    index = 0
    for combo in itertools.product(*(axes[n] for n in names)):
        values = dict(zip(names, combo, strict=True))
        conditions = {n: values[n] for n in names[3:]}
        for sample in (range(samples) if samples else [-1]):
            # A sample is a die of the stream ``seed``: its key holds the point's values
            # and the die, never a position, so a sub-spec reuses a larger spec's jobs.
            point = Point(values["corner"], values["vdd"], values["temp"],
                          seed if sample >= 0 else None, max(sample, 0))
            check_point(tech, point)
            key = job_key({**identity, "point": point.__dict__, "conditions": conditions})
            spec.jobs.append(Job(index, point, conditions, sample, key))
            index += 1
    return spec


def load_spec(path: str | Path, simulator_version: str = "") -> SweepSpec:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file") from None
    return parse_spec(data, where=str(p), path=p, simulator_version=simulator_version)
