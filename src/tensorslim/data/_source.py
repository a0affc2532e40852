"""The interface every dataset source implements, and the small records the public API returns."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorslim.data._base import Augment, ImageDataset
from tensorslim.data._locate import Search
from tensorslim.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset, available without reading any file."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    classes: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class DatasetStatus:
    """Whether ``name`` can be loaded: ``location`` where it was found, ``detail`` what or why not."""

    name: str
    found: bool
    location: str | None
    detail: str


@dataclass(frozen=True)
class Request:
    """The arguments of :func:`tensorslim.data.load`, passed to a source as one value."""

    split: str
    data_dir: str | os.PathLike | None
    val_fraction: float
    seed: int
    augment: bool | None
    image_size: int | None
    options: dict[str, Any] = field(default_factory=dict)


class Source(ABC):
    """One named dataset: how to describe it, find it and load a split of it."""

    name: str
    #: True for datasets whose train split is augmented when ``augment=None`` (CIFAR, Imagenette).
    augment_by_default: bool = False

    @abstractmethod
    def info(self, **options: Any) -> DatasetInfo:
        """Input shape, classes and a description, without touching the files."""

    @abstractmethod
    def status(self, data_dir: str | os.PathLike | None) -> DatasetStatus:
        """Where the dataset is, or where it was looked for (cheap: no decoding)."""

    @abstractmethod
    def load(self, request: Request) -> ImageDataset:
        """Load ``request.split``; every problem with the files raises :class:`DataError`."""

    def standard_augment(self, input_shape: tuple[int, int, int]) -> Augment:
        """The augmentation ``augment=True`` selects (a 2-pixel translation unless overridden)."""
        return Augment(pad=2, flip=False)

    def resolve_augment(self, request: Request, input_shape: tuple[int, int, int]) -> Augment | None:
        """``augment=None``: standard augmentation for the train split of sets that default to it."""
        wanted = request.augment
        if wanted is None:
            wanted = self.augment_by_default and request.split == "train"
        return self.standard_augment(input_shape) if wanted else None

    def reject_options(self, options: dict[str, Any]) -> None:
        if options:
            raise DataError(f"{self.name}: unknown option(s) {', '.join(sorted(options))}")

    def check_image_size(self, image_size: int | None, native: int) -> None:
        """Only Imagenette resizes; elsewhere ``image_size`` may only repeat the native size."""
        if image_size is not None and image_size != native:
            raise DataError(f"{self.name}: images are {native}x{native}; image_size={image_size} is not supported")


class FileSource(Source):
    """A dataset read from files: found by :meth:`locate`, its status and its folder said the same way for all.

    Subclasses give ``looked_for`` (what :meth:`locate` probes for, as the messages name it), ``found_detail``
    and, when more than the probed file is needed, :meth:`missing`.
    """

    looked_for: str
    found_detail: str

    @abstractmethod
    def locate(self, data_dir: str | os.PathLike | None) -> Search:
        """Where the dataset's folder is (``path`` None: not found), and the places searched."""

    def missing(self, directory: Path) -> list[str]:
        """The files or folders the found ``directory`` lacks."""
        return []

    def status(self, data_dir: str | os.PathLike | None) -> DatasetStatus:
        search = self.locate(data_dir)
        if search.path is None:
            return DatasetStatus(self.name, False, None, f"no {self.looked_for} in {search.places}")
        missing = self.missing(search.path)
        if missing:
            return DatasetStatus(self.name, False, str(search.path), f"missing {', '.join(missing)}")
        return DatasetStatus(self.name, True, str(search.path), self.found_detail)

    def directory(self, data_dir: str | os.PathLike | None) -> Path:
        """The dataset's folder, or a :class:`DataError` naming what was looked for and where."""
        search = self.locate(data_dir)
        if search.path is None:
            raise DataError(f"{self.name}: not found: no {self.looked_for} in {search.places}")
        return search.path
