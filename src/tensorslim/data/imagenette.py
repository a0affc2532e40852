"""Imagenette (fast.ai's 10-class ImageNet subset) from its folder layout, decoded lazily with Pillow.

Layout: ``<folder>/train/<wnid>/*.JPEG`` and ``<folder>/val/<wnid>/*.JPEG`` where ``<folder>`` is
``imagenette2-160``, ``imagenette2``, ``imagenette2-320`` or ``imagenette``. The official ``val`` folder is
our ``"test"`` split; ``"val"`` is carved from ``train``. Each image is converted to RGB, its short side
resized to ``image_size`` and the centre square kept; the augmented train split keeps a random square along
the long side instead, then applies a small random translation and a horizontal flip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tensorslim.data._base import Augment, ImageDataset, InMemoryDataset, augment_batch
from tensorslim.data._locate import find
from tensorslim.data._source import DatasetInfo, FileSource, Request
from tensorslim.data._splits import train_val_indices
from tensorslim.errors import DataError

WNIDS = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}
FOLDERS = ("imagenette2-160", "imagenette2", "imagenette2-320", "")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
DEFAULT_SIZE = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode(path: Path, size: int, random_crop: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Decode ``path`` to a uint8 ``3×size×size`` tensor: RGB, short side resized to ``size``, then the
    centre square (or a random square along the long side when ``random_crop``)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # let the JPEG decoder downscale by 2/4/8 when it can
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({' '.join(str(exc).split())})") from None
    top, left = _crop_offset(new_h - size, random_crop, generator), _crop_offset(new_w - size, random_crop, generator)
    square = pixels[top : top + size, left : left + size]
    return torch.from_numpy(np.ascontiguousarray(square.transpose(2, 0, 1)))


def _crop_offset(slack: int, random_crop: bool, generator: torch.Generator | None) -> int:
    if not random_crop or slack == 0:
        return slack // 2
    return int(torch.randint(0, slack + 1, (1,), generator=generator))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def scan(root: Path, part: str, class_dirs: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """``(class folder names, [(file, label), ...])`` of ``root/part``. Labels follow ``class_dirs`` when
    given (the train classes), else the sorted folder names."""
    top = root / part
    if not top.is_dir():
        raise DataError(f"imagenette: no {part}/ folder in {root}")
    found = sorted(d.name for d in top.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"imagenette: no class folders in {top}")
    classes = class_dirs if class_dirs is not None else found
    index = {name: i for i, name in enumerate(classes)}
    unknown = [d for d in found if d not in index]
    if unknown:
        raise DataError(f"imagenette: {top} has class folder(s) not in train/: {', '.join(unknown)}")
    samples = [(f, index[d]) for d in found for f in _image_files(top / d)]
    if not samples:
        raise DataError(f"imagenette: no images (*.JPEG, *.jpg, *.png) under {top}")
    return classes, samples


class ImageFolderDataset(ImageDataset):
    """Images decoded from files on each access; ``samples`` is the list of ``(path, label)``."""

    def __init__(self, samples: list[tuple[Path, int]], image_size: int, **kwargs):
        super().__init__(input_shape=(3, image_size, image_size), **kwargs)
        self.samples = samples
        self.image_size = image_size

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        x = decode(path, self.image_size, random_crop=self.augment is not None)
        if self.augment is not None:
            x = augment_batch(x[None], self.augment)[0]
        return self.normalize(x), label

    def to_memory(self) -> InMemoryDataset:
        """Decode every image once (centre squares) into an :class:`InMemoryDataset` with the same
        attributes; its augmentation keeps the translation and flip but not the long-side crop."""
        images = torch.stack([decode(path, self.image_size, random_crop=False) for path, _ in self.samples])
        return InMemoryDataset(
            images,
            self.labels,
            name=self.name,
            split=self.split,
            classes=self.classes,
            mean=self.mean,
            std=self.std,
            augment=self.augment,
        )


class ImagenetteSource(FileSource):
    """Imagenette: ~9,500 training and ~3,900 test photos of 10 ImageNet classes, served at ``image_size``."""

    name = "imagenette"
    augment_by_default = True
    looked_for = "imagenette2[-160|-320]/train/"
    found_detail = "JPEG folders (decoded lazily)"

    def info(self, image_size: int | None = None, **options) -> DatasetInfo:
        self.reject_options(options)
        size = _size(image_size)
        classes = tuple(WNIDS.values())
        return DatasetInfo(self.name, (3, size, size), len(classes), classes, "Imagenette (JPEG folders)")

    def standard_augment(self, input_shape: tuple[int, int, int]) -> Augment:
        return Augment(pad=max(1, input_shape[1] // 8), flip=True)

    def locate(self, data_dir: str | os.PathLike | None):
        return find(self.name, data_dir, lambda d: (d / "train").is_dir(), subdirs=FOLDERS)

    def missing(self, directory: Path) -> list[str]:
        return [] if (directory / "val").is_dir() else ["val/"]

    def load(self, request: Request) -> ImageDataset:
        self.reject_options(request.options)
        size = _size(request.image_size)
        directory = self.directory(request.data_dir)
        class_dirs, samples = scan(directory, "train")
        if request.split == "test":
            _, samples = scan(directory, "val", class_dirs)
        else:
            idx = train_val_indices(self.name, request.split, len(samples), request.val_fraction, request.seed)
            samples = [samples[i] for i in idx]
        shape = (3, size, size)
        return ImageFolderDataset(
            samples,
            size,
            name=self.name,
            split=request.split,
            classes=tuple(WNIDS.get(d, d) for d in class_dirs),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            augment=self.resolve_augment(request, shape),
        )


def _size(image_size: int | None) -> int:
    size = DEFAULT_SIZE if image_size is None else image_size
    if int(size) != size or size < 8:
        raise DataError(f"imagenette: image_size must be an integer >= 8, got {image_size!r}")
    return int(size)


IMAGENETTE = ImagenetteSource()
