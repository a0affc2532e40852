"""CIFAR-10 and CIFAR-100 in the "python version" layout, read with a restricted unpickler.

Layouts: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``cifar-100-python/{train, test, meta}``. Each batch is a (Python 2) pickle of a dict with ``data`` (uint8
``N×3072``, rows of R, G, B planes of 32×32) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).

A pickle can run arbitrary code when loaded, so :class:`RestrictedUnpickler` resolves only the few numpy
globals that rebuilding an ``ndarray`` needs and refuses every other global with :class:`DataError`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorslim.data._base import Augment, ImageDataset, InMemoryDataset
from tensorslim.data._locate import find
from tensorslim.data._source import DatasetInfo, FileSource, Request
from tensorslim.data._splits import train_val_indices
from tensorslim.errors import DataError

try:  # numpy >= 2 (numpy 1.26 also ships the alias)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of ``bytes`` call (``_codecs.encode(str, "latin1")``), and nothing else."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only as encode(str, 'latin1')")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    """What Python 3 protocol-2 pickles of ``b""`` call (``bytes()``), and nothing else."""
    if args:
        raise pickle.UnpicklingError("builtins.bytes is allowed only without arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Every global a CIFAR pickle may reference, old (numpy.core, py2) and new (numpy._core) spellings."""
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _empty_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        table[(f"{package}.multiarray", "scalar")] = _multiarray.scalar
        table[(f"{package}.numeric", "_frombuffer")] = _numeric._frombuffer
    return table


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dicts, lists, strings and numbers, and nothing else."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        super().__init__(file, encoding="bytes")  # CIFAR batches are Python 2 pickles
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.path}: refuses to unpickle {module}.{name} (only numpy array globals are allowed)"
            ) from None


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; any failure becomes a one-line DataError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except DataError:
        raise
    except Exception as exc:  # untrusted bytes can fail in many ways; all mean "corrupt"
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: corrupt pickle ({type(exc).__name__}: {detail})") from None


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as ``(uint8 N×3×32×32, int64 N)``, validated."""
    batch = _str_keys(load_pickle(path), path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{path}: no {key!r} entry (keys: {', '.join(sorted(batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 Nx3072 array, found {what}")
    try:
        labels = np.asarray(batch[label_key])
    except Exception:
        labels = np.asarray([])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DataError(f"{path}: {label_key!r} must be {len(data)} integers, found {labels.dtype} {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is out of range 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_label_names(path: Path, key: str, expected: int) -> tuple[str, ...] | None:
    """Class names from a meta file, or ``None`` when the file is absent."""
    if not path.is_file():
        return None
    meta = _str_keys(load_pickle(path), path)
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != expected:
        raise DataError(f"{path}: {key!r} must be a list of {expected} names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


class CifarSource(FileSource):
    """CIFAR-10 / CIFAR-100 (fine labels): 50,000 training and 10,000 test 32×32 colour images."""

    augment_by_default = True
    SHAPE = (3, 32, 32)
    found_detail = "python pickle batches"

    def __init__(
        self,
        name: str,
        folder: str,
        train_files: tuple[str, ...],
        test_file: str,
        meta: tuple[str, str],
        label_key: str,
        classes: tuple[str, ...],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ):
        self.name, self.folder = name, folder
        self.train_files, self.test_file = train_files, test_file
        self.meta, self.label_key = meta, label_key
        self.classes, self.mean, self.std = classes, mean, std

    def info(self, **options) -> DatasetInfo:
        self.reject_options(options)
        title = "CIFAR-100 (fine labels)" if len(self.classes) == 100 else "CIFAR-10"
        return DatasetInfo(self.name, self.SHAPE, len(self.classes), self.classes, f"{title} (python pickles)")

    def standard_augment(self, input_shape: tuple[int, int, int]) -> Augment:
        return Augment(pad=4, flip=True)

    @property
    def looked_for(self) -> str:
        return f"{self.folder}/{self.train_files[0]}"

    def locate(self, data_dir):
        probe = lambda d: (d / self.train_files[0]).is_file()  # noqa: E731
        return find(self.name, data_dir, probe, subdirs=(self.folder, ""))

    def missing(self, directory: Path) -> list[str]:
        return [f for f in (*self.train_files, self.test_file) if not (directory / f).is_file()]

    def load(self, request: Request) -> ImageDataset:
        self.reject_options(request.options)
        self.check_image_size(request.image_size, self.SHAPE[1])
        directory = self.directory(request.data_dir)
        files = (self.test_file,) if request.split == "test" else self.train_files
        images, labels = self._read(directory, files)
        if request.split != "test":
            idx = train_val_indices(self.name, request.split, len(labels), request.val_fraction, request.seed)
            images, labels = images[idx], labels[idx]
        classes = read_label_names(directory / self.meta[0], self.meta[1], len(self.classes)) or self.classes
        return InMemoryDataset(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(labels),
            name=self.name,
            split=request.split,
            classes=classes,
            mean=self.mean,
            std=self.std,
            augment=self.resolve_augment(request, self.SHAPE),
        )

    def _read(self, directory: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for name in files:
            path = directory / name
            if not path.is_file():
                raise DataError(f"{self.name}: missing {path}")
            parts.append(read_batch(path, self.label_key, len(self.classes)))
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
    "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)  # fmt: skip

CIFAR10 = CifarSource(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    ("batches.meta", "label_names"),
    "labels",
    CIFAR10_CLASSES,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarSource(
    "cifar100",
    "cifar-100-python",
    ("train",),
    "test",
    ("meta", "fine_label_names"),
    "fine_labels",
    CIFAR100_CLASSES,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)
