"""The spec and technology parsers, fuzzed: whatever they are given, they either accept it
or raise UserError (a one-line message), never another exception."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from charact.errors import UserError
from charact.spec import parse_spec
from charact.tech import load_technology, technology_files

VALID_SPEC = {
    "schema": "charact.sweep/1", "name": "fz", "block": "sense_amp",
    "technology": "freepdk45", "params": {"w_in": 1e-6},
    "conditions": {"corner": ["NOM"], "vdd": [1.0], "temp": [27], "vcm": [0.4]},
    "montecarlo": {"samples": 2, "seed": 1},
    "measure": {"delta_v": [1e-3, 1e-2], "delay_ref": 1e-2}, "run": {"timeout": 10},
}
VALID_TECH = tomllib.loads(technology_files()["freepdk45"].read_text())

# TOML-like values: what a spec or technology file can hold.
scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["NOM", "SS", "pkg:", "pkg:x/y", "\x00.toml", ".toml", "nfet",
                              "sense_amp", "freepdk45", "M", "X", "pelgrom", "native"]))
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


def accepts_or_user_error(fn, *args) -> None:
    # Any other exception fails the test. (Messages quote names from the file as given,
    # so a key holding a newline prints on two lines: still no traceback.)
    try:
        fn(*args)
    except UserError as exc:
        assert str(exc).strip(), "a UserError must say what is wrong"


FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(VALID_SPEC) + ["x"]), values, max_size=8))
def test_parse_spec_arbitrary_dicts(data):
    accepts_or_user_error(parse_spec, data)


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
    accepts_or_user_error(parse_spec, mutate(VALID_SPEC, data))


# Found by this fuzzer once, kept as fixed cases: ranges with an infinite or enormous
# number of values, non-finite values and timeouts, a sweep of 10^7 jobs.
@pytest.mark.parametrize("path,value", [
    (("conditions", "vdd"), {"start": 1, "stop": 2, "num": float("inf")}),
    (("conditions", "vdd"), {"start": 1, "stop": 2, "num": 10**12}),
    (("conditions", "vdd"), {"start": 1, "stop": 2, "step": 1e-300}),
    (("conditions", "vdd"), [float("inf")]),
    (("run", "timeout"), float("nan")),
    (("montecarlo", "samples"), 10**7),
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
