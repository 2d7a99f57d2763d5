"""Accuracy sweeps: k x training scheme x crossbar size x error model, over seeds.

(:class:`AccuracySpec` and :func:`run_accuracy` here; the summaries, ``accuracy.md`` and
the figures in :mod:`charact.attention.report`; the command-line settings in
:mod:`charact.attention.settings`.)

One *training job* trains one ViT (a seed and a training setting) and then evaluates it
under every setting that uses it, in the same process, so models never travel between
processes:

* per seed, one model trained with the full softmax serves scheme ``full`` (evaluated
  with the full softmax) and scheme ``inference`` (evaluated with each top-k);
* per seed and k, one model trained with TFCBP at that k (scheme ``tfcbp``);
* per seed and crossbar size, one TFCBP model trained at ``crossbar_k`` with that
  crossbar's K precision and sub-top-k (Fig. 4(c));
* each error model is injected at evaluation (Q.K^T and A.V codes) into the TFCBP model at
  ``error_k`` and into the full-softmax model (Fig. 4(b)), at one PVT point of the model
  (``pvt``, default its nominal one).

Simulated chips (``chips``): a structured error model has a static error per physical
column (:mod:`charact.lookup.structured`), so its accuracy depends on the die. Each error
case is evaluated on ``chips`` simulated chips (chip ``j`` = the static draws seeded by
``j``, the same silicon for every model and setting: paired comparisons), with the same
trained weights and test set; training never sees errors, and a model is trained once
whatever the number of chips. A row of ``accuracy.parquet`` reports the mean over chips,
its standard error, the chips' 5th percentile (standard error by the normal
approximation), minimum and sigma; ``chip_accuracy.parquet`` has one row per chip. An
unstructured model has no static part: its chips differ only in the per-conversion noise
(chip 0 uses exactly the noise seed of runs before chips existed).

Full mode (the default of ``charact accuracy``): Fashion-MNIST, all 60k training images,
4 epochs (AdamW, lr 2e-3 with warm-up and cosine decay, gradient clipping, 5 % full-softmax
warm-up before TFCBP: :class:`charact.attention.training.TrainConfig`), k = 1 2 5 10 20 all,
the three schemes, crossbars none/paper128/paper256, seeds 0 1 2: 24 trainings of 8-10
minutes each (17 for a crossbar model) with two at a time on 2 cores, about 2 hours.
``--n-train``, ``--epochs``, ``--k``, ``--seeds`` and ``--crossbar`` cut it down. A
shorter budget is not a faithful stand-in: with 20k images and 3 epochs the models stop
half-trained (full softmax 81.4 +- 0.7 % against 86 %) and TFCBP's gap to the full
softmax varies by seed from -1.1 to 2.8 points.

Crossbar axis (Fig. 4(c)). The paper splits BERT's 384 keys (head size 64) over 128- or
256-column crossbars, and the rows left after the 64 replica rows set K's precision (128
rows: 1 ternary cell per weight; 256 rows: 3 cells). On this ViT (d_k = 16, 65 tokens) a
literal 128x128 or 256x256 crossbar holds a whole head at full precision, so nothing would
change. ``paper128`` and ``paper256`` scale the paper's crossbars to the model
(:func:`resolve_crossbar`): the same K precision and the same fraction of the keys per
crossbar, hence the same k_i split (paper128 = 80x22: 3 crossbars, ternary K, k_i = 2, 2, 1;
paper256 = 112x44: 2 crossbars, 15-level K, k_i = 3, 2). Literal sizes (``R`` or ``RxC``)
remain available.
``--quick`` runs scikit-learn digits with 1 seed and 3 k values in well under a minute.

Device (``device``, ``--device auto|cpu|cuda``): data, models and error generators live on
it; ``auto`` takes a CUDA GPU when torch sees one. A run is reproducible per device, and
CPU and GPU numbers differ (error draws, summation orders, TF32): see
:mod:`charact.attention.device`, also for ``deterministic`` (``--deterministic``).

Outputs in ``results/accuracy/<run>/``: ``accuracy.parquet`` + ``accuracy.md``,
``chip_accuracy.parquet``, the
figures ``fig3_accuracy_vs_k.png``, ``fig4c_subtopk.png``, ``fig4b_error.png``,
``selection_stats.parquet`` (ramp statistics per query), ``provenance.json``, and
``models/`` (each trained model's weights and training summary, keyed by a hash of
everything that decides them). ``reuse`` (``--reuse RUN_DIR``) loads a matching model from
an earlier run instead of training it, so e.g. a new error model's Fig. 4(b) experiment
costs only the evaluations.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from charact.attention.data import load_dataset
from charact.attention.device import determinism, device_label, resolve_device
from charact.attention.pipeline import AttentionConfig
from charact.attention.report import CHIP_COLUMNS, chip_statistics, write_atomic, write_outputs
from charact.attention.settings import ALL, Crossbar, resolve_crossbar
from charact.attention.training import TrainConfig, evaluate, train_model, vit_config_for
from charact.errors import UserError

#: chips per error case when a structured model is injected and --chips is not given
DEFAULT_STRUCTURED_CHIPS = 10


@dataclass(frozen=True)
class AccuracySpec:
    """Everything an accuracy run varies and holds fixed."""

    run: str = "default"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    dim: int = 64
    depth: int = 2
    heads: int = 4
    ks: tuple[int | None, ...] = (1, 2, 5, 10, 20, None)
    schemes: tuple[str, ...] = ("tfcbp", "inference", "full")
    crossbars: tuple[Crossbar, ...] = (Crossbar(), Crossbar(paper=128), Crossbar(paper=256))
    softmax_warmup: float = 0.05
    crossbar_k: int = 5
    error_models: tuple[str, ...] = ()
    error_k: int = 5
    #: where the error model is injected: "both" (Q.K^T and A.V, as the paper does),
    #: "qk" (the top-k ADC only) or "av"
    error_on: str = "both"
    #: the error models' PVT point (corner, vdd, temp); None = each model's nominal one
    pvt: tuple[str, float, float] | None = None
    #: simulated chips per error case; None = 1, or DEFAULT_STRUCTURED_CHIPS when a
    #: structured model is injected
    chips: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    stats_queries: int = 16
    reuse: str | None = None
    jobs: int = 2
    threads: int = 1
    out_root: str = "results/accuracy"
    #: "cpu", "cuda" or "auto" (resolved once by run_accuracy, before any work)
    device: str = "cpu"
    #: deterministic kernels and no TF32 (charact.attention.device.determinism)
    deterministic: bool = False
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalCase:
    scheme: str
    k: int | None
    crossbar: Crossbar
    error: str  # "none" or the error model's label
    config: AttentionConfig


@dataclass(frozen=True)
class TrainJob:
    seed: int
    label: str
    train_config: AttentionConfig
    cases: tuple[EvalCase, ...]


def _hw(k: int | None, xb: Crossbar) -> AttentionConfig:
    return AttentionConfig.hardware(k=k, crossbar_rows=xb.rows, crossbar_cols=xb.cols)


def load_error_tables(paths: tuple[str, ...],
                      pvt: tuple[str, float, float] | None = None) -> dict[str, Any]:
    """Label -> the ``PointErrorModel`` at ``pvt`` (default: the nominal point) of each error
    model file; a bad file or a point a model lacks is a one-line UserError."""
    from charact.lookup import ErrorModel

    tables = {}
    for p in paths:
        model = ErrorModel.load(p)
        if pvt is None:
            tables[Path(p).stem] = model.point()
            continue
        try:
            tables[Path(p).stem] = model.point(*pvt)
        except UserError as exc:
            raise UserError(f"--pvt {pvt[0]}/{pvt[1]:g}/{pvt[2]:g}: error model {p}: "
                            f"{exc}") from exc
    return tables


def resolve_chips(spec: AccuracySpec, tables: dict[str, Any]) -> int:
    """Chips per error case: ``spec.chips``, else 1 for unstructured models (their chips
    are all alike) and :data:`DEFAULT_STRUCTURED_CHIPS` when one is structured."""
    if spec.chips is not None:
        if spec.chips < 1:
            raise UserError(f"--chips must be >= 1, got {spec.chips}")
        return spec.chips
    structured = any(getattr(t, "structured", False) for t in tables.values())
    return DEFAULT_STRUCTURED_CHIPS if structured else 1


def noise_seed(seed: int, case_index: int, chip: int) -> int:
    """The per-conversion noise seed of a case on a chip: chip 0 keeps the seed of runs
    before chips (``seed * 1000 + case_index``), the others get independent streams."""
    if chip == 0:
        return seed * 1000 + case_index
    return int(np.random.SeedSequence([seed, case_index, chip]).generate_state(1)[0])


ERROR_SITES = ("both", "qk", "av")


def _errors(site: str, table: Any) -> dict[str, Any]:
    """The AttentionConfig fields that inject ``table`` at ``site``."""
    return {"error_model": table if site in ("both", "qk") else None,
            "av_error": table if site in ("both", "av") else None}


def _site(name: str, spec: AccuracySpec) -> str:
    return name if spec.error_on == "both" else f"{name}@{spec.error_on}"


def plan_jobs(spec: AccuracySpec, tables: dict[str, Any]) -> list[TrainJob]:
    """The training jobs and the evaluations each one carries."""
    jobs: list[TrainJob] = []
    glob = Crossbar()
    topks = [k for k in spec.ks if k is not None]
    for seed in spec.seeds:
        full_cases: list[EvalCase] = []
        if "full" in spec.schemes or "inference" in spec.schemes or tables:
            if "full" in spec.schemes or None in spec.ks:
                full_cases.append(EvalCase("full", None, glob, "none", _hw(None, glob)))
            if "inference" in spec.schemes:
                for k in topks:
                    full_cases.append(EvalCase("inference", k, glob, "none", _hw(k, glob)))
            for name, t in tables.items():
                cfg = _hw(None, glob).with_(**_errors(spec.error_on, t))
                full_cases.append(EvalCase("full", None, glob, _site(name, spec), cfg))
            jobs.append(TrainJob(seed, "full", _hw(None, glob), tuple(full_cases)))
        if "tfcbp" not in spec.schemes:
            continue
        tf_ks = sorted(set(topks) | ({spec.error_k} if tables else set()))
        for k in tf_ks:
            cases = [EvalCase("tfcbp", k, glob, "none", _hw(k, glob))]
            if k == spec.error_k:
                for name, t in tables.items():
                    cfg = _hw(k, glob).with_(**_errors(spec.error_on, t))
                    cases.append(EvalCase("tfcbp", k, glob, _site(name, spec), cfg))
            jobs.append(TrainJob(seed, f"tfcbp-k{k}", _hw(k, glob), tuple(cases)))
        for xb in spec.crossbars:
            if xb.rows is None and xb.cols is None:
                if spec.crossbar_k not in tf_ks:
                    k = spec.crossbar_k
                    jobs.append(TrainJob(seed, f"tfcbp-k{k}", _hw(k, glob),
                                         (EvalCase("tfcbp", k, glob, "none", _hw(k, glob)),)))
                continue
            cfg = _hw(spec.crossbar_k, xb)
            jobs.append(TrainJob(seed, f"tfcbp-k{spec.crossbar_k}-xb{xb.label}", cfg,
                                 (EvalCase("tfcbp", spec.crossbar_k, xb, "none", cfg),)))
    return jobs


def case_id(case: EvalCase, seed: int) -> str:
    k = ALL if case.k is None else str(case.k)
    return f"{case.scheme}-k{k}-xb{case.crossbar.label}-err{case.error}-s{seed}"


def model_key(spec: AccuracySpec, job: TrainJob, vit: Any, train: TrainConfig) -> str:
    """Content hash of everything that decides a trained model's weights."""
    cfg = {k: v for k, v in asdict(job.train_config).items()
           if k not in ("error_model", "av_error")}
    # a GPU trains to other weights than the CPU (see charact.attention.device); CPU keys
    # stay as they were before devices, so earlier runs remain reusable
    where = {} if spec.device == "cpu" else {"device": spec.device,
                                             "deterministic": spec.deterministic}
    blob = json.dumps({"dataset": spec.dataset, "n_train": spec.n_train, "vit": asdict(vit),
                       "train": asdict(train), "attention": cfg, "seed": job.seed,
                       "torch": torch.__version__, **where}, sort_keys=True, default=str)
    # (the ViT's train_calibration is always its default "sample" in these sweeps)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _trained_model(spec: AccuracySpec, job: TrainJob, data: Any, vit: Any, train: TrainConfig,
                   out: Path | None) -> tuple[Any, dict]:
    """Train the job's model, or load it from ``spec.reuse``'s ``models/`` when a model with
    the same :func:`model_key` is there; a trained model is saved to ``out/models/``."""
    from charact.attention.vit import TopkimaViT

    name = f"{job.label}-s{job.seed}-{model_key(spec, job, vit, train)}"
    if spec.reuse is not None:
        src = Path(spec.reuse) / "models"
        if (src / f"{name}.pt").is_file() and (src / f"{name}.json").is_file():
            model = TopkimaViT(vit)
            model.load_weights(torch.load(src / f"{name}.pt", weights_only=True,
                                          map_location="cpu"))
            model.to(data.x_train.device)
            model.set_attention(job.train_config)
            # calibrated again: a cheap, deterministic pass, and files from before the
            # per-head calibration carry other statistics (data holds the n_train images)
            model.calibrate(data.x_train)
            model.eval()
            info = json.loads((src / f"{name}.json").read_text())
            return model, {**info, "reused_from": str(src / f"{name}.pt")}
    model, info = train_model(data, vit, job.train_config, train, seed=job.seed)
    if out is not None:
        (out / "models").mkdir(parents=True, exist_ok=True)
        state = model.state_dict()
        for key in state:  # files hold CPU tensors, loadable on any machine
            state[key] = state[key].cpu()
        write_atomic(out / "models" / f"{name}.pt", lambda p: torch.save(state, p))
        write_atomic(out / "models" / f"{name}.json", lambda p: Path(p).write_text(
            json.dumps(info, indent=1, default=str)))
    return model, info


def run_job(spec: AccuracySpec, job: TrainJob, out: Path | None = None
            ) -> tuple[list[dict], pd.DataFrame, list[dict]]:
    """Train (or reuse) one model and evaluate its cases, each error case on
    ``spec.chips`` simulated chips; returns result rows (one per case, chip statistics
    in them), selection stats (chip 0) and one row per chip of each error case. The
    trained model is kept in ``out/models/`` for later evaluations (``reuse``)."""
    torch.set_num_threads(spec.threads)
    with determinism(spec.deterministic, spec.device):
        return _run_job(spec, job, out)


def _run_job(spec: AccuracySpec, job: TrainJob, out: Path | None
             ) -> tuple[list[dict], pd.DataFrame, list[dict]]:
    data = load_dataset(spec.dataset, spec.n_train, spec.n_test, spec.data_root)
    data = data.to(resolve_device(spec.device))
    vit = vit_config_for(data, spec.dim, spec.depth, spec.heads)
    train = TrainConfig(epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
                        softmax_warmup_frac=spec.softmax_warmup)
    # trained (or loaded) once: every case and every chip below evaluates these weights
    model, info = _trained_model(spec, job, data, vit, train, out)
    n_chips = spec.chips or 1
    rows, frames, chip_rows = [], [], []
    for i, case in enumerate(job.cases):
        t0 = time.perf_counter()
        rid = case_id(case, job.seed)
        err = case.config.error_model or case.config.av_error
        pvt = "" if err is None else err.pvt.label() if hasattr(err, "pvt") else ""
        accs, stats = [], pd.DataFrame()
        for chip in range(n_chips if err is not None else 1):
            t1 = time.perf_counter()
            nseed = noise_seed(job.seed, i, chip)
            acc, chip_stats = evaluate(
                model, data, case.config, seed=nseed,
                stats_queries=spec.stats_queries if chip == 0 else 0,
                chip=chip if err is not None else None)
            if chip == 0:
                stats = chip_stats
            accs.append(acc)
            if err is not None:
                chip_rows.append({
                    "run_id": rid, "seed": job.seed, "scheme": case.scheme, "k": case.k,
                    "crossbar": case.crossbar.label, "error": case.error, "pvt": pvt,
                    "chip": chip, "noise_seed": nseed, "accuracy": acc,
                    "eval_seconds": time.perf_counter() - t1})
        rows.append({
            "run_id": rid, "dataset": spec.dataset, "seed": job.seed, "scheme": case.scheme,
            "k": case.k, "crossbar": case.crossbar.label, "error": case.error, "pvt": pvt,
            "structured": bool(getattr(err, "structured", False)),
            "trained_as": job.label, **chip_statistics(accs), "n_test": len(data.y_test),
            "n_train": info["n_train"], "epochs": spec.epochs,
            "train_seconds": info["train_seconds"], "eval_seconds": time.perf_counter() - t0,
            "final_loss": info["final_loss"],
            "epoch_loss": ",".join(f"{v:.4f}" for v in info["epoch_loss"]),
            "max_grad_norm": info["max_grad_norm"],
            "reused": "reused_from" in info,
        })
        if len(stats):
            stats.insert(0, "run_id", rid)
            stats["k_i"] = stats.pop("k")
            stats["k"] = case.k
            stats["seed"] = job.seed
            stats["scheme"] = case.scheme
            stats["crossbar"] = case.crossbar.label
            stats["error"] = case.error
            frames.append(stats)
    return (rows, (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()),
            chip_rows)


def run_accuracy(spec: AccuracySpec, argv: list[str] | None = None, log: Any = print) -> Path:
    """Run every job (``spec.jobs`` processes) and write the run folder; returns it."""
    from charact.outputs import check_name, check_output_dir

    # a run name is one folder under out_root: "../x" would write outside it
    check_name(spec.run, "run name")
    check_output_dir(Path(spec.out_root) / spec.run, "run folder")
    # once, here: every job and the provenance name the same device
    spec = replace(spec, device=resolve_device(spec.device))
    tables = load_error_tables(spec.error_models, spec.pvt)
    spec = replace(spec, chips=resolve_chips(spec, tables))
    probe = load_dataset(spec.dataset, 1, 1, spec.data_root)  # fail early, before training
    vit = vit_config_for(probe, spec.dim, spec.depth, spec.heads)
    check_k_range(spec, vit.n_tokens, bool(tables))
    spec = replace(spec, crossbars=tuple(
        resolve_crossbar(xb, spec.dim // spec.heads, vit.n_tokens) for xb in spec.crossbars))
    for xb in spec.crossbars:
        if xb.rows is not None:
            # fail before training: the rows must leave a cell for every K weight
            _hw(spec.crossbar_k, xb).k_cells(spec.dim // spec.heads)
    jobs = plan_jobs(spec, tables)
    out = Path(spec.out_root) / spec.run
    chips = f", {spec.chips} chip(s) per error case" if tables else ""
    log(f"accuracy run {spec.run!r}: {len(jobs)} trainings on {spec.dataset}{chips}, "
        f"{spec.jobs} process(es) on {spec.device} -> {out}")
    t0 = time.perf_counter()
    if spec.jobs > 1 and len(jobs) > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=spec.jobs, verbose=0, return_as="generator")(
            delayed(run_job)(spec, j, out) for j in jobs
        )
    else:
        results = (run_job(spec, j, out) for j in jobs)
    rows, frames, chip_rows = [], [], []
    for i, (r, f, c) in enumerate(results, 1):
        rows.extend(r)
        frames.append(f)
        chip_rows.extend(c)
        log(f"  [{i}/{len(jobs)}] " + ", ".join(
            f"{x['run_id']}: {100 * x['accuracy']:.2f}%" for x in r
        ) + f"  ({time.perf_counter() - t0:.0f} s)")
    table = pd.DataFrame(rows)
    table["k"] = table["k"].astype("Int64")
    filled = [f for f in frames if len(f)]
    stats = (pd.concat(filled, ignore_index=True) if filled
             else pd.DataFrame(columns=["run_id", "layer", "alpha", "n_tied", "k"]))
    if "k" in stats:
        stats["k"] = stats["k"].astype("Int64")
    stats["run"] = spec.run
    table["run"] = spec.run
    chips = pd.DataFrame(chip_rows, columns=CHIP_COLUMNS)
    chips["k"] = chips["k"].astype("Int64")
    chips["run"] = spec.run
    prov = provenance(spec, argv, tables, time.perf_counter() - t0)
    write_outputs(out, table, stats, prov, spec, chips)
    return out


def check_k_range(spec: AccuracySpec, n_tokens: int, with_errors: bool) -> None:
    """Every k at most the sequence length: top-k of n keys with k > n selects nothing
    more than ``all`` and would be reported as a different setting."""
    given = [("--k", k) for k in spec.ks if k is not None]
    if spec.crossbars and "tfcbp" in spec.schemes:  # plan_jobs trains at crossbar_k then
        given.append(("--crossbar-k", spec.crossbar_k))
    if with_errors:
        given.append(("--error-k", spec.error_k))
    for flag, k in given:
        if k > n_tokens:
            raise UserError(f"{flag} {k} is larger than the sequence length of {spec.dataset} "
                            f"({n_tokens} tokens); use k <= {n_tokens} or 'all'")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(spec: AccuracySpec, argv: list[str] | None, tables: dict, seconds: float) -> dict:
    """How the run was made: command, spec, versions, inputs, time."""
    from charact import __version__

    return {
        "command": "charact " + " ".join(argv) if argv is not None else None,
        "spec": {**asdict(spec), "crossbars": [x.label for x in spec.crossbars],
                 "ks": [ALL if k is None else k for k in spec.ks]},
        "error_models": [{"path": p, "sha256": _sha256(p), "n_codes": int(t.n_codes),
                          "pvt": t.pvt.label(), "structured": bool(t.structured)}
                         for p, t in zip(spec.error_models, tables.values(), strict=True)],
        "chips": {"per_error_case": spec.chips, "chip_seeds": list(range(spec.chips or 1)),
                  "static_draws": "chip j: per (layer, array, head) a numpy stream seeded by "
                  "SeedSequence([tag, j, layer, array, head]), column i the i-th draw",
                  "noise_seed": "seed * 1000 + case for chip 0, else SeedSequence([seed, "
                  "case, chip])"},
        "versions": {"charact": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__,
                     "python": platform.python_version()},
        "seeds": list(spec.seeds),
        "device": device_label(spec.device),
        "deterministic": spec.deterministic,
        "cpu_count": os.cpu_count(),
        "wall_seconds": round(seconds, 1),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "notes": "Same spec, seeds and device give the same numbers (on the CPU with 1 "
                 "thread per job; on a GPU with --deterministic); CPU and GPU numbers differ "
                 "(error draws, summation order, TF32): see charact.attention.device.",
    }
