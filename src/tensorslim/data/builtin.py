"""Datasets that need no files: scikit-learn's ``digits`` and a deterministic ``synthetic`` set."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tensorslim.data._base import ImageDataset, InMemoryDataset
from tensorslim.data._source import DatasetInfo, DatasetStatus, Request, Source
from tensorslim.data._splits import carve, train_val_indices
from tensorslim.errors import DataError

DIGITS_SIZE = 28
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 20_231_123  # fixed: the official test split never depends on the user's seed


def _upsample_to_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear-resize float ``N×C×h×w`` images in ``[0, 1]`` to ``size×size`` and quantise to uint8."""
    big = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return big.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 ``N×1×28×28`` (values 0..16 scaled to [0, 1]) and int64 labels."""
    from sklearn.datasets import load_digits  # slow import, only when asked for

    bunch = load_digits()
    images = torch.from_numpy(bunch.images / 16.0).to(torch.float32).unsqueeze(1)
    return _upsample_to_uint8(images, DIGITS_SIZE), torch.from_numpy(bunch.target.astype(np.int64))


class DigitsSource(Source):
    """scikit-learn's 8×8 handwritten digits (1,797 images), served at 1×28×28; test = fixed 20 %."""

    name = "digits"
    SHAPE = (1, DIGITS_SIZE, DIGITS_SIZE)
    CLASSES = tuple(str(d) for d in range(10))
    MEAN, STD = 0.3053, 0.3247  # of the 28x28 uint8 images / 255, all 1,797

    def info(self, **options: Any) -> DatasetInfo:
        self.reject_options(options)
        return DatasetInfo(self.name, self.SHAPE, 10, self.CLASSES, "scikit-learn digits, upsampled 8x8 -> 28x28")

    def status(self, data_dir) -> DatasetStatus:
        return DatasetStatus(self.name, True, "scikit-learn", "bundled with scikit-learn (load_digits)")

    def load(self, request: Request) -> ImageDataset:
        self.reject_options(request.options)
        self.check_image_size(request.image_size, DIGITS_SIZE)
        images, labels = _digits()
        train, test = carve(len(labels), DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
        if request.split == "test":
            idx = torch.from_numpy(test)
        else:
            inner = train_val_indices(self.name, request.split, len(train), request.val_fraction, request.seed)
            idx = torch.from_numpy(train[inner])
        return InMemoryDataset(
            images[idx],
            labels[idx],
            name=self.name,
            split=request.split,
            classes=self.CLASSES,
            mean=(self.MEAN,),
            std=(self.STD,),
            augment=self.resolve_augment(request, self.SHAPE),
        )


SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "num_samples": 4000,  # official train set (val is carved from it)
    "num_test": 1000,
    "num_classes": 10,
    "input_shape": (1, 28, 28),
    "noise": 0.2,  # std of the per-pixel Gaussian noise, on the [0, 1] scale
    "data_seed": 0,  # seed of the generator (``seed`` of load() only chooses the val split)
}


def _synthetic_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        known = ", ".join(SYNTHETIC_DEFAULTS)
        raise DataError(f"synthetic: unknown option(s) {', '.join(sorted(unknown))}; known: {known}")
    opts = {**SYNTHETIC_DEFAULTS, **options}
    opts["input_shape"] = tuple(int(d) for d in opts["input_shape"])
    if len(opts["input_shape"]) != 3 or min(opts["input_shape"]) < 1:
        raise DataError(f"synthetic: input_shape must be (C, H, W) of positive sizes, got {opts['input_shape']}")
    for key in ("num_samples", "num_test", "num_classes"):
        if int(opts[key]) != opts[key] or opts[key] < 1:
            raise DataError(f"synthetic: {key} must be a positive integer, got {opts[key]!r}")
    if opts["num_classes"] < 2:
        raise DataError("synthetic: num_classes must be at least 2")
    if not 0 <= opts["noise"]:
        raise DataError(f"synthetic: noise must be >= 0, got {opts['noise']!r}")
    return opts


@functools.lru_cache(maxsize=4)
def make_synthetic(
    num_samples: int, num_test: int, num_classes: int, input_shape: tuple[int, int, int], noise: float, data_seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples + num_test`` uint8 images and labels (train first, then test), fully determined by the
    arguments. Each class has a smooth random prototype (a coarse random grid, bilinearly upsampled); a
    sample is its class prototype plus Gaussian pixel noise, so the classes are learnable but not trivial."""
    c, h, w = input_shape
    rng = np.random.default_rng(data_seed)
    coarse = max(2, math.ceil(min(h, w) / 4))
    grid = torch.from_numpy(rng.random((num_classes, c, coarse, coarse), dtype=np.float32))
    prototypes = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    total = num_samples + num_test
    # balanced within each official split, in random order
    labels = np.concatenate([rng.permutation(np.arange(n) % num_classes) for n in (num_samples, num_test)])
    pixels = torch.from_numpy(rng.standard_normal((total, c, h, w), dtype=np.float32)).mul_(noise)
    pixels += prototypes[torch.from_numpy(labels)]
    return pixels.clamp_(0, 1).mul_(255).round_().to(torch.uint8), torch.from_numpy(labels.astype(np.int64))


class SyntheticSource(Source):
    """Deterministic class-conditional images for tests; shape, classes and size set by options."""

    name = "synthetic"

    def info(self, **options: Any) -> DatasetInfo:
        opts = _synthetic_options(options)
        classes = tuple(f"class{k}" for k in range(opts["num_classes"]))
        return DatasetInfo(self.name, opts["input_shape"], opts["num_classes"], classes, "synthetic prototypes+noise")

    def status(self, data_dir) -> DatasetStatus:
        return DatasetStatus(self.name, True, "generated", "deterministic, generated in memory")

    def load(self, request: Request) -> ImageDataset:
        opts = _synthetic_options(request.options)
        c, h, w = opts["input_shape"]
        if request.image_size is not None and request.image_size != h:
            raise DataError("synthetic: set the size with input_shape=(C, H, W), not image_size")
        images, labels = make_synthetic(**opts)
        n = opts["num_samples"]
        train_images = images[:n].to(torch.float64) / 255
        mean = train_images.mean(dim=(0, 2, 3)).tolist()
        std = train_images.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        if request.split == "test":
            images, labels = images[n:], labels[n:]
        else:
            idx = torch.from_numpy(train_val_indices(self.name, request.split, n, request.val_fraction, request.seed))
            images, labels = images[idx], labels[idx]
        return InMemoryDataset(
            images.clone(),
            labels.clone(),
            name=self.name,
            split=request.split,
            classes=self.info(**request.options).classes,
            mean=mean,
            std=std,
            augment=self.resolve_augment(request, (c, h, w)),
        )


DIGITS = DigitsSource()
SYNTHETIC = SyntheticSource()
