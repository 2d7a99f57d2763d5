"""Bad command-line input ends in one line ``charact: error: ...``, exit status 2, nothing
written, and before any long work starts: negative seeds, non-finite model files, output
paths that cannot be written, non-finite or out-of-range numeric flags, run names that
leave their folder, unknown ngspice options, and a word on the size of a large sweep."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_lookup_cli import MANIFEST, write_column_sweep

import charact.commands.engine as engine
from charact.cli import main
from charact.errors import UserError
from charact.spec import parse_spec

REPO = Path(__file__).resolve().parent.parent
SA_SPEC = REPO / "examples" / "sense_amp.toml"


def one_line_error(capsys, *texts: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("charact: error:"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in texts:
        assert text in err, err
    return err


def small_spec(tmp_path: Path, **measure: object) -> Path:
    text = SA_SPEC.read_text()
    for key, value in measure.items():
        text = text.replace("[measure]\n", f"[measure]\n{key} = {json.dumps(value)}\n")
    path = tmp_path / "sa.toml"
    path.write_text(text)
    return path


@pytest.fixture
def model(tmp_path, capsys) -> Path:
    sweep = tmp_path / "col"
    write_column_sweep(sweep)
    path = tmp_path / "m.json"
    assert main(["fit", str(sweep), "-o", str(path)]) == 0
    capsys.readouterr()
    return path


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder nobody may write: mode 0555, and for root (whom modes do not bind) the
    answer a read-only mount gives."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access

        def access(path, mode, *a, **kw):
            if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
                return False
            return real(path, mode, *a, **kw)

        monkeypatch.setattr(os, "access", access)
    yield folder
    folder.chmod(0o755)


# -- 1. negative seeds ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["sweep", "render"])
def test_negative_seed_flag_is_refused_naming_the_flag(tmp_path, capsys, command):
    assert main([command, str(SA_SPEC), "--seed", "-1", "-o", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "--seed must be an integer >= 0, got -1")
    assert not (tmp_path / "o").exists()


def test_negative_seed_in_spec_is_refused():
    data = tomllib.loads(SA_SPEC.read_text())
    data["montecarlo"]["seed"] = -1
    with pytest.raises(UserError, match="seed must be an integer >= 0"):
        parse_spec(data)


# -- 1. model files with a literal NaN ------------------------------------------------------

def test_model_file_with_nan_is_refused_naming_file_and_field(tmp_path, capsys, model):
    text = model.read_text()
    doc = json.loads(text)
    doc["data"]["points"][0]["prob"][5][5] = float("nan")
    bad = tmp_path / "nan.json"
    bad.write_text(json.dumps(doc))  # Python writes NaN, as a hand edit might
    where = "field data.points[0].prob[5][5] holds NaN"
    assert main(["show", str(bad)]) == 2
    one_line_error(capsys, str(bad), where)
    assert main(["export", str(bad), "-o", str(tmp_path / "exp")]) == 2
    one_line_error(capsys, str(bad), where)
    assert not (tmp_path / "exp").exists()
    pytest.importorskip("torch")
    assert main(["accuracy", "--quick", "--error-model", str(bad),
                 "--out", str(tmp_path / "acc")]) == 2
    one_line_error(capsys, str(bad), where)
    assert not (tmp_path / "acc").exists()


# -- 1./2. output paths that cannot be written ----------------------------------------------

def _dir_outputs(tmp_path: Path, model: Path, target: Path) -> list[list[str]]:
    """Commands whose output ``target`` is a folder."""
    cmds = [["export", str(model), "-o", str(target)],
            ["errortable", str(tmp_path / "col"), "-o", str(target)],
            ["render", str(SA_SPEC), "-o", str(target)],
            ["demo", "-o", str(target), "--skip-accuracy"]]
    try:
        import torch  # noqa: F401
    except ImportError:
        return cmds
    return cmds + [["accuracy", "--quick", "--out", str(target)]]


def _file_outputs(tmp_path: Path, model: Path, folder: Path) -> list[list[str]]:
    """Commands that write one file, each asked to write it in ``folder``."""
    return [["fit", str(tmp_path / "col"), "-o", str(folder / "m.json")],
            ["hier-validate", "--spice", str(tmp_path), "--composed", str(tmp_path),
             "-o", str(folder / "r.md")],
            ["show", str(model), "--plot", str(folder / "p.png")]]


def test_output_file_that_is_a_folder_or_under_a_file(tmp_path, capsys, model, monkeypatch):
    import charact.lookup.fit as fitting

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit started before the output was checked")

    monkeypatch.setattr(fitting, "fit_error_model", no_fit)
    write_column_sweep(tmp_path / "col")
    where = tmp_path / "out"
    for argv in _file_outputs(tmp_path, model, where):
        Path(argv[-1]).mkdir(parents=True)  # a folder where the file goes
        assert main(argv) == 2, argv
        one_line_error(capsys, argv[-1], "is a folder, expected a file")
    plain = tmp_path / "plain"
    plain.write_text("keep")
    for argv in _file_outputs(tmp_path, model, plain):
        assert main(argv) == 2, argv
        one_line_error(capsys, f"{plain} is a file, not a folder")
    assert plain.read_text() == "keep"


def test_output_folder_that_is_a_file(tmp_path, capsys, model):
    write_column_sweep(tmp_path / "col")
    plain = tmp_path / "plain"
    plain.write_text("keep")
    for argv in _dir_outputs(tmp_path, model, plain):
        assert main(argv) == 2, argv
        one_line_error(capsys, str(plain), "is a file")
    assert plain.read_text() == "keep"


def test_outputs_in_a_read_only_folder(tmp_path, capsys, model, read_only):
    write_column_sweep(tmp_path / "col")
    argvs = _dir_outputs(tmp_path, model, read_only) + _file_outputs(tmp_path, model, read_only)
    for argv in argvs:
        assert main(argv) == 2, argv
        one_line_error(capsys, f"folder {read_only} is not writable")
    assert not any(read_only.iterdir())


# -- 1./2. accuracy flags --------------------------------------------------------------------

@pytest.mark.parametrize("flags,message", [
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--dim", "0"], "--dim must be >= 1, got 0"),
    (["--depth", "0"], "--depth must be >= 1, got 0"),
    (["--heads", "-2"], "--heads must be >= 1, got -2"),
    (["--crossbar-k", "0"], "--crossbar-k must be >= 1, got 0"),
    (["--error-k", "0"], "--error-k must be >= 1, got 0"),
    (["--softmax-warmup", "nan"], "--softmax-warmup must be in [0, 1), got nan"),
    (["--seeds", "-1"], "--seeds must be integers >= 0, got -1"),
    (["--run", "../../x"], "--run '../../x' may hold only"),
    (["--run", "a/b"], "--run 'a/b' may hold only"),
])
def test_accuracy_flags_are_checked_before_any_work(tmp_path, capsys, monkeypatch, flags,
                                                    message):
    pytest.importorskip("torch")
    import charact.attention.experiment as acc

    def no_run(*args, **kwargs):
        raise AssertionError("the accuracy run started")

    monkeypatch.setattr(acc, "run_accuracy", no_run)
    out = tmp_path / "deep" / "out"
    assert main(["accuracy", "--quick", "--out", str(out), *flags]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("flags,message", [
    (["--k", "2", "1000"], "--k 1000 is larger than the sequence length of digits "
     "(17 tokens)"),
    (["--error-k", "1000"], "--error-k 1000 is larger than the sequence length"),
    (["--crossbar-k", "18"], "--crossbar-k 18 is larger than the sequence length"),
])
def test_accuracy_k_beyond_the_sequence_length(tmp_path, capsys, monkeypatch, flags, message):
    pytest.importorskip("torch")
    import charact.attention.experiment as acc

    def no_training(*args, **kwargs):
        raise AssertionError("training was planned")

    monkeypatch.setattr(acc, "plan_jobs", no_training)
    assert main(["accuracy", "--quick", "--out", str(tmp_path / "acc"), *flags]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "acc").exists()


def test_run_name_that_escapes_is_refused_by_the_library(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import charact.attention.experiment as acc
    from charact.attention.experiment import AccuracySpec, run_accuracy

    def no_data(*args, **kwargs):
        raise AssertionError("the run went on to load its data")

    monkeypatch.setattr(acc, "load_dataset", no_data)
    with pytest.raises(UserError, match="run name '../x'"):
        run_accuracy(AccuracySpec(run="../x", out_root=str(tmp_path / "out")))
    assert not any(tmp_path.iterdir())


# -- 1./2. fit flags ----------------------------------------------------------------------

def test_fit_n_codes_is_bounded(tmp_path, capsys, monkeypatch):
    import charact.lookup.fit as fitting

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit started")

    monkeypatch.setattr(fitting, "fit_error_model", no_fit)
    write_column_sweep(tmp_path / "col")
    for value in ("100000", "1", "-3"):
        assert main(["fit", str(tmp_path / "col"), "-o", str(tmp_path / "m.json"),
                     "--n-codes", value]) == 2
        one_line_error(capsys, f"--n-codes must be 2 to 1024, got {value}")
    assert main(["fit", str(tmp_path / "col"), "-o", str(tmp_path / "m.json"),
                 "--smoothing", "nan"]) == 2
    one_line_error(capsys, "--smoothing must be a finite number >= 0, got nan")
    assert main(["export", str(tmp_path / "col"), "--n-codes", "100000"]) == 2
    one_line_error(capsys, "--n-codes must be 2 to 1024")
    assert not (tmp_path / "m.json").exists()


def test_fit_refuses_code_flags_for_a_pvt_table(tmp_path, capsys):
    sweep = tmp_path / "sa"
    sweep.mkdir()
    rows = [{"corner": "NOM", "vdd": v, "temp": 27.0, "sample": s, "status": "ok",
             "delay": 1e-10 / v} for v in (0.8, 1.0) for s in range(3)]
    pd.DataFrame(rows).to_parquet(sweep / "table.parquet")
    (sweep / "manifest.json").write_text(json.dumps(
        {**MANIFEST, "spec": {"block": "sense_amp", "conditions": {}}}))
    out = tmp_path / "sa.json"
    for flags in (["--n-codes", "16"], ["--smoothing", "0"]):
        assert main(["fit", str(sweep), "-o", str(out), *flags]) == 2
        one_line_error(capsys, f"{flags[0]} apply to code_error fits; this is a pvt_table fit")
    assert not out.exists()
    assert main(["fit", str(sweep), "-o", str(out)]) == 0


# -- 2. spice_options ----------------------------------------------------------------------

@pytest.mark.parametrize("words,message", [
    (["bogus=1"], "unknown ngspice option 'bogus'"),
    (["reltol=nan"], "reltol must be a finite number"),
    (["reltol=inf"], "reltol must be a finite number"),
    (["abstol=-1e-12"], "abstol must be > 0"),
    (["itl4=2.5"], "itl4 must be a whole number"),
    (["method=euler"], "method must be one of"),
    (["reltol"], "'reltol' needs a value"),
    (["reltol=1e-5 bogus=1"], "one word name=value"),
])
def test_spice_options_are_validated(tmp_path, capsys, words, message):
    data = tomllib.loads(SA_SPEC.read_text())
    data["measure"]["spice_options"] = words
    with pytest.raises(UserError, match=r"\[measure\] spice_options: ") as exc:
        parse_spec(copy.deepcopy(data))
    assert message in str(exc.value)
    spec = small_spec(tmp_path, spice_options=words)
    assert main(["render", str(spec), "-o", str(tmp_path / "r")]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "r").exists()


def test_known_spice_options_are_accepted():
    data = tomllib.loads(SA_SPEC.read_text())
    data["conditions"] = {"corner": ["NOM"], "vdd": [1.0], "temp": [27], "vcm": [0.4]}
    data["montecarlo"]["samples"] = 1
    data["measure"]["spice_options"] = ["reltol=1e-5", "vntol=1u", "method=gear",
                                        "itl4=50", "temp=-40", "noopiter"]
    assert parse_spec(data).options["spice_options"][1] == "vntol=1u"


# -- 2. the size of a large sweep -----------------------------------------------------------

def test_parse_spec_reports_the_job_count_before_expanding():
    data = tomllib.loads(SA_SPEC.read_text())
    data["conditions"]["vdd"] = {"start": 0.8, "stop": 1.2, "num": 300}
    data["conditions"]["temp"] = {"start": -40, "stop": 125, "num": 300}
    data["conditions"]["corner"] = ["NOM"]
    data["conditions"]["vcm"] = [0.1 * i for i in range(1, 11)]
    data["montecarlo"]["samples"] = 1
    seen = []

    class Stop(Exception):
        pass

    def on_size(n):
        seen.append(n)
        raise Stop  # a caller may also stop here: nothing is expanded yet

    with pytest.raises(Stop):
        parse_spec(data, on_size=on_size)
    assert seen == [900_000]
    assert len(parse_spec(tomllib.loads(SA_SPEC.read_text())).jobs) == 2160  # still optional


def test_cli_prints_the_size_of_a_large_sweep(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine, "ANNOUNCE_JOBS", 100)
    assert main(["render", str(SA_SPEC), "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "2,160 jobs; expanding them takes about" in err


def test_render_that_writes_no_deck_is_an_error(tmp_path, capsys):
    """A bench that stops before its first deck is reported, not exit 0 with nothing."""
    text = (REPO / "examples" / "column_64_calibration.toml").read_text()
    assert "samples = 0" in text
    spec = tmp_path / "cal_mc.toml"
    # a calibration is nominal: a Monte-Carlo one is refused before any deck
    spec.write_text(text.replace("samples = 0", "samples = 1"))
    assert main(["render", str(spec), "-o", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "no deck written: calibration is nominal")


def _column_64_inline(tmp_path: Path) -> Path:
    """examples/column_64.toml calibrating inline (its calibration folder is a result)."""
    text = (REPO / "examples" / "column_64.toml").read_text()
    assert 'calibration = "results/column_64_calibration"' in text
    spec = tmp_path / "column_64.toml"
    spec.write_text(text.replace('calibration = "results/column_64_calibration"',
                                 'calibration = "inline"'))
    return spec


def test_render_of_the_64_dimension_column_writes_its_deck(tmp_path):
    assert main(["render", str(_column_64_inline(tmp_path)), "-o", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "array0.cir").is_file()


def test_set_overrides_a_measure_option(tmp_path, capsys):
    import argparse

    from charact.commands.engine import load_spec_with_overrides, parse_sets

    spec_path = _column_64_inline(tmp_path)
    args = argparse.Namespace(spec=str(spec_path),
                              set=["conversions=16", "trim=offset", "trim_steps=3"])
    spec = load_spec_with_overrides(args)
    assert spec.options["conversions"] == 16 and spec.options["trim"] == "offset"
    assert spec.options["trim_steps"] == 3
    assert parse_sets(["scales=[1, 2, 4]", "t_step_nom=2e-9"]) == {
        "scales": [1, 2, 4], "t_step_nom": 2e-9}
    # an unknown option, a bad value and a malformed flag: one line, exit 2, nothing run
    for flags, message in ((["--set", "bogus=1"], "bogus"),
                           (["--set", "trim_steps=0"], "trim_steps"),
                           (["--set", "conversions"], "--set needs OPTION=VALUE")):
        out = tmp_path / "never"
        assert main(["sweep", str(spec_path), "-o", str(out), *flags]) == 2
        one_line_error(capsys, message)
        assert not out.exists()


def test_a_closed_pipe_is_not_a_success():
    """``charact blocks | head -0``: the output stops early; exit 141 (SIGPIPE), quiet."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "charact.cli", "blocks"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_an_interrupted_command_says_what_it_keeps(monkeypatch, capsys):
    import charact.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli.build_parser()
    cases = [(parser.parse_args(c), hint) for c, hint in ((["blocks"], False),
                                                          (["sweep", "x.toml"], True))]
    for args, hint in cases:
        monkeypatch.setattr(args, "func", interrupted, raising=False)
        monkeypatch.setattr(cli.argparse.ArgumentParser, "parse_args",
                            lambda self, argv=None, a=args: a)
        assert cli.main([]) == 130
        err = capsys.readouterr().err
        assert err.startswith("charact: interrupted")
        assert ("rerun to resume" in err) == hint, err
