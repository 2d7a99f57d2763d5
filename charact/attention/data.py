"""Image data for the accuracy runs: Fashion-MNIST (Debian package) and scikit-learn digits.

Both come back as float tensors (N, 1, H, W) scaled to about zero mean, unit spread, and
int64 labels. Fashion-MNIST's 28x28 images are zero-padded to 32x32 so 4x4 patches give
64 tokens (+ CLS = 65); digits stay 8x8 (2x2 patches: 16 tokens + CLS).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from charact.errors import UserError

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DATASETS = ("fashion-mnist", "digits")


@dataclass
class ImageData:
    """Train and test splits of one data set, plus its patch geometry."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    image_size: int
    patch: int
    n_classes: int

    def to(self, device: str | torch.device) -> ImageData:
        """The same data with its tensors on ``device`` (itself when already there)."""
        dev = torch.device(device)
        if all(t.device == dev for t in (self.x_train, self.y_train, self.x_test, self.y_test)):
            return self
        return replace(self, x_train=self.x_train.to(dev), y_train=self.y_train.to(dev),
                       x_test=self.x_test.to(dev), y_test=self.y_test.to(dev))


def _open_idx(path: Path) -> bytes:
    for cand in (path, path.with_name(path.name + ".gz")):
        if cand.exists():
            opener = gzip.open if cand.suffix == ".gz" else open
            try:
                with opener(cand, "rb") as fh:
                    return fh.read()
            except (OSError, EOFError) as exc:
                raise UserError(f"cannot read {cand}: {exc}") from exc
    raise FileNotFoundError(path)


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format: magic, dims, big-endian sizes, raw bytes)."""
    raw = _open_idx(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} bytes)")
    return data.reshape(dims)


def fashion_dir(root: str | os.PathLike | None = None) -> Path:
    """Folder holding the Fashion-MNIST IDX files; a UserError names the package if absent."""
    cands = [Path(root)] if root else [Path(p) for p in FASHION_DIRS]
    for d in cands:
        name = FASHION_FILES["train"][0]
        if (d / name).exists() or (d / (name + ".gz")).exists():
            return d
    where = ", ".join(str(c) for c in cands)
    raise UserError(
        f"Fashion-MNIST not found in {where}; install the Debian package "
        f"{FASHION_PACKAGE} (apt-get install {FASHION_PACKAGE}) or pass its folder"
    )


def _normalize(x: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return torch.from_numpy(((x.astype(np.float32) / 255.0) - mean) / std)


def load_fashion_mnist(
    root: str | os.PathLike | None = None, n_train: int | None = None, n_test: int | None = None
) -> ImageData:
    """Fashion-MNIST padded to 32x32; ``n_train``/``n_test`` take the first images."""
    d = fashion_dir(root)
    split = {}
    for part, (img_name, lab_name) in FASHION_FILES.items():
        imgs = read_idx(d / img_name)
        labs = read_idx(d / lab_name)
        if imgs.ndim != 3 or labs.ndim != 1 or len(imgs) != len(labs):
            raise UserError(f"{d}: {part} images and labels do not match")
        n = n_train if part == "train" else n_test
        if n is not None:
            imgs, labs = imgs[:n], labs[:n]
        imgs = np.pad(imgs, ((0, 0), (2, 2), (2, 2)))
        # mean/std of the padded 32x32 training images, fixed so every subset and the
        # test split are normalised the same way
        x = _normalize(imgs, 0.2190, 0.3318)[:, None]
        split[part] = (x, torch.from_numpy(labs.astype(np.int64)))
    return ImageData("fashion-mnist", *split["train"], *split["test"], 32, 4, 10)


def load_digits(n_test: int = 360, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits (1797 images), a fixed random test split of ``n_test``."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as exc:
        raise UserError("the digits data set needs scikit-learn: pip install scikit-learn") from exc
    d = sk_digits()
    x = torch.from_numpy((d.images.astype(np.float32) / 16.0 - 0.3) / 0.4)[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    te, tr = perm[:n_test], perm[n_test:]
    return ImageData("digits", x[tr], y[tr], x[te], y[te], 8, 2, 10)


def load_dataset(
    name: str, n_train: int | None = None, n_test: int | None = None,
    root: str | os.PathLike | None = None,
) -> ImageData:
    """Load ``fashion-mnist`` or ``digits`` (optionally the first ``n_train``/``n_test``)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(root, n_train, n_test)
    if name == "digits":
        data = load_digits()
        if n_train is not None:
            data.x_train, data.y_train = data.x_train[:n_train], data.y_train[:n_train]
        if n_test is not None:
            data.x_test, data.y_test = data.x_test[:n_test], data.y_test[:n_test]
        return data
    raise UserError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
