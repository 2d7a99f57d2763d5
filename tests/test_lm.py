"""Tests of the byte-level language model with gain-cell attention and ``charact lm``."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from charact.attention.gaincell import GainCellConfig  # noqa: E402
from charact.attention.lm import (  # noqa: E402
    ByteLM,
    LMConfig,
    LMStudySpec,
    LMTrainConfig,
    adapt_to_gaincell,
    encode,
    eval_windows,
    evaluate_lm,
    random_batch,
    train_lm,
)
from charact.cli import main  # noqa: E402
from charact.errors import UserError  # noqa: E402

pytestmark = pytest.mark.torch

torch.set_num_threads(1)

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
TINY = LMConfig(d_model=16, n_layers=1, n_heads=2, context=16, mlp_ratio=2)


@pytest.fixture
def fortunes(tmp_path, monkeypatch):
    """A tiny fortunes folder (two entries per category) in place of Debian's."""
    d = tmp_path / "fortunes"
    d.mkdir()
    for cat in ("animals", "weather"):
        entries = [f"The {cat} entry number {i} is a short sentence." for i in range(30)]
        (d / cat).write_text("\n%\n".join(entries) + "\n%\n")
        (d / f"{cat}.dat").write_bytes(b"")
    monkeypatch.setenv("CHARACT_FORTUNES", str(d))
    return d


def test_tiny_lm_loss_drops():
    torch.manual_seed(0)
    model = ByteLM(TINY, GainCellConfig.ideal(8))
    data = encode(TEXT)
    x, y = eval_windows(data, 8, TINY.context)
    before = evaluate_lm(model, x, y)["nll"]
    losses = train_lm(model, data, LMTrainConfig(steps=40, batch=8, lr=1e-2, warmup=2), 0)
    after = evaluate_lm(model, x, y)
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0
    assert after["nll"] < before - 1.0
    assert after["bpc"] == pytest.approx(after["nll"] / 0.6931471805599453)
    assert 0.0 <= after["accuracy"] <= 1.0 and after["n_seqs"] == 8


def test_training_is_reproducible():
    def once() -> list[float]:
        torch.manual_seed(1)
        model = ByteLM(TINY, GainCellConfig(window=8, t_token=1e-7))
        return train_lm(model, encode(TEXT), LMTrainConfig(steps=3, batch=4, warmup=1), 2,
                        torch.Generator().manual_seed(3))
    assert once() == once()


def test_mapping_fills_the_cells_range():
    torch.manual_seed(0)
    model = ByteLM(TINY, GainCellConfig.ideal(8))
    data = encode(TEXT)
    train_lm(model, data, LMTrainConfig(steps=10, batch=8, lr=1e-2, warmup=1), 0)
    x, _ = random_batch(data, 8, TINY.context, torch.Generator().manual_seed(0))
    hw = GainCellConfig(window=8)
    gains = adapt_to_gaincell(model, hw, x)
    assert model.attention == hw and len(gains) == TINY.n_layers
    inp = model.blocks[0].ln1(model.tok(x) + model.pos(torch.arange(TINY.context)))
    _, k, v = model.blocks[0].attn.qkv(inp)
    for t in (k, v):  # the 99.9 % quantile of |K|, |V| per head sits at the full range
        per_head = t.abs().transpose(0, 1).reshape(TINY.n_heads, -1)
        assert torch.allclose(torch.quantile(per_head, 0.999, dim=1),
                              torch.ones(TINY.n_heads), rtol=1e-3)


def test_study_spec_refuses_bad_values():
    with pytest.raises(UserError, match="window"):
        LMStudySpec(model=TINY, windows=(32,))
    with pytest.raises(UserError, match="variant"):
        LMStudySpec(model=TINY, windows=(8,), variants=("best",))
    with pytest.raises(UserError, match="multiple"):
        LMConfig(d_model=10, n_heads=3)
    with pytest.raises(UserError, match="steps"):
        LMTrainConfig(steps=0)


@pytest.mark.parametrize("argv, message", [
    (["--windows", "0"], "window"),
    (["--chips", "0"], "chips"),
    (["--steps", "-3"], "steps"),
    (["--spec", "missing.toml"], "not found"),
    (["--variants", "nonsense"], "variant"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(capsys, tmp_path, argv, message):
    out = tmp_path / "run"
    assert main(["lm", "--quick", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("charact: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_bad_spec_fields(capsys, tmp_path):
    spec = tmp_path / "s.toml"
    for body, message in [('[model]\nwidth = 3\n', "width"),
                          ('[hardware]\nwindow = 4\n', "per row"),
                          ('[study]\nretentions = [{t_token = 1e-7, temp = 200}]\n', "temp"),
                          ('schema = "charact.lm/9"\n', "schema")]:
        spec.write_text(body)
        code = main(["lm", "--quick", "--spec", str(spec), "-o", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (body, err)
        assert not (tmp_path / "o").exists()


def test_cli_end_to_end_writes_its_files(capsys, tmp_path, fortunes):
    out = tmp_path / "lm"
    code = main(["lm", "--quick", "--steps", "8", "--finetune-steps", "2", "--eval-seqs", "4",
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in ("lm.csv", "summary.csv", "report.md", "provenance.json",
                 "lm.provenance.json"):
        assert (out / name).is_file(), name
    import pandas as pd

    table = pd.read_csv(out / "lm.csv")
    assert set(table["variant"]) == {"ideal", "gaincell", "mapped", "adapted"}
    # 1 ideal row + 3 variants x 2 retentions x 2 chips
    assert len(table) == 1 + 3 * 2 * 2
    assert table["bpc"].notna().all() and (table["bpc"] > 0).all()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["spec"]["windows"] == [8] and "command" in prov and "code_revision" in prov
    report = (out / "report.md").read_text()
    assert "| adapted | 8 |" in report and prov["command"] in report


def test_example_spec_reads():
    import tomllib

    from charact.commands.lm import build_spec
    from charact.paths import models_dir

    path = models_dir().parent / "examples" / "gaincell_lm.toml"
    if not path.is_file():
        pytest.skip("examples/ is not installed")
    spec = build_spec(tomllib.loads(path.read_text()))
    assert spec.windows == (16, 64) and spec.seeds == (0, 1, 2) and spec.chips >= 3
    assert {r.temp for r in spec.retentions} == {27.0, 85.0}
    spec.check_tables()
