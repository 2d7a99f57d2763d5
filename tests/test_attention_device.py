"""``charact accuracy --device/--deterministic`` and the device handling behind it: device
resolution, one-line refusals before any work, generators on the tensors' device, the
determinism switch restoring torch's settings, and the report naming the device. The
tests marked for CUDA run only where torch sees a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from charact.attention import device as dev  # noqa: E402
from charact.attention import experiment, report  # noqa: E402
from charact.attention.pipeline import AttentionConfig, topkima_attention  # noqa: E402
from charact.cli import main  # noqa: E402
from charact.errors import UserError  # noqa: E402
from charact.lookup import error_model_from_samples  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL = ["accuracy", "--quick", "--k", "2", "--scheme", "tfcbp", "--crossbar", "none",
         "--epochs", "1", "--n-train", "64", "--n-test", "40", "--dim", "16", "--heads", "2",
         "--depth", "1", "--jobs", "1", "--crossbar-k", "2", "--error-k", "2",
         "--stats-queries", "1", "--error-model"]


def _table():
    rng = np.random.default_rng(0)
    ideal = rng.integers(0, 32, 20_000)
    noisy = np.clip(ideal + rng.integers(-1, 2, ideal.size), 0, 31)
    return error_model_from_samples(ideal, noisy, 32).table()


def _one_line(capsys, text: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("charact: error:") and err.count("\n") == 1, err
    assert text in err, err


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto") == "cpu"
    assert dev.resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="--device cuda: no CUDA device"):
        dev.resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        dev.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("auto") == "cuda"


def test_cuda_without_a_gpu_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_work(*args, **kwargs):
        raise AssertionError("the run went on")

    for name in ("run_accuracy", "plan_jobs", "train_model", "load_dataset"):
        monkeypatch.setattr(experiment, name, no_work)
    out = tmp_path / "acc"
    assert main([*SMALL, "--device", "cuda", "--out", str(out)]) == 2
    _one_line(capsys, "--device cuda: no CUDA device")
    assert not out.exists()


def test_the_cli_passes_device_and_determinism_to_the_spec(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = []

    def capture(spec, argv=None):
        seen.append(spec)
        return tmp_path

    monkeypatch.setattr(experiment, "run_accuracy", capture)
    assert main([*SMALL, "--out", str(tmp_path / "a")]) == 0
    assert main([*SMALL, "--device", "cpu", "--deterministic", "--out",
                 str(tmp_path / "b")]) == 0
    assert [(s.device, s.deterministic) for s in seen] == [("cpu", False), ("cpu", True)]


def test_determinism_switches_and_restores_torch_settings():
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.backends.cudnn.deterministic)
    with dev.determinism(True, "cpu"):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic
    after = (torch.are_deterministic_algorithms_enabled(),
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic)
    assert after == before
    with dev.determinism(False, "cpu"):
        assert torch.are_deterministic_algorithms_enabled() == before[0]


def test_a_generator_on_another_device_is_one_user_error():
    q = torch.zeros(1, 1, 4, 2)
    cfg = AttentionConfig.hardware(k=2, error_model=_table())
    # only its device is read before the refusal, so a stand-in needs no GPU
    elsewhere = SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(UserError, match="generator is on cuda:0 but the tensors on cpu"):
        topkima_attention(q, q, q, cfg, generator=elsewhere)


def test_default_generator_on_the_cpu_is_torchs_global_one():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 4, generator=g) for _ in range(3))
    cfg = AttentionConfig.hardware(k=3, error_model=_table(), av_error=_table())
    torch.manual_seed(5)
    a = topkima_attention(q, k, v, cfg).out
    b = topkima_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(5)).out
    torch.manual_seed(5)
    c = topkima_attention(q, k, v, cfg).out
    assert torch.equal(a, b) and torch.equal(a, c)


def test_report_names_the_device():
    prov = {"device": "cuda (NVIDIA H100)", "deterministic": False}
    text = " ".join(report._device_lines(prov))
    assert "Device: cuda (NVIDIA H100)" in text and "--deterministic" in text
    text = " ".join(report._device_lines({"device": "cpu", "deterministic": True}))
    assert "deterministic kernels, no TF32" in text and "give the same numbers" in text
    assert report._device_lines({}) == []  # a run folder from before devices


def test_image_data_moves_as_a_whole():
    from charact.attention.data import ImageData

    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    data = ImageData("t", x, y, x, y, 8, 2, 10)
    assert data.to("cpu") is data
    moved = data.to("meta")
    assert {t.device.type for t in (moved.x_train, moved.y_train, moved.x_test,
                                    moved.y_test)} == {"meta"}
    assert data.x_train.device.type == "cpu"


def test_a_deterministic_cpu_run_matches_a_default_one(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    model = tmp_path / "m.json"
    error_model_from_samples(np.arange(32).repeat(50), np.arange(32).repeat(50), 32).save(model)
    outs = {}
    for flag in ([], ["--deterministic"]):
        run = "det" if flag else "plain"
        assert main([*SMALL, str(model), "--device", "cpu", *flag, "--run", run,
                     "--out", str(tmp_path / "acc")]) == 0
        outs[run] = tmp_path / "acc" / run
    capsys.readouterr()
    import pandas as pd

    cols = ["run_id", "accuracy", "final_loss", "max_grad_norm"]
    a, b = (pd.read_parquet(outs[r] / "accuracy.parquet")[cols] for r in ("plain", "det"))
    assert a.equals(b)
    prov = json.loads(Path(outs["det"] / "provenance.json").read_text())
    assert prov["device"] == "cpu" and prov["deterministic"] is True
    assert "Device: cpu (deterministic" in (outs["det"] / "accuracy.md").read_text()


@needs_cuda
def test_errors_inject_on_cuda_with_the_default_generator():
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 2, 32, 8, generator=g, device="cuda") for _ in range(3))
    cfg = AttentionConfig.hardware(k=4, error_model=_table(), av_error=_table())
    torch.cuda.manual_seed(1)
    a = topkima_attention(q, k, v, cfg).out  # crashed before: a CPU default generator
    b = topkima_attention(q, k, v, cfg, generator=torch.Generator(device="cuda").manual_seed(1))
    assert a.device.type == "cuda" and torch.isfinite(a).all()
    c = topkima_attention(q, k, v, cfg, generator=torch.Generator(device="cuda").manual_seed(1))
    assert torch.equal(b.out, c.out)
    with pytest.raises(UserError, match="generator is on cpu but the tensors on cuda"):
        topkima_attention(q, k, v, cfg, generator=torch.Generator().manual_seed(1))


@needs_cuda
def test_cuda_evaluation_is_reproducible_per_seed():
    pytest.importorskip("sklearn")
    from charact.attention.data import load_dataset
    from charact.attention.training import evaluate, vit_config_for
    from charact.attention.vit import TopkimaViT

    data = load_dataset("digits", 64, 40).to("cuda")
    torch.manual_seed(0)
    model = TopkimaViT(vit_config_for(data, 16, 1, 2)).to("cuda")
    model.calibrate(data.x_train)
    cfg = AttentionConfig.hardware(k=3, error_model=_table(), av_error=_table())
    with dev.determinism(True, "cuda"):
        runs = [evaluate(model, data, cfg, seed=7, stats_queries=2) for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    assert runs[0][1].equals(runs[1][1])
