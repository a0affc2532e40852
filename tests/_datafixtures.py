"""Format-exact dataset fixtures for tests/test_data.py, written from the published file formats.

* idx (MNIST / Fashion-MNIST): big-endian header written field by field with ``struct``.
* CIFAR python batches: either a Python-2 style protocol-2 pickle assembled opcode by opcode (what the
  real files contain: ``numpy.core.multiarray._reconstruct``, py2 ``str`` keys), or ``pickle.dumps`` with
  protocol 2 and bytes keys (what re-saved files contain under Python 3).
* Imagenette: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` made with Pillow.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------- idx


def idx_bytes(array: np.ndarray, *, magic: bytes | None = None) -> bytes:
    """An unsigned-byte idx file: 0x00 0x00 0x08 <ndim>, ndim big-endian uint32 sizes, the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = magic if magic is not None else struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    dims = b"".join(struct.pack(">I", d) for d in array.shape)
    return head + dims + array.tobytes()


def write_file(path: Path, payload: bytes, gz: bool) -> Path:
    """Write ``payload`` to ``path`` (``path.gz`` gzip-compressed when ``gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_images(n: int, rng: np.random.Generator, first_id: int = 0) -> np.ndarray:
    """``n`` random 28×28 images whose pixel (0, 0) is a unique id ``first_id + i`` (so n + first_id <= 256)."""
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(first_id, first_id + n, dtype=np.uint8)
    return images


def make_idx_tree(directory: Path, *, n_train: int = 50, n_test: int = 12, gz: bool = True, seed: int = 1) -> dict:
    """A complete MNIST-style folder; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": make_idx_images(n_train, rng),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": make_idx_images(n_test, rng, first_id=100),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_file(directory / name, idx_bytes(array), gz)
    return arrays


# ---------------------------------------------------------------------------- Python 2 style pickles


def _py2(out: bytearray, obj: Any) -> None:
    """Append the protocol-2 opcodes Python 2's cPickle emits for ``obj`` (no memo)."""
    if obj is None:
        out += b"N"
    elif isinstance(obj, bool):
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])
        elif 0 <= obj < 65536:
            out += b"M" + struct.pack("<H", obj)
        else:
            out += b"J" + struct.pack("<i", obj)
    elif isinstance(obj, bytes):  # a py2 str
        out += (b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<i", len(obj))) + obj
    elif isinstance(obj, tuple):
        if 1 <= len(obj) <= 3:
            for item in obj:
                _py2(out, item)
            out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(obj)]
        else:
            out += b"("
            for item in obj:
                _py2(out, item)
            out += b"t"
    elif isinstance(obj, list):
        out += b"]"
        if obj:
            out += b"("
            for item in obj:
                _py2(out, item)
            out += b"e"
    elif isinstance(obj, dict):
        out += b"}"
        if obj:
            out += b"("
            for key, value in obj.items():
                _py2(out, key)
                _py2(out, value)
            out += b"u"
    elif isinstance(obj, np.ndarray):
        assert obj.dtype == np.uint8
        # numpy 1.x: _reconstruct(ndarray, (0,), 'b') then BUILD with (1, shape, dtype, fortran, rawdata)
        out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        _py2(out, (0,))
        _py2(out, b"b")
        out += b"\x87R"
        out += b"("
        _py2(out, 1)
        _py2(out, tuple(obj.shape))
        out += b"cnumpy\ndtype\n"  # dtype('u1', 0, 1) then BUILD with its state
        _py2(out, (b"u1", 0, 1))
        out += b"R"
        _py2(out, (3, b"|", None, None, None, -1, -1, 0))
        out += b"b"
        _py2(out, False)
        _py2(out, np.ascontiguousarray(obj).tobytes())
        out += b"tb"
    else:
        raise TypeError(type(obj))


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled the way Python 2 + numpy 1.x wrote the CIFAR batches."""
    out = bytearray(b"\x80\x02")
    _py2(out, obj)
    return bytes(out + b".")


def py3_pickle(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=2)


WRITERS = {"py2": py2_pickle, "py3": py3_pickle}

# ------------------------------------------------------------------------------------------- CIFAR


def cifar_batch(n: int, rng: np.random.Generator, first_id: int, num_classes: int) -> tuple[np.ndarray, list]:
    """uint8 N×3072 rows (pixel 0 of the red plane = unique id) and a list of labels."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(first_id, first_id + n)
    return data, [int(v) for v in rng.integers(0, num_classes, size=n)]


def make_cifar10(root: Path, *, per_batch: int = 4, n_test: int = 6, writer: str = "py2", seed: int = 2) -> dict:
    """``root/cifar-10-batches-py`` with 5 train batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    dump = WRITERS[writer]
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written: dict[str, tuple[np.ndarray, list]] = {}
    for i in range(1, 7):
        name = f"data_batch_{i}" if i <= 5 else "test_batch"
        data, labels = cifar_batch(per_batch if i <= 5 else n_test, rng, (i - 1) * per_batch, 10)
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(labels))],
        }
        (folder / name).write_bytes(dump(batch))
        written[name] = (data, labels)
    names = [n.encode() for n in CIFAR10_NAMES]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(dump(meta))
    return written


def make_cifar100(root: Path, *, n_train: int = 20, n_test: int = 5, writer: str = "py3", seed: int = 3) -> dict:
    """``root/cifar-100-python`` with train, test and meta (fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    dump = WRITERS[writer]
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for name, n, first in (("train", n_train, 0), ("test", n_test, 200)):
        data, fine = cifar_batch(n, rng, first, 100)
        batch = {
            b"filenames": [f"f{j}.png".encode() for j in range(n)],
            b"batch_label": name.encode(),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": data,
        }
        (folder / name).write_bytes(dump(batch))
        written[name] = (data, fine)
    meta = {
        b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
        b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)],
    }
    (folder / "meta").write_bytes(dump(meta))
    return written


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class SystemCall:
    """Unpickling this would run ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


class Eval:
    """Unpickling this would run ``eval(source)``."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


# -------------------------------------------------------------------------------------- Imagenette

TENCH, SPRINGER = "n01440764", "n02102040"
UNKNOWN_CLASS = "zz_custom"
CLASS_COLOURS = {TENCH: (200, 30, 30), SPRINGER: (30, 200, 30), UNKNOWN_CLASS: (30, 30, 200)}


def make_imagenette(root: Path, *, n_train: int = 4, n_val: int = 2, folder: str = "imagenette2-160") -> Path:
    """A tiny Imagenette tree: 3 classes (two real wnids and one custom folder) of solid-colour JPEGs with
    different sizes and orientations (landscape, portrait, greyscale)."""
    base = root / folder if folder else root
    sizes = [(40, 30), (30, 44), (36, 36), (50, 34)]
    for part, count in (("train", n_train), ("val", n_val)):
        for wnid, colour in CLASS_COLOURS.items():
            target = base / part / wnid
            target.mkdir(parents=True)
            for k in range(count):
                img = Image.new("RGB", sizes[k % len(sizes)], colour)
                if k == 2:
                    img = img.convert("L")  # some Imagenette JPEGs are greyscale
                img.save(target / f"{wnid}_{k}.JPEG", quality=95)
    return base


def three_band_png(path: Path, width: int = 64, height: int = 32) -> None:
    """Left quarter red, middle half green, right quarter blue (lossless): the centre square is all green."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    q = width // 4
    pixels[:, :q] = (255, 0, 0)
    pixels[:, q : width - q] = (0, 255, 0)
    pixels[:, width - q :] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
