"""The spec and technology parsers, fuzzed: whatever they are given, they either accept it
or raise UserError (a one-line message), never another exception; and whatever the spec
parser accepts is valid (finite positive supplies, temperatures in range, seeds >= 0,
finite options, a results-folder name that stays in its folder)."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from charact.blocks.options import check_spice_options
from charact.errors import UserError
from charact.spec import SweepSpec, parse_spec
from charact.tech import load_technology, technology_files

VALID_SPEC = {
    "schema": "charact.sweep/1", "name": "fz", "block": "sense_amp",
    "technology": "freepdk45", "params": {"w_in": 1e-6},
    "conditions": {"corner": ["NOM"], "vdd": [1.0], "temp": [27], "vcm": [0.4]},
    "montecarlo": {"samples": 2, "seed": 1},
    "measure": {"delta_v": [1e-3, 1e-2], "delay_ref": 1e-2}, "run": {"timeout": 10},
}
VALID_TECH = tomllib.loads(technology_files()["freepdk45"].read_text())

# TOML-like values: what a spec or technology file can hold, with the values that have
# slipped through before drawn often: negative seeds, NaN and infinities, names that
# leave their folder, ngspice options that are not.
scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from([-1, -2**63, 2**63, 0, -0.0, float("nan"), float("inf"),
                              float("-inf"), -1e-300, 1e308])
           | st.sampled_from(["NOM", "SS", "pkg:", "pkg:x/y", "\x00.toml", ".toml", "nfet",
                              "sense_amp", "freepdk45", "M", "X", "pelgrom", "native",
                              ".", "..", "../x", "a/b", ".hidden", "bogus=1",
                              "reltol=nan", "reltol=-1", "reltol=1e-5"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
RANGE = st.fixed_dictionaries({"start": scalars, "stop": scalars},
                              optional={"step": scalars, "num": scalars})


def paths(d: dict, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from paths(v, prefix + (k,))


def mutate(base: dict, data) -> dict:
    """``base`` with a few fields replaced, removed or added at random."""
    out = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(paths(out)) or [("x",)]))
        parent = out
        for k in where[:-1]:
            parent = parent[k] if isinstance(parent.get(k), dict) else {}
        action = data.draw(st.sampled_from(["set", "del", "range", "add"]))
        if action == "del":
            parent.pop(where[-1], None)
        elif action == "range":
            parent[where[-1]] = data.draw(RANGE)
        elif action == "add":
            parent[data.draw(st.text(max_size=6))] = data.draw(values)
        else:
            parent[where[-1]] = data.draw(values)
    return out


def accepts_or_user_error(fn, *args) -> Any:
    # Any other exception fails the test. (Messages quote names from the file as given,
    # so a key holding a newline prints on two lines: still no traceback.)
    try:
        return fn(*args)
    except UserError as exc:
        assert str(exc).strip(), "a UserError must say what is wrong"
        return None


def _numbers(value: Any):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)


def assert_valid(spec: SweepSpec) -> None:
    """What an accepted spec must be: "accepted" may never mean garbage let through."""
    name = spec.name
    assert name and not name.startswith(".") and "/" not in name and "\\" not in name
    assert all(c.isalnum() or c in "-_." for c in name)
    assert isinstance(spec.seed, int) and spec.seed >= 0
    assert isinstance(spec.samples, int) and spec.samples >= 0
    assert math.isfinite(spec.timeout) and spec.timeout > 0
    assert spec.jobs, "an accepted spec has at least one job"
    for job in spec.jobs:
        p = job.point
        assert math.isfinite(p.vdd) and p.vdd > 0, p
        assert math.isfinite(p.temp) and -273.15 < p.temp < 400, p
        assert p.seed is None or (p.seed >= 0 and p.die >= 0), p
        assert all(math.isfinite(v) for v in _numbers(job.conditions)), job.conditions
    assert all(math.isfinite(x) for x in _numbers(spec.params)), spec.params
    assert all(math.isfinite(x) for x in _numbers(spec.options)), spec.options
    words = spec.options.get("spice_options")
    if words is not None:
        assert check_spice_options(words) is None, words


def accepted_is_valid(data: dict) -> None:
    spec = accepts_or_user_error(parse_spec, data)
    if spec is not None:
        assert_valid(spec)


FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(VALID_SPEC) + ["x"]), values, max_size=8))
def test_parse_spec_arbitrary_dicts(data):
    accepted_is_valid(data)


def _with(path: tuple, value) -> dict:
    spec = copy.deepcopy(VALID_SPEC)
    parent = spec
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return spec


@FUZZ
@given(st.data())
def test_parse_spec_mutated_valid_spec(data):
    accepted_is_valid(mutate(VALID_SPEC, data))


# The fields an accepted spec's validity rests on, each given the values that once got
# through or could: the property is checked on every one, not left to chance.
@FUZZ
@given(st.sampled_from([("montecarlo", "seed"), ("montecarlo", "samples"), ("name",),
                        ("conditions", "vdd"), ("conditions", "temp"), ("conditions", "vcm"),
                        ("measure", "delay_ref"), ("measure", "spice_options"),
                        ("run", "timeout"), ("params", "w_in")]), values)
def test_parse_spec_key_fields_accept_only_valid_values(path, value):
    accepted_is_valid(_with(path, value))


# Found by this fuzzer once, kept as fixed cases: ranges with an infinite or enormous
# number of values, non-finite values and timeouts, a sweep of 10^7 jobs.
@pytest.mark.parametrize("path,value", [
    (("conditions", "vdd"), {"start": 1, "stop": 2, "num": float("inf")}),
    (("conditions", "vdd"), {"start": 1, "stop": 2, "num": 10**12}),
    (("conditions", "vdd"), {"start": 1, "stop": 2, "step": 1e-300}),
    (("conditions", "vdd"), [float("inf")]),
    (("run", "timeout"), float("nan")),
    (("montecarlo", "samples"), 10**7),
    (("montecarlo", "seed"), -1),
    (("conditions", "temp"), [float("nan")]),
    (("conditions", "vdd"), [-1.0]),
    (("name",), ".."),
    (("measure", "spice_options"), ["bogus=1"]),
    (("measure", "spice_options"), ["reltol=nan"]),
])
def test_parse_spec_found_cases_are_user_errors(path, value):
    with pytest.raises(UserError):
        parse_spec(_with(path, value))


def _toml(value) -> str:
    """A TOML rendering of a dict of the values above (enough for fuzzing)."""
    import json
    import math

    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") \
                if math.isinf(v) else repr(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(lit(x) for x in v if x is not None) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {lit(x)}" for k, x in v.items()
                                   if x is not None) + "}"
        return '""'

    return "\n".join(f"{json.dumps(k)} = {lit(v)}" for k, v in value.items()
                     if v is not None) + "\n"


@FUZZ
@given(st.data())
def test_load_technology_mutated_valid_file(tmp_path_factory, data):
    path = Path(tmp_path_factory.mktemp("tech")) / "t.toml"
    path.write_text(_toml(mutate(VALID_TECH, data)))
    accepts_or_user_error(load_technology, str(path))


@example(b"\x80")
@example(b'name = "t"\nmodel_lib = "\\u0000.spi"\nvdd_nominal = 1.0')
@example(b'name = "t"\nmodel_lib = "pkg:/x"\nvdd_nominal = 1.0')
@example(b'name = "t"\nmodel_lib = "~nosuchuser/x"\nvdd_nominal = 1.0')
@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=300).map(str.encode))
def test_load_technology_arbitrary_file(tmp_path_factory, blob):
    path = Path(tmp_path_factory.mktemp("tech")) / "t.toml"
    path.write_bytes(blob)
    accepts_or_user_error(load_technology, str(path))


@example("~0")
@example("\x00.toml")
@example("~nosuchuser/t.toml")
@FUZZ
@given(st.text(max_size=40))
def test_load_technology_arbitrary_name(name):
    accepts_or_user_error(load_technology, name)
