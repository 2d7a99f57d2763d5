"""Where an accuracy run computes (CPU or a CUDA GPU) and how reproducible it is.

Reproducibility, per device. The same spec, seeds and device give the same numbers:

* the initial weights are drawn on the CPU (``torch.manual_seed(seed)``) and then moved,
  so they are the same on every device;
* the order of the training images comes from a CPU generator seeded by the seed, so
  every device trains on the same batches (the index is copied to the device);
* the injected code errors come from a generator on the tensors' device, seeded by the
  case's noise seed: the CPU draws its words from a numpy SFC64 stream seeded by torch's
  mt19937, a GPU from its Philox generator (:mod:`charact.lookup.error_model`), so the
  same seed gives other (equally distributed) errors on a GPU than on the CPU.

CPU and GPU numbers therefore differ, and not only by the error draws: cuBLAS and cuDNN
sum in other orders than the CPU kernels, and by default the patch embedding's convolution
may run in TF32 (10 mantissa bits) on Ampere and later GPUs. A difference of one unit in
the last place of a score matters where the score lies on a rounding tie of the ramp ADC,
half-way between two codes: it then converts to the neighbouring code, which can change
which keys the ramp keeps, and training amplifies such flips. Expect accuracies that agree
within the seed-to-seed spread, not to the last digit.

``--deterministic`` (:func:`determinism`) turns TF32 off for matrix products and
convolutions, asks cuDNN for deterministic kernels and calls
``torch.use_deterministic_algorithms(True, warn_only=True)``: repeated GPU runs then give
the same numbers (an operation without a deterministic CUDA kernel warns and names
itself), at some speed; it does not make the GPU agree with the CPU. On the CPU it changes
nothing but the speed (the CPU kernels used here are deterministic already).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from charact.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
# cuBLAS needs a fixed workspace to be deterministic; read when its handle is created
_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
_CUBLAS_DETERMINISTIC = ":4096:8"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` if a CUDA device is available, else ``cpu``; ``cuda`` without
    one is a UserError (before any data is loaded or a model trained)."""
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to torch "
                        f"{torch.__version__}; use --device cpu (or auto)")
    return name


def device_label(device: str) -> str:
    """``cpu``, or ``cuda (<GPU name>)``."""
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return device


@contextmanager
def determinism(on: bool, device: str) -> Iterator[None]:
    """Deterministic kernels and no TF32 inside the block when ``on`` (see the module
    notes); torch's previous settings are restored after it."""
    if not on:
        yield
        return
    cuda = device == "cuda"
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    env = os.environ.get(_CUBLAS_ENV)
    if cuda and env is None:
        os.environ[_CUBLAS_ENV] = _CUBLAS_DETERMINISTIC
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved[2:]
        if cuda and env is None:
            os.environ.pop(_CUBLAS_ENV, None)
