"""MNIST-style idx files (``train-images-idx3-ubyte`` ...), raw or gzip-compressed.

idx format (big-endian): two zero bytes, a type code (``0x08`` = unsigned byte), the number of dimensions
``d``, then ``d`` uint32 sizes, then the data in row-major order. Images are ``N×28×28`` (magic ``0x803``),
labels ``N`` (magic ``0x801``).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from tensorslim.data._base import Augment, ImageDataset, InMemoryDataset
from tensorslim.data._locate import find
from tensorslim.data._source import DatasetInfo, FileSource, Request
from tensorslim.data._splits import train_val_indices
from tensorslim.errors import DataError

UBYTE = 0x08
_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_SIZE = 4  # decoded files kept: train + test images and labels of one dataset


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip ({_one_line(exc)})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or _one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_idx(raw: bytes, path: Path, ndim: int) -> np.ndarray:
    """Decode an unsigned-byte idx file of ``ndim`` dimensions, validating every header field."""
    if len(raw) < 4:
        raise DataError(f"{path}: not an idx file (only {len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    expected = (UBYTE << 8) | ndim
    if raw[:2] != b"\0\0":
        raise DataError(f"{path}: bad magic number 0x{magic:08x} (expected 0x{expected:08x})")
    if raw[2] != UBYTE:
        raise DataError(f"{path}: idx element type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    if raw[3] != ndim:
        raise DataError(f"{path}: idx file has {raw[3]} dimensions, expected {ndim} (magic 0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    want, have = math.prod(dims), len(raw) - header
    if want != have:
        shape = "x".join(map(str, dims))
        raise DataError(f"{path}: size mismatch: header says {shape} = {want} bytes of data, file has {have}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read and validate an idx file (read-only array); recently read files are served from a cache."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or _one_line(exc)})") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, ndim)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    array = parse_idx(_read_bytes(path), path, ndim)
    _CACHE[key] = array
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return array


def find_idx_file(directory: Path, stem: str, kind: str) -> Path | None:
    """``<stem>-<kind>`` (or the ``<stem>.<kind>`` spelling), raw preferred over ``.gz``."""
    for sep in ("-", "."):
        for ext in ("", ".gz"):
            candidate = directory / f"{stem}{sep}{kind}{ext}"
            if candidate.is_file():
                return candidate
    return None


_FILES = {
    "train": (("train-images", "idx3-ubyte"), ("train-labels", "idx1-ubyte")),
    "test": (("t10k-images", "idx3-ubyte"), ("t10k-labels", "idx1-ubyte")),
}


def _missing(directory: Path) -> list[str]:
    return [
        f"{stem}-{kind}[.gz]"
        for pair in _FILES.values()
        for stem, kind in pair
        if find_idx_file(directory, stem, kind) is None
    ]


class IdxSource(FileSource):
    """MNIST and Fashion-MNIST: 60,000 training and 10,000 test 28×28 grey images, 10 classes."""

    SHAPE = (1, 28, 28)
    looked_for = "train-images-idx3-ubyte[.gz]"
    found_detail = "idx files (train + t10k)"

    def __init__(self, name: str, classes: tuple[str, ...], mean: float, std: float, flip: bool, title: str):
        self.name = name
        self.classes = classes
        self.mean = mean
        self.std = std
        self.flip = flip
        self.title = title

    def info(self, **options) -> DatasetInfo:
        self.reject_options(options)
        return DatasetInfo(self.name, self.SHAPE, len(self.classes), self.classes, f"{self.title} (idx files)")

    def standard_augment(self, input_shape: tuple[int, int, int]) -> Augment:
        return Augment(pad=2, flip=self.flip)

    def locate(self, data_dir):
        return find(self.name, data_dir, lambda d: find_idx_file(d, "train-images", "idx3-ubyte") is not None)

    def missing(self, directory: Path) -> list[str]:
        return _missing(directory)

    def load(self, request: Request) -> ImageDataset:
        self.reject_options(request.options)
        self.check_image_size(request.image_size, self.SHAPE[1])
        which = "test" if request.split == "test" else "train"
        images, labels = self._read_pair(self.directory(request.data_dir), which)
        if request.split == "test":
            images, labels = images.copy(), labels.copy()
        else:
            idx = train_val_indices(self.name, request.split, len(labels), request.val_fraction, request.seed)
            images, labels = images[idx], labels[idx]
        return InMemoryDataset(
            torch.from_numpy(images).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
            name=self.name,
            split=request.split,
            classes=self.classes,
            mean=(self.mean,),
            std=(self.std,),
            augment=self.resolve_augment(request, self.SHAPE),
        )

    def _read_pair(self, directory: Path, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Images ``N×28×28`` and labels ``N`` of the official ``which`` set, cross-checked."""
        paths = []
        for stem, kind in _FILES[which]:
            path = find_idx_file(directory, stem, kind)
            if path is None:
                raise DataError(f"{self.name}: no {stem}-{kind}[.gz] in {directory}")
            paths.append(path)
        images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
        if images.shape[1:] != self.SHAPE[1:]:
            h, w = images.shape[1:]
            raise DataError(f"{paths[0]}: images are {h}x{w}, expected 28x28")
        if len(images) != len(labels):
            raise DataError(f"{paths[0]}: {len(images)} images but {paths[1].name} has {len(labels)} labels")
        bad = np.flatnonzero(labels >= len(self.classes))
        if bad.size:
            raise DataError(
                f"{paths[1]}: label {labels[bad[0]]} at index {bad[0]} is out of range 0..{len(self.classes) - 1}"
            )
        return images, labels


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(d) for d in range(10))

FASHION_MNIST = IdxSource("fashion-mnist", FASHION_CLASSES, 0.2860, 0.3530, flip=True, title="Fashion-MNIST")
MNIST = IdxSource("mnist", MNIST_CLASSES, 0.1307, 0.3081, flip=False, title="MNIST")
