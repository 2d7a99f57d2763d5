"""Typed [measure] options: every block declares them as a frozen dataclass of documented
fields; a value that would fail every job (NaN, inf, negative, zero counts, wrong types,
empty lists, inconsistent timings) is refused in one line naming the field; the defaults,
and so the job keys, are those the blocks always had."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import tomllib
import typing
from pathlib import Path

import pytest

from charact import cli
from charact.blocks import BLOCKS, get_block
from charact.blocks.options import check_values, option_fields
from charact.errors import UserError
from charact.spec import parse_spec

REPO = Path(__file__).resolve().parent.parent
NAN, INF = math.nan, math.inf


def spec(block: str, measure: dict) -> dict:
    """A minimal spec: one nominal job of ``block`` with ``measure``."""
    return {"schema": "charact.sweep/1", "name": "opts", "block": block,
            "technology": "freepdk45", "measure": measure}


def refused(block: str, measure: dict) -> str:
    with pytest.raises(UserError) as exc:
        parse_spec(spec(block, measure))
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# -- defaults ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_the_defaults_validate_and_are_the_options_dict(name):
    block = get_block(name)
    assert dataclasses.is_dataclass(block.Options)
    assert block.check_options({}) == block.options
    check_values(block.Options, block.options)
    assert dataclasses.asdict(block.Options()) == block.options
    for o in option_fields(block.Options):
        assert o.constraint.doc.strip() and "\n" not in o.constraint.doc, o.name
    assert parse_spec(spec(name, {})).options == block.options


# The options part of every job key: a changed default or name changes every key of the
# block, so it must be deliberate (bump the pin with the block's version).
DEFAULTS_SHA = {
    "sense_amp": "b3a6bbe195084324",
    "topk_digital": "dab624e0f5bce250",
    "ima_column": "b0be97ae1b1ff93d",
    "ima_calibration": "38311eb6ae8aa450",
    "ima_cell": "8c8d560584daa340",
    "ima_cell_mc": "c5b7e13658a7c91c",
    "ima_column_composed": "304a71ddf337ee5f",
    "gc_multiply": "978031f8c6f5198f",
    "gc_retention": "ada9c1a9eebce227",
    "gc_readout": "813516044869655c",
    "gc_write": "1d8588636fc60115",
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_default_names_values_and_types_are_pinned(name):
    blob = json.dumps(get_block(name).options, sort_keys=True).encode()
    assert hashlib.sha256(blob).hexdigest()[:16] == DEFAULTS_SHA[name]


def test_shared_option_groups_are_inherited_not_copied():
    from charact.column.blocks import ImaColumnOptions
    from charact.column.cells import CELL_OPTIONS, CellOptions
    from charact.column.composed_blocks import CellMCOptions, ComposedOptions
    from charact.column.design import DESIGN_OPTIONS, DesignOptions

    assert issubclass(ImaColumnOptions, DesignOptions)
    assert issubclass(CellMCOptions, DesignOptions) and issubclass(CellMCOptions, CellOptions)
    assert issubclass(ComposedOptions, ImaColumnOptions)
    assert issubclass(ComposedOptions, CellOptions)
    assert get_block("ima_calibration").Options is DesignOptions
    assert get_block("ima_calibration").options == DESIGN_OPTIONS
    assert set(CELL_OPTIONS) <= set(get_block("ima_cell_mc").options)
    # the composed block keeps its own calibration default
    assert get_block("ima_column_composed").options["calibration"] == "model"
    assert get_block("ima_column").options["calibration"] == "inline"


# -- bad values --------------------------------------------------------------------------------

# (block, [measure], the field the one-line message must name)
BAD = [
    # sense_amp
    ("sense_amp", {"t_clk": NAN}, "t_clk"),
    ("sense_amp", {"t_clk": INF}, "t_clk"),
    ("sense_amp", {"t_clk": -4e-9}, "t_clk"),
    ("sense_amp", {"t_clk": 0}, "t_clk"),
    ("sense_amp", {"t_clk": "4n"}, "t_clk"),
    ("sense_amp", {"t_clk": True}, "t_clk"),
    ("sense_amp", {"fine_steps": 0}, "fine_steps"),
    ("sense_amp", {"fine_steps": -2}, "fine_steps"),
    ("sense_amp", {"fine_steps": 16.0}, "fine_steps"),
    ("sense_amp", {"fine_steps": 2.5}, "fine_steps"),
    ("sense_amp", {"delta_v": [NAN], "delay_ref": NAN}, "delta_v"),
    ("sense_amp", {"delta_v": [NAN]}, "delta_v"),
    ("sense_amp", {"delta_v": [INF]}, "delta_v"),
    ("sense_amp", {"delta_v": []}, "delta_v"),
    ("sense_amp", {"delta_v": [1e-3, -1e-3]}, "delta_v"),
    ("sense_amp", {"delta_v": 1e-2}, "delta_v"),
    ("sense_amp", {"delta_v": [1e-2, "1m"]}, "delta_v"),
    ("sense_amp", {"delay_ref": NAN}, "delay_ref"),
    ("sense_amp", {"delay_ref": 0.5}, "delay_ref"),  # not one of delta_v
    ("sense_amp", {"offset_range": 0}, "offset_range"),
    ("sense_amp", {"coarse_step": INF}, "coarse_step"),
    ("sense_amp", {"coarse_step": 0.1}, "coarse_step"),  # above offset_range
    ("sense_amp", {"c_bl": -1e-15}, "c_bl"),
    ("sense_amp", {"tstep": NAN}, "tstep"),
    ("sense_amp", {"tstep": 1e-9}, "tstep"),  # not below t_clk / 10
    ("sense_amp", {"t_edge": 1e-9}, "t_edge"),
    ("sense_amp", {"spice_options": "reltol=1e-5"}, "spice_options"),
    ("sense_amp", {"spice_options": [1]}, "spice_options"),
    # topk_digital
    ("topk_digital", {"t_event": INF}, "t_event"),
    ("topk_digital", {"t_event": NAN}, "t_event"),
    ("topk_digital", {"t_event": 0}, "t_event"),
    ("topk_digital", {"t_clk_count": -INF}, "t_clk_count"),
    ("topk_digital", {"n_inputs": 0}, "n_inputs"),
    ("topk_digital", {"n_inputs": 12}, "n_inputs"),  # not a power of two
    ("topk_digital", {"n_inputs": 256.0}, "n_inputs"),
    ("topk_digital", {"k": 0}, "k"),
    ("topk_digital", {"k": 14}, "k"),
    ("topk_digital", {"k": True}, "k"),
    ("topk_digital", {"prune": 1}, "prune"),
    ("topk_digital", {"prune": "yes"}, "prune"),
    ("topk_digital", {"c_out": -1e-15}, "c_out"),
    ("topk_digital", {"c_out": NAN}, "c_out"),
    ("topk_digital", {"tmax": -1}, "tmax"),
    ("topk_digital", {"tstep": 0}, "tstep"),
    ("topk_digital", {"t_edge": 1e-9}, "t_edge"),  # not below t_clk_count / 10
    # ima_column (the design options and the conversions)
    ("ima_column", {"n_cols": 0}, "n_cols"),
    ("ima_column", {"n_cols": -1}, "n_cols"),
    ("ima_column", {"n_dims": 0}, "n_dims"),
    ("ima_column", {"n_dims": 513}, "n_dims"),
    ("ima_column", {"n_dims": 16.0}, "n_dims"),
    ("ima_column", {"t_clk": NAN}, "t_clk"),
    ("ima_column", {"t_clk": INF}, "t_clk"),
    ("ima_column", {"t_unit": 0}, "t_unit"),
    ("ima_column", {"t_edge": INF}, "t_edge"),
    ("ima_column", {"t_edge": 1e-9}, "t_edge"),  # not below t_clk / 10 nor t_unit
    ("ima_column", {"t_edge": 0.3e-9, "t_unit": 0.2e-9}, "t_edge"),
    ("ima_column", {"tmax": NAN}, "tmax"),
    ("ima_column", {"t_step_nom": INF}, "t_step_nom"),
    ("ima_column", {"vdd_sram": NAN}, "vdd_sram"),
    ("ima_column", {"v_rwl": 0}, "v_rwl"),
    ("ima_column", {"v_pre": -0.5}, "v_pre"),
    ("ima_column", {"c_rbl": -1e-15}, "c_rbl"),
    ("ima_column", {"c_rbl": NAN}, "c_rbl"),
    ("ima_column", {"c_rbl_per_dim": 0}, "c_rbl_per_dim"),
    ("ima_column", {"rep_ratio": -0.5}, "rep_ratio"),
    ("ima_column", {"rep_ratio": INF}, "rep_ratio"),
    ("ima_column", {"conversions": -1}, "conversions"),
    ("ima_column", {"k": -1}, "k"),
    ("ima_column", {"k": 9}, "k"),  # more than n_cols
    ("ima_column", {"storage": "dram"}, "storage"),
    ("ima_column", {"wiring": 1}, "wiring"),
    ("ima_column", {"patterns": "random"}, "patterns"),
    ("ima_column", {"pattern_seed": -1}, "pattern_seed"),
    ("ima_column", {"mac_range": 0}, "mac_range"),
    ("ima_column", {"mac_range": 1.5}, "mac_range"),
    ("ima_column", {"mac_range": NAN}, "mac_range"),
    ("ima_column", {"mac_lo": 1.5}, "mac_lo"),
    ("ima_column", {"mac_lo": 0, "mac_hi": 10}, "mac_hi"),  # fewer MACs than codes
    ("ima_column", {"scales": [1, 2]}, "scales"),
    ("ima_column", {"scales": [1, 2, 0]}, "scales"),
    ("ima_column", {"scales": [1.0, 2, 4]}, "scales"),
    ("ima_column", {"sa_params": {"w_in": NAN}}, "sa_params"),
    ("ima_column", {"sa_params": {"w_in": "1u"}}, "sa_params"),
    ("ima_column", {"sa_params": {"w_nope": 1e-6}}, "sa_params"),  # no such parameter
    ("ima_column", {"sa_params": [1]}, "sa_params"),
    ("ima_column", {"cal_iterations": 0}, "cal_iterations"),
    ("ima_column", {"inputs": [40]}, "inputs"),
    ("ima_column", {"weights": [[8]]}, "weights"),
    ("ima_column", {"patterns": "explicit", "n_dims": 2, "n_cols": 1, "inputs": [1, 2],
                    "weights": [[1]]}, "weights"),
    ("ima_column", {"calibration": ""}, "calibration"),
    ("ima_column", {"calibration": 3}, "calibration"),
    ("ima_column", {"calibration": "/nonexistent/cal"}, "calibration"),
    ("ima_column", {"spice_options": "reltol=1e-4"}, "spice_options"),
    # ima_calibration (the design options alone)
    ("ima_calibration", {"n_dims": 0}, "n_dims"),
    ("ima_calibration", {"t_clk": NAN}, "t_clk"),
    ("ima_calibration", {"cal_iterations": 21}, "cal_iterations"),
    ("ima_calibration", {"mac_range": INF}, "mac_range"),
    # ima_cell
    ("ima_cell", {"pulse_units": [4]}, "pulse_units"),
    ("ima_cell", {"pulse_units": []}, "pulse_units"),
    ("ima_cell", {"pulse_units": [1, 0]}, "pulse_units"),
    ("ima_cell", {"pulse_units": [1, 2.5]}, "pulse_units"),
    ("ima_cell", {"storage": "lean"}, "storage"),
    ("ima_cell", {"c_rbl": 0}, "c_rbl"),
    ("ima_cell", {"t_unit": NAN}, "t_unit"),
    ("ima_cell", {"t_edge": INF}, "t_edge"),
    ("ima_cell", {"tmax": 0}, "tmax"),
    ("ima_cell", {"t_edge": 1e-9}, "t_edge"),  # longer than the shortest pulse
    # ima_cell_mc (design and cell options)
    ("ima_cell_mc", {"cell_samples": 1}, "cell_samples"),
    ("ima_cell_mc", {"cell_samples": 0}, "cell_samples"),
    ("ima_cell_mc", {"sa_samples": 2001}, "sa_samples"),
    ("ima_cell_mc", {"cell_seed": 1.5}, "cell_seed"),
    ("ima_cell_mc", {"sa_range": NAN}, "sa_range"),
    ("ima_cell_mc", {"sa_resolution": 0}, "sa_resolution"),
    ("ima_cell_mc", {"sa_resolution": 0.2}, "sa_resolution"),  # not below sa_range
    ("ima_cell_mc", {"sa_vcm": -0.1}, "sa_vcm"),
    ("ima_cell_mc", {"sa_vcm": NAN}, "sa_vcm"),
    ("ima_cell_mc", {"sa_vcm_span": 0.5}, "sa_vcm_span"),
    ("ima_cell_mc", {"sa_offset": ""}, "sa_offset"),
    ("ima_cell_mc", {"sa_offset": "/nonexistent/sa"}, "sa_offset"),
    ("ima_cell_mc", {"n_dims": 0}, "n_dims"),
    ("ima_cell_mc", {"t_clk": INF}, "t_clk"),
    # ima_column_composed (column, cell and its own options)
    ("ima_column_composed", {"mismatch_scale": NAN}, "mismatch_scale"),
    ("ima_column_composed", {"mismatch_scale": -1}, "mismatch_scale"),
    ("ima_column_composed", {"mismatch_scale": 11}, "mismatch_scale"),
    ("ima_column_composed", {"cell_models": ""}, "cell_models"),
    ("ima_column_composed", {"cell_models": 5}, "cell_models"),
    ("ima_column_composed", {"cell_models": "/nonexistent/cells"}, "cell_models"),
    ("ima_column_composed", {"calibration": ""}, "calibration"),
    ("ima_column_composed", {"n_cols": 0}, "n_cols"),
    ("ima_column_composed", {"k": 9}, "k"),
    ("ima_column_composed", {"wiring": "qb"}, "wiring"),
    ("ima_column_composed", {"sa_samples": 1}, "sa_samples"),
    ("ima_column_composed", {"t_unit": NAN}, "t_unit"),
]


@pytest.mark.parametrize("block,measure,name", BAD,
                         ids=[f"{b}-{'-'.join(f'{k}={v!r}' for k, v in m.items())}"
                              for b, m, _ in BAD])
def test_a_bad_value_is_refused_in_one_line_naming_the_field(block, measure, name):
    msg = refused(block, measure)
    assert f"[measure] {name}" in msg, msg


def test_messages_say_what_the_value_must_be():
    assert refused("sense_amp", {"t_clk": NAN}) == \
        "[measure] t_clk must be a finite number > 0, got nan"
    assert refused("sense_amp", {"fine_steps": 0}) == \
        "[measure] fine_steps must be an integer in 1..1000, got 0"
    assert refused("sense_amp", {"delta_v": [NAN]}) == \
        "[measure] delta_v must be a non-empty list of finite numbers > 0, got [nan]"
    assert refused("topk_digital", {"prune": 1}) == \
        "[measure] prune must be true or false, got 1"
    assert refused("ima_column", {"storage": "dram"}) == \
        '[measure] storage must be one of lean, ideal, 6t, got "dram"'
    assert refused("ima_column", {"scales": [1, 2]}) == \
        "[measure] scales must be a list of 3 integers > 0, got [1, 2]"


def test_unknown_option_names_keep_their_message():
    msg = refused("sense_amp", {"t_clock": 4e-9})
    assert msg.startswith("unknown [measure] option(s) t_clock for block sense_amp; known: ")


def _wrong_type(tp):
    """A TOML value that is not of type ``tp``."""
    return "text" if tp is not str else 1


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_field_refuses_a_wrong_type_and_every_number_nan_and_inf(name):
    block = get_block(name)
    for o in option_fields(block.Options):
        with pytest.raises(UserError, match=rf"\[measure\] {o.name} must be"):
            block.check_options({o.name: _wrong_type(o.type)})
        if o.type is float or o.type is int:
            for bad in (NAN, INF, -INF):
                with pytest.raises(UserError, match=rf"\[measure\] {o.name} must be"):
                    block.check_options({o.name: bad})
        if typing.get_origin(o.type) is list and typing.get_args(o.type)[0] is float:
            with pytest.raises(UserError, match=rf"\[measure\] {o.name} must be"):
                block.check_options({o.name: [NAN]})


def test_good_explicit_values_pass_unchanged():
    measure = {"t_clk": 4, "fine_steps": 8, "delta_v": [1e-3, 1e-2], "delay_ref": 1e-2}
    opts = parse_spec(spec("sense_amp", measure)).options
    assert opts["t_clk"] == 4 and isinstance(opts["t_clk"], int)  # never converted
    assert {k: opts[k] for k in measure} == measure
    opts = get_block("topk_digital").check_options({"n_inputs": 16, "c_out": 0,
                                                     "prune": False})
    assert (opts["n_inputs"], opts["c_out"], opts["prune"]) == (16, 0, False)
    opts = get_block("ima_column").check_options({"mac_lo": -64, "mac_hi": 64,
                                                   "sa_params": {"w_in": 2e-6}})
    assert (opts["mac_lo"], opts["mac_hi"]) == (-64, 64)
    # a returned dict is the job's own: changing it leaves the defaults alone
    opts["scales"].append(8)
    assert get_block("ima_column").options["scales"] == [1, 2, 4]


def test_a_bad_option_through_the_cli_is_one_line_exit_2_and_writes_nothing(
        tmp_path, charact_cmd):
    spec_file = tmp_path / "bad.toml"
    spec_file.write_text('schema = "charact.sweep/1"\nname = "bad"\nblock = "sense_amp"\n'
                         'technology = "freepdk45"\n[measure]\nt_clk = nan\n')
    # a stand-in ngspice that only answers -v: the spec is refused before any deck
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ngspice").write_text("#!/bin/sh\necho 'ngspice-99 (stand-in)'\n")
    (bin_dir / "ngspice").chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run(charact_cmd + ["sweep", str(spec_file), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PATH=str(bin_dir)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("charact: error: [measure] t_clk must be a finite number > 0, "
                           "got nan\n")
    assert not out.exists() and not (tmp_path / "results").exists()


# -- the reference table -----------------------------------------------------------------------

def test_charact_blocks_lists_the_blocks(capsys):
    assert cli.main(["blocks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(BLOCKS)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_charact_blocks_name_prints_every_field(name, capsys):
    assert cli.main(["blocks", name]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    block = get_block(name)
    assert [r.split("`")[1] for r in rows] == list(block.options)
    for o, row in zip(option_fields(block.Options), rows, strict=True):
        assert o.constraint.doc in row and o.text in row


def test_charact_blocks_sense_amp_table():
    from charact.commands.blocks import options_table

    table = options_table(get_block("sense_amp"))
    assert "| `fine_steps` | `16` | an integer in 1..1000 |" in table
    assert "| `delta_v` | `[0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]` | a non-empty " \
        "list of finite numbers > 0 |" in table
    assert "| `delay_ref` | `0.01` | a finite number > 0; one of delta_v |" in table


def test_charact_blocks_unknown_name_is_a_user_error(capsys):
    assert cli.main(["blocks", "nope"]) == 2
    assert capsys.readouterr().err.startswith("charact: error: unknown block 'nope'")


# -- job keys ----------------------------------------------------------------------------------

def _example_specs() -> list[tuple[Path, dict]]:
    out = []
    for p in sorted((REPO / "examples").glob("*.toml")):
        data = tomllib.loads(p.read_text())
        if data.get("schema") == "charact.sweep/1":
            out.append((p, data))
    return out


EXAMPLES = _example_specs()


@pytest.mark.parametrize("path,data", EXAMPLES, ids=[p.name for p, _ in EXAMPLES])
def test_examples_parse_and_spelled_out_defaults_keep_the_keys(path, data):
    data = copy.deepcopy(data)
    measure = data.setdefault("measure", {})
    for key in ("calibration", "cell_models"):  # results folders may not exist here
        if measure.get(key) not in (None, "inline", "model"):
            measure[key] = "inline"
    keys = [j.key for j in parse_spec(data, where=str(path), path=path).jobs]
    assert keys and len(set(keys)) == len(keys)
    # the defaults derived from the dataclass enter the key as explicit values would
    block = get_block(data["block"])
    full = copy.deepcopy(data)
    full["measure"] = {**block.options, **measure}
    assert [j.key for j in parse_spec(full, where=str(path), path=path).jobs] == keys
