"""Datasets for training and evaluating compressed CNNs.

>>> from tensorslim import data
>>> train = data.load("fashion-mnist", "train")           # 54,000 images (10 % carved off as "val")
>>> for x, y in data.batches(train, 128, shuffle=True, seed=epoch): ...

Names: ``fashion-mnist``, ``mnist`` (idx files), ``cifar10``, ``cifar100`` (python pickles, read with a
restricted unpickler), ``imagenette`` (JPEG folders, lazy), ``digits`` (scikit-learn, always present) and
``synthetic`` (generated). Files are looked for in ``data_dir`` (default ``./data``), ``$TENSORSLIM_DATA``,
then ``/usr/share/datasets/<name>``; :func:`available` reports what was found where.
"""

from __future__ import annotations

import os
from typing import Any

from tensorslim.data._base import Augment, ImageDataset, InMemoryDataset, augment_batch, batches
from tensorslim.data._source import DatasetInfo, DatasetStatus, Request, Source
from tensorslim.data._splits import SPLITS, check_split
from tensorslim.data.builtin import DIGITS, SYNTHETIC
from tensorslim.data.cifar import CIFAR10, CIFAR100
from tensorslim.data.idx import FASHION_MNIST, MNIST
from tensorslim.data.imagenette import IMAGENETTE, ImageFolderDataset
from tensorslim.errors import DataError

__all__ = [
    "SPLITS",
    "Augment",
    "DatasetInfo",
    "DatasetStatus",
    "ImageDataset",
    "ImageFolderDataset",
    "InMemoryDataset",
    "augment_batch",
    "available",
    "batches",
    "info",
    "load",
    "names",
]

_SOURCES: dict[str, Source] = {
    s.name: s for s in (FASHION_MNIST, MNIST, CIFAR10, CIFAR100, IMAGENETTE, DIGITS, SYNTHETIC)
}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
            "cifar-100": "cifar100"}  # fmt: skip


def names() -> tuple[str, ...]:
    """The known dataset names."""
    return tuple(_SOURCES)


def _source(name: str) -> Source:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(_SOURCES)}")
    return _SOURCES[key]


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    augment: bool | None = None,
    image_size: int | None = None,
    **options: Any,
) -> ImageDataset:
    """Load one split of a dataset.

    ``split``: ``"train"`` (the official training set minus the validation part), ``"val"`` (a fraction
    ``val_fraction`` of the official training set chosen by a permutation seeded with ``seed``) or
    ``"test"`` (the official test set). ``augment``: ``None`` = the standard augmentation for the train split
    of CIFAR and Imagenette only; ``True`` / ``False`` force it on / off for any split. ``image_size``:
    Imagenette's square size (default 64). ``options``: dataset-specific (``synthetic`` takes
    ``num_samples``, ``num_test``, ``num_classes``, ``input_shape``, ``noise``, ``data_seed``).
    Raises :class:`DataError` for an unknown name, a missing dataset (saying where it looked) or a
    corrupt file (naming it).
    """
    source = _source(name)
    check_split(source.name, split)
    request = Request(split, data_dir, val_fraction, seed, augment, image_size, dict(options))
    return source.load(request)


def info(name: str, **options: Any) -> DatasetInfo:
    """``input_shape``, ``num_classes`` and ``classes`` of a dataset without reading its files (Imagenette
    takes ``image_size``; ``synthetic`` takes its generator options)."""
    return _source(name).info(**options)


def available(data_dir: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """For every known dataset: whether it can be loaded, from where, or where it was looked for."""
    return [source.status(data_dir) for source in _SOURCES.values()]
