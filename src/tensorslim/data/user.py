"""Your own data: any ``torch.utils.data.Dataset`` or ``DataLoader`` where tensorslim takes a dataset name.

:func:`as_dataset` turns what a user passes into a map-style dataset of ``(C×H×W float tensor, int label)``
samples that :func:`tensorslim.data.batches` can batch:

* a map-style ``Dataset`` (``len`` and ``ds[i] -> (x, y)``) is used as it is;
* a ``DataLoader`` over a map-style dataset with the default collation: its dataset is used, and tensorslim
  batches and shuffles it itself (seeded, so runs repeat and resume); the loader's ``batch_size`` is
  reported as :attr:`UserData.batch_size` for callers that have no batch size of their own;
* any other ``DataLoader`` (an ``IterableDataset``, a custom ``collate_fn`` or ``batch_sampler``): its
  batches are read once into memory, at most ``max_samples`` samples.

:func:`splits` takes the train / val / test triple of :func:`tensorslim.finetune.finetune` and
:func:`tensorslim.explore.explore` in one of three forms: a ``dict`` with a ``"train"`` key and optional
``"val"`` and ``"test"``, a tuple ``(train, val[, test])``, or one dataset (train only). A missing val split is
carved off the training set (``val_fraction``, seeded); a missing test split stays ``None``.

Every dataset is checked on its first sample before anything else runs: ``x`` must be a floating tensor of
1–3 dimensions, ``y`` an integer (or a 0-d integer tensor); all splits must share ``x``'s shape. The
:attr:`UserData.fingerprint` (sizes, shape and a hash of a few samples) lets resumable runs tell one user
dataset from another without storing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset
from torch.utils.data.dataloader import default_collate

from tensorslim.errors import DataError

#: samples read from a loader that must be materialised
MAX_SAMPLES = 1_000_000


@dataclasses.dataclass(frozen=True)
class UserData:
    """One user split, ready for :func:`tensorslim.data.batches`."""

    dataset: Dataset
    input_shape: tuple[int, ...]
    batch_size: int | None  # the DataLoader's, when one was given
    fingerprint: str


def is_user_data(obj: Any) -> bool:
    """True for what :func:`as_dataset` accepts (a Dataset or a DataLoader), False for a dataset name."""
    return isinstance(obj, (Dataset, DataLoader))


def _check_sample(sample: Any, what: str) -> tuple[int, ...]:
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DataError(f"{what}: samples must be (image, label) pairs, got {type(sample).__name__}")
    x, y = sample
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not 1 <= x.dim() <= 3:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{what}: an image must be a float tensor C×H×W (1 to 3 dims), got {got}")
    if isinstance(y, torch.Tensor):
        if y.dim() != 0 or y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(f"{what}: a label must be an integer, got a {y.dtype} tensor of shape {tuple(y.shape)}")
    elif isinstance(y, bool) or not isinstance(y, int):
        raise DataError(f"{what}: a label must be an integer, got {type(y).__name__}")
    if not torch.isfinite(x).all():
        raise DataError(f"{what}: the first image holds NaN or infinite values")
    return tuple(int(d) for d in x.shape)


def _materialise(loader: DataLoader, what: str, max_samples: int) -> TensorDataset:
    xs, ys, n = [], [], 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError(f"{what}: the DataLoader must yield (images, labels) batches")
        x, y = batch
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape[:1] != y.shape[:1]:
            raise DataError(f"{what}: the DataLoader must yield (images, labels) tensor batches of one length")
        xs.append(x.detach().cpu())
        ys.append(y.detach().cpu().long())
        n += len(y)
        if n > max_samples:
            raise DataError(f"{what}: the DataLoader yields more than {max_samples:,} samples; pass its map-style "
                            "dataset instead")
    if not xs:
        raise DataError(f"{what}: the DataLoader yields no batch")
    try:
        return TensorDataset(torch.cat(xs), torch.cat(ys))
    except RuntimeError as exc:
        raise DataError(f"{what}: the DataLoader's batches differ in shape ({exc})") from None


def _plain(loader: DataLoader) -> bool:
    """A loader whose dataset tensorslim may batch itself without changing what a batch holds."""
    return (not isinstance(loader.dataset, IterableDataset) and loader.collate_fn is default_collate
            and loader.batch_size is not None)


def _fingerprint(ds: Dataset, shape: tuple[int, ...]) -> str:
    h = hashlib.sha256(repr((len(ds), shape)).encode())
    n = len(ds)
    for i in sorted({0, n // 2, n - 1}):
        x, y = ds[i]
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
        h.update(str(int(y)).encode())
    return h.hexdigest()[:16]


def as_dataset(obj: Any, what: str = "dataset", *, max_samples: int = MAX_SAMPLES) -> UserData:
    """A user Dataset or DataLoader as a checked map-style dataset (see the module doc); DataError otherwise."""
    batch_size = None
    if isinstance(obj, DataLoader):
        batch_size = obj.batch_size
        obj = obj.dataset if _plain(obj) else _materialise(obj, what, max_samples)
    if not isinstance(obj, Dataset) or isinstance(obj, IterableDataset):
        raise DataError(f"{what}: expected a dataset name, a map-style torch Dataset or a DataLoader, "
                        f"got {type(obj).__name__}")
    try:
        n = len(obj)
    except TypeError:
        raise DataError(f"{what}: the dataset has no len(); wrap it in a DataLoader") from None
    if n == 0:
        raise DataError(f"{what}: the dataset is empty")
    shape = _check_sample(obj[0], what)
    return UserData(obj, shape, batch_size, _fingerprint(obj, shape))


def unwrap(obj: Any, what: str = "dataset") -> Any:
    """A DataLoader's checked dataset (see :func:`as_dataset`); anything else as it is."""
    return as_dataset(obj, what).dataset if isinstance(obj, DataLoader) else obj


def splits(obj: Any, *, val_fraction: float = 0.1, seed: int = 0
           ) -> tuple[UserData, UserData, UserData | None, dict[str, Any]]:
    """(train, val, test or None, a JSON description) from a dict, a tuple or one dataset (module doc)."""
    if isinstance(obj, Mapping):
        unknown = sorted(set(obj) - {"train", "val", "test"})
        if unknown or "train" not in obj:
            raise DataError(f"user data: a dict needs a 'train' key and may have 'val' and 'test'"
                            f"{'; unknown: ' + ', '.join(map(str, unknown)) if unknown else ''}")
        parts = [obj["train"], obj.get("val"), obj.get("test")]
    elif isinstance(obj, (tuple, list)):
        if not 1 <= len(obj) <= 3:
            raise DataError(f"user data: give (train, val) or (train, val, test), not {len(obj)} datasets")
        parts = [*obj, None, None][:3]
    else:
        parts = [obj, None, None]
    train = as_dataset(parts[0], "train data")
    carved = parts[1] is None
    if carved:
        n = len(train.dataset)
        n_val = int(round(n * val_fraction))
        if not 0 < n_val < n:
            raise DataError(f"train data: {n} samples are too few to carve a validation split off; pass one")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        val = UserData(Subset(train.dataset, order[:n_val]), train.input_shape, None, train.fingerprint + "/val")
        train = dataclasses.replace(train, dataset=Subset(train.dataset, order[n_val:]))
    else:
        val = as_dataset(parts[1], "val data")
    test = as_dataset(parts[2], "test data") if parts[2] is not None else None
    for name, part in (("val", val), ("test", test)):
        if part is not None and part.input_shape != train.input_shape:
            raise DataError(f"{name} data: images are {part.input_shape} but the train images are "
                            f"{train.input_shape}")
    describe = {"name": "user", "input_shape": list(train.input_shape),
                "sizes": {"train": len(train.dataset), "val": len(val.dataset),
                          "test": None if test is None else len(test.dataset)},
                "val": f"carved off train ({val_fraction:g}, seed {seed})" if carved else "given",
                "fingerprint": hashlib.sha256("/".join(
                    p.fingerprint for p in (train, val, test) if p is not None).encode()).hexdigest()[:16]}
    return train, val, test, describe
