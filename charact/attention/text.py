"""Text that ships in a Debian package: the ``fortunes`` collection, by category.

Debian's ``fortunes`` package installs one file per category under
``/usr/share/games/fortunes`` (``science``, ``politics``, ``computers``, ...); each holds
entries separated by a line with a single ``%``. That gives two real data sets with no
download at run time:

* labelled text (an entry and its category), for classification with a pretrained encoder;
* running English text (entries joined), for training and evaluating a small language model.

The split is by entry and fixed by a seed, so train and test never share an entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charact.errors import UserError

FORTUNE_DIRS = ("/usr/share/games/fortunes",)
FORTUNE_PACKAGE = "fortunes"


def fortune_dir() -> Path:
    """The fortunes folder: ``$CHARACT_FORTUNES`` if set, else the Debian location."""
    env = os.environ.get("CHARACT_FORTUNES")
    tried = ([env] if env else []) + list(FORTUNE_DIRS)
    for cand in tried:
        p = Path(cand)
        if p.is_dir():
            return p
    raise UserError(
        f"no fortunes folder found (tried {', '.join(tried)});"
        f" install the Debian package: apt-get install {FORTUNE_PACKAGE}"
    )


def fortune_categories(folder: Path | None = None) -> list[str]:
    """Category names present (files with a ``.dat`` index beside them), sorted."""
    d = folder or fortune_dir()
    return sorted(p.name for p in d.iterdir() if p.is_file() and (d / f"{p.name}.dat").exists())


def read_entries(category: str, folder: Path | None = None) -> list[str]:
    """The entries of one category, whitespace-normalised (runs of blanks to one space)."""
    d = folder or fortune_dir()
    path = d / category
    if not path.is_file():
        raise UserError(f"unknown fortunes category {category!r}; have: "
                        f"{', '.join(fortune_categories(d))}")
    raw = path.read_bytes().decode("utf-8", errors="replace")
    out = []
    for chunk in raw.split("\n%\n"):
        text = " ".join(chunk.replace("\n%", "").split())
        if text:
            out.append(text)
    return out


@dataclass(frozen=True)
class LabelledText:
    """Entries and integer labels, split into train and test; ``classes[label]`` names one."""

    classes: tuple[str, ...]
    train_text: tuple[str, ...]
    train_labels: np.ndarray
    test_text: tuple[str, ...]
    test_labels: np.ndarray


def labelled_fortunes(
    categories: list[str] | tuple[str, ...],
    *,
    per_class: int | None = None,
    test_fraction: float = 0.3,
    max_chars: int | None = 400,
    seed: int = 0,
) -> LabelledText:
    """Entries of ``categories`` labelled by category, split per class by ``seed``.

    ``per_class`` caps the entries drawn from each category (balanced classes);
    ``max_chars`` drops entries longer than that (long poems and dialogues).
    """
    if len(categories) < 2:
        raise UserError("labelled_fortunes needs at least two categories")
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    tr_x: list[str] = []
    tr_y: list[int] = []
    te_x: list[str] = []
    te_y: list[int] = []
    for label, cat in enumerate(categories):
        entries = [e for e in read_entries(cat) if max_chars is None or len(e) <= max_chars]
        order = rng.permutation(len(entries))
        if per_class is not None:
            order = order[:per_class]
        n_test = max(1, int(round(test_fraction * len(order))))
        if len(order) - n_test < 1:
            raise UserError(f"category {cat!r} has too few entries ({len(order)})")
        for j, i in enumerate(order):
            (te_x if j < n_test else tr_x).append(entries[i])
            (te_y if j < n_test else tr_y).append(label)
    return LabelledText(
        classes=tuple(categories),
        train_text=tuple(tr_x), train_labels=np.asarray(tr_y, dtype=np.int64),
        test_text=tuple(te_x), test_labels=np.asarray(te_y, dtype=np.int64),
    )


def fortune_corpus(
    categories: list[str] | tuple[str, ...] | None = None,
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[str, str]:
    """Running text ``(train, test)``: entries of ``categories`` (all when None), shuffled
    by ``seed``, split by entry, each entry ending in a newline."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cats = list(categories) if categories else fortune_categories()
    entries = [e for c in cats for e in read_entries(c)]
    order = np.random.default_rng(seed).permutation(len(entries))
    n_test = max(1, int(round(test_fraction * len(entries))))
    test = "".join(entries[i] + "\n" for i in order[:n_test])
    train = "".join(entries[i] + "\n" for i in order[n_test:])
    return train, test
