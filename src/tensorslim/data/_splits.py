"""Deterministic train / validation carving of an official training set."""

from __future__ import annotations

import math

import numpy as np

from tensorslim.errors import DataError

SPLITS = ("train", "val", "test")


def check_split(name: str, split: str) -> None:
    """Raise :class:`DataError` unless ``split`` is one of ``train``, ``val``, ``test``."""
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def carve(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted ``(train, val)`` index arrays, disjoint and covering.

    ``val`` holds ``round(n · val_fraction)`` indices drawn by a permutation seeded with ``seed`` (numpy's
    PCG64, stable across versions), so the same arguments always give the same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = math.floor(n * val_fraction + 0.5)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_val_indices(name: str, split: str, n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Indices of the official training set that form ``split`` (``"train"`` or ``"val"``)."""
    train, val = carve(n, val_fraction, seed)
    chosen = train if split == "train" else val
    if chosen.size == 0:
        raise DataError(f"{name}: the {split!r} split is empty ({n} training samples, val_fraction={val_fraction})")
    return chosen
