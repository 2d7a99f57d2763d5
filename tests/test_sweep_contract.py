"""The sweep-folder contract: every block gives each column a unit, the manifest records
the technology's nominal conditions and the units, and one reader (``read_sweep``)
serves the later stages, refusing in one line what they cannot use."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charact.blocks import BLOCKS, get_block
from charact.cli import main
from charact.errors import UserError
from charact.provenance import write_table
from charact.runner import RunResult
from charact.spec import parse_spec
from charact.tables import SweepTable, read_sweep

SPEC = """
schema = "charact.sweep/1"
name = "contract"
block = "sense_amp"
technology = "freepdk45"
[conditions]
corner = ["NOM"]
vdd = [0.9, 1.0]
temp = [27]
vcm = [0.4]
[montecarlo]
samples = 3
seed = 3
[measure]
delta_v = [1e-3, 1e-2, 1e-1]
delay_ref = 1e-2
"""


class FakeSim:
    """Answers every sense-amplifier deck from its text: decisions flip at 5 mV."""

    name = "fake"

    def version(self) -> str:
        return "fake"

    def run(self, deck, workdir, timeout=0.0, raw=False):
        if deck.name == "kickback":
            return RunResult(True, {"inp_max": 0.41, "inp_min": 0.4, "inn_max": 0.4,
                                    "inn_min": 0.39})
        lines = deck.text.splitlines()

        def levels(prefix: str) -> list[float]:
            line = next(ln for ln in lines if ln.startswith(prefix))
            nums = [float(x) for x in line[line.index("(") + 1:line.rindex(")")].split()]
            return nums[1::2][::2]  # (t, v) pairs; each level is held by two points

        dv = np.array(levels("vinp")) - np.array(levels("vinn"))
        measures = {}
        for i, d in enumerate(dv):
            measures[f"dec{i}"] = 1.0 if d > 0.005 else 0.0
            measures[f"td{i}"] = 1e-10 * (1 + i)
            measures[f"q{i}"] = -1e-14
        return RunResult(True, measures)


@pytest.fixture(scope="module")
def sa_sweep(tmp_path_factory) -> Path:
    """A small sense-amplifier sweep made with the fake simulator (no ngspice)."""
    import charact.sweep as sweep_mod

    out = tmp_path_factory.mktemp("contract") / "sa"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep_mod, "make_simulator", lambda backend: FakeSim())
        res = sweep_mod.run_sweep(parse_spec(tomllib.loads(SPEC)), out, n_jobs=1,
                                  progress=False)
    assert res.failed == 0
    return out


def _one_line(exc: pytest.ExceptionInfo, text: str) -> None:
    msg = str(exc.value)
    assert text in msg and "\n" not in msg, msg


# -- units declared by the blocks ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_registered_block_gives_each_column_a_unit(name):
    block = get_block(name)
    missing = [c for c in block.columns if not block.unit(c)]
    assert not missing, f"{name}: no unit for {missing}"
    assert not set(block.units) - set(block.columns) - set(block.conditions)
    assert all(isinstance(u, str) and u for u in block.units.values())


def test_columns_named_by_pattern_have_units():
    sa = get_block("sense_amp")
    cols = sa.delay_columns(sa.options)
    assert cols and all(sa.unit(c) == "s" for c in cols)
    assert sa.unit("vcm") == "V" and sa.unit("no_such_column") == ""
    cell = get_block("ima_cell")
    assert [cell.unit(f"dv_u{n}") for n in cell.options["pulse_units"][:3]] == ["V"] * 3
    assert cell.unit("dv_uX") == ""
    assert get_block("ima_column_composed").units == get_block("ima_column").units


# -- the manifest ---------------------------------------------------------------------------

def test_manifest_records_nominal_conditions_and_units(sa_sweep):
    from charact.provenance import read_parquet_provenance

    man = json.loads((sa_sweep / "manifest.json").read_text())
    assert man["technology"]["vdd_nominal"] == 1.0
    assert man["technology"]["temp_nominal"] == 27.0
    units = man["units"]
    assert units["vdd"] == "V" and units["temp"] == "degC" and units["vcm"] == "V"
    assert {units[c] for c in ("offset", "kickback")} == {"V"}
    assert {units[c] for c in ("delay", "t0", "tau")} == {"s"} and units["energy"] == "J"
    # the per-delta_v columns of this spec, named by pattern
    assert units["delay_dv1mV"] == units["delay_dv100mV"] == "s"
    table = pd.read_parquet(sa_sweep / "table.parquet")
    assert "delay_dv10mV" in table.columns
    assert read_parquet_provenance(sa_sweep / "table.parquet")["units"] == units


def test_read_sweep_gives_the_typed_contract(sa_sweep):
    st = read_sweep(sa_sweep, need_columns=("offset", "delay"), block="sense_amp")
    assert isinstance(st, SweepTable)
    assert st.path == sa_sweep / "table.parquet" and st.folder == sa_sweep
    assert st.block == "sense_amp" and st.technology == "freepdk45"
    assert st.vdd_nominal == 1.0 and st.temp_nominal == 27.0
    assert st.unit("delay") == "s" and st.unit("corner") == ""
    assert len(st.table) == 2 * 3 and st.manifest["sweep"] == "contract"
    # the table file itself reads the same, manifest included
    again = read_sweep(sa_sweep / "table.parquet", block=("sense_amp", "topk_digital"))
    assert again.units == st.units and again.block == "sense_amp"


def test_a_folder_without_the_new_manifest_fields_still_reads(tmp_path):
    table = pd.DataFrame({"corner": "NOM", "vdd": [1.0] * 4, "temp": 27.0,
                          "status": "ok", "delay": [1e-10, 2e-10, 3e-10, 4e-10]})
    table.to_parquet(tmp_path / "table.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"block": {"name": "sense_amp"}, "technology": {"name": "freepdk45"}}))
    st = read_sweep(tmp_path, block="sense_amp")
    assert st.vdd_nominal is None and st.temp_nominal is None and st.units == {}
    # a hand-made table: no manifest, no block recorded, accepted by any caller
    bare = tmp_path / "bare"
    bare.mkdir()
    table.to_csv(bare / "table.csv", index=False)
    st = read_sweep(bare, block="ima_column")
    assert st.block is None and st.manifest == {} and st.units == {}
    assert st.path.name == "table.csv"


# -- refusals, one line each ----------------------------------------------------------------

def _folder(tmp_path: Path, manifest: str | None = None, table: bytes | None = None,
            name: str = "table.parquet") -> Path:
    d = tmp_path / "sweep"
    d.mkdir()
    if table is None:
        pd.DataFrame({"corner": ["NOM"], "vdd": [1.0], "temp": [27.0],
                      "status": ["ok"]}).to_parquet(d / name)
    else:
        (d / name).write_bytes(table)
    if manifest is not None:
        (d / "manifest.json").write_text(manifest)
    return d


@pytest.mark.parametrize("case,text", [
    ("missing", "sweep table not found"),
    ("no_table", "no table.parquet (or table.csv)"),
    ("bad_parquet", "unreadable Parquet table"),
    ("bad_csv", "unreadable CSV table"),
    ("bad_manifest", "unreadable manifest"),
    ("manifest_list", "the manifest must be a JSON object"),
    ("no_manifest", "no manifest.json"),
    ("no_column", "no column code, code_ideal"),
    ("wrong_block", "made by block sense_amp, not usable as sweep table (needs block "
                    "ima_column or ima_column_composed)"),
])
def test_read_sweep_refuses_in_one_line(tmp_path, case, text):
    kwargs: dict = {}
    if case == "missing":
        path = tmp_path / "absent"
    elif case == "no_table":
        path = tmp_path
    elif case == "bad_parquet":
        path = _folder(tmp_path, "{}", b"PAR1 not really")
    elif case == "bad_csv":
        path = _folder(tmp_path, "{}", b"a,b\n1,2,3,4\n\x00\xff", name="table.csv")
    elif case == "bad_manifest":
        path = _folder(tmp_path, "{")
    elif case == "manifest_list":
        path = _folder(tmp_path, "[]")
    elif case == "no_manifest":
        path, kwargs = _folder(tmp_path), {"need_manifest": True}
    elif case == "no_column":
        path, kwargs = _folder(tmp_path, "{}"), {"need_columns": ("code", "code_ideal")}
    else:
        path = _folder(tmp_path, json.dumps({"block": {"name": "sense_amp"}}))
        kwargs = {"block": ("ima_column", "ima_column_composed")}
    with pytest.raises(UserError) as exc:
        read_sweep(path, **kwargs)
    _one_line(exc, text)


def _column_table(seed: int, vdds=(1.0,)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ideal = np.tile(np.arange(32), 20 * len(vdds))
    return pd.DataFrame({
        "corner": "NOM", "vdd": np.repeat(vdds, 32 * 20), "temp": 27.0, "status": "ok",
        "mac_ideal": ideal * 7, "code_ideal": ideal,
        "code": np.clip(ideal + np.round(rng.normal(0, 0.7, ideal.size)), 0, 31)})


def test_callers_refuse_a_sweep_of_the_wrong_block(tmp_path, capsys):
    from charact.column.calibration import load_calibration_table
    from charact.column.errortable import load_sweep_table

    spice, composed = tmp_path / "spice", tmp_path / "composed"
    write_table(_column_table(0), spice / "table.parquet", {"block": {"name": "ima_column"}})
    write_table(_column_table(1), composed / "table.parquet",
                {"block": {"name": "ima_column_composed"}})
    out = tmp_path / "report.md"
    assert main(["hier-validate", "--spice", str(spice), "--composed", str(composed),
                 "-o", str(out)]) == 0
    capsys.readouterr()
    # swapped: each side is the other block
    assert main(["hier-validate", "--spice", str(composed), "--composed", str(spice),
                 "-o", str(tmp_path / "swapped.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("charact: error:") and err.count("\n") == 1
    assert "made by block ima_column_composed" in err and "needs block ima_column)" in err
    assert not (tmp_path / "swapped.md").exists()
    # both column blocks make error tables; a calibration table is no column sweep
    assert len(load_sweep_table(composed)[0]) == 32 * 20
    with pytest.raises(UserError) as exc:
        load_calibration_table(spice)
    _one_line(exc, "made by block ima_column, not usable as calibration table")


def test_caller_messages_are_kept(tmp_path):
    from charact.column.calibration import load_calibration_table
    from charact.column.errortable import load_sweep_table
    from charact.lookup.fit import load_sweep

    with pytest.raises(UserError) as exc:
        load_calibration_table(tmp_path / "cal")
    _one_line(exc, "calibration table not found")
    with pytest.raises(UserError) as exc:
        load_sweep(tmp_path / "nope")
    _one_line(exc, "sweep folder not found")
    write_table(pd.DataFrame({"corner": ["NOM"], "status": ["ok"]}),
                tmp_path / "t" / "table.parquet", {"sweep": "t"})
    with pytest.raises(UserError) as exc:
        load_sweep_table(tmp_path / "t")
    _one_line(exc, "not usable as column sweep table: no column")


# -- fitted models carry the units and the nominal supply -----------------------------------

def test_a_model_fitted_from_a_sweep_has_units(sa_sweep, tmp_path, capsys):
    from charact.lookup.export import load_model

    out = tmp_path / "sa.json"
    assert main(["fit", str(sa_sweep), "-o", str(out)]) == 0
    model = load_model(out)
    assert model.units, "the model's units are empty"
    assert model.units["delay"] == "s" and model.units["offset"] == "V"
    assert model.units["energy"] == "J" and model.units["delay_dv1mV"] == "s"
    assert set(model.units) <= set(model.names)


def test_the_code_error_nominal_is_the_technologys_vdd(tmp_path):
    from charact.lookup.export import load_model

    man = {"block": {"name": "ima_column"},
           "technology": {"name": "freepdk45", "vdd_nominal": 1.0, "temp_nominal": 27.0}}
    d = tmp_path / "col"
    d.mkdir()
    _column_table(2, vdds=(0.8, 0.9, 1.0)).to_parquet(d / "table.parquet")
    (d / "manifest.json").write_text(json.dumps(man))
    assert main(["fit", str(d), "-o", str(tmp_path / "m.json")]) == 0
    assert load_model(tmp_path / "m.json").nominal == ("NOM", 1.0, 27.0)
    # without it (an old manifest) the median VDD is the nominal point
    (d / "manifest.json").write_text(json.dumps({"block": {"name": "ima_column"}}))
    assert main(["fit", str(d), "-o", str(tmp_path / "old.json")]) == 0
    assert load_model(tmp_path / "old.json").nominal == ("NOM", 0.9, 27.0)
