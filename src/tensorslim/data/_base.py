"""Dataset classes shared by every loader: normalisation, vectorised augmentation, batching.

Two kinds of dataset exist:

* :class:`InMemoryDataset` keeps the whole split as a ``uint8`` tensor ``N×C×H×W`` plus ``int64`` labels and
  serves whole batches with :meth:`InMemoryDataset.iter_batches` (indexing, augmentation and normalisation
  done with array ops on the whole batch, no Python loop over samples).
* Lazy datasets (Imagenette folders) decode one file per ``__getitem__`` and are batched by a ``DataLoader``.

:func:`batches` hides the difference. The per-batch work (gather, crop, flip, uint8 -> float) runs in numpy on
the calling thread: it never touches torch's intra-op thread pool, which belongs to the model, and it stays
fast on a busy machine where a stalled OpenMP worker would hold every small torch op up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import DataLoader, Dataset

from tensorslim.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Augment:
    """Train-time augmentation: zero-pad by ``pad`` pixels and crop back at a random offset (a random
    translation of up to ``pad`` pixels), then flip horizontally with probability 1/2 when ``flip``."""

    pad: int = 0
    flip: bool = False


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``aug`` independently to every image of the CPU batch ``x`` (``N×C×H×W``, any dtype)."""
    return torch.from_numpy(_augment(x.numpy(), aug, generator))


def _augment(x: np.ndarray, aug: Augment, generator: torch.Generator | None) -> np.ndarray:
    """Random crop: every image gets its own offset ``(oy, ox)`` in ``[0, 2·pad]²`` into the zero-padded
    batch; a sliding-window view exposes all crops and one advanced index picks each image's own. Flip: a
    per-image coin, applied with one ``np.where``. Random numbers come from ``generator`` (torch's global
    generator when ``None``) in the order oy, ox, coin."""
    n, _, h, w = x.shape
    if aug.pad > 0:
        p = aug.pad
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # N×C×(2p+1)×(2p+1)×H×W view
        oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).numpy()
        ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).numpy()
        x = windows[np.arange(n), :, oy, ox]  # advanced indices around a slice: result is N×C×H×W
    if aug.flip:
        coin = (torch.rand(n, generator=generator) < 0.5).numpy()
        x = np.where(coin[:, None, None, None], x[..., ::-1], x)
    return np.ascontiguousarray(x)


class ImageDataset(Dataset):
    """A labelled image dataset: ``ds[i] -> (float32 C×H×W tensor normalised per channel, int label)``.

    Attributes: ``name``, ``split`` (``"train"``, ``"val"`` or ``"test"``), ``num_classes``, ``input_shape``
    ``(C, H, W)``, ``classes`` (one name per label), ``mean`` / ``std`` (per channel, on the ``[0, 1]``
    scale) and ``augment`` (an :class:`Augment` or ``None``). Subclasses implement ``__len__``,
    ``__getitem__`` and ``labels``.
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        classes: Sequence[str],
        input_shape: tuple[int, int, int],
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment | None = None,
    ):
        channels = input_shape[0]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"{name}: mean/std need {channels} values, got {len(mean)}/{len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"{name}: std must be positive, got {tuple(std)}")
        self.name = name
        self.split = split
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        # (u8 / 255 - mean) / std  ==  u8 * scale + shift, with scale and shift computed once per dataset.
        std_a, mean_a = np.array(self.std), np.array(self.mean)
        self._scale = (1.0 / (255.0 * std_a)).astype(np.float32).reshape(channels, 1, 1)
        self._shift = (-mean_a / std_a).astype(np.float32).reshape(channels, 1, 1)

    def normalize(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Map ``uint8`` images (``C×H×W`` or ``N×C×H×W``) to normalised float32: ``(x/255 - mean)/std``."""
        array = images.numpy() if isinstance(images, torch.Tensor) else images
        out = np.multiply(array, self._scale, dtype=np.float32)
        out += self._shift
        return torch.from_numpy(out)

    @property
    def labels(self) -> torch.Tensor:
        """All labels of the split as an int64 tensor (no image is decoded)."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        aug = "" if self.augment is None else f", augment={self.augment}"
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}{aug})"
        )


class InMemoryDataset(ImageDataset):
    """A split held in memory: ``images`` uint8 ``N×C×H×W`` and ``labels`` int64 ``N``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, **kwargs):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {images.dtype} {tuple(images.shape)}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be 1-D with {images.shape[0]} entries, got {tuple(labels.shape)}")
        super().__init__(input_shape=tuple(images.shape[1:]), **kwargs)
        self.images = images.contiguous()
        self._labels = labels.to(torch.int64).contiguous()

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].numpy()
        if self.augment is not None:
            x = _augment(x[None], self.augment, None)[0]
        return self.normalize(x), int(self._labels[index])

    def iter_batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        *,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield ``(x float32 B×C×H×W normalised, y int64 B)`` batches covering the split once.

        ``generator`` drives both the shuffle and the augmentation (the global RNG when ``None``), so a
        seeded generator reproduces an epoch exactly.
        """
        _check_batch_size(batch_size)  # here, not inside the generator: fail at the call
        return self._iterate(batch_size, shuffle, generator, drop_last)

    def _iterate(
        self, batch_size: int, shuffle: bool, generator: torch.Generator | None, drop_last: bool
    ) -> Iterator[Batch]:
        images, labels = self.images.numpy(), self._labels.numpy()
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if shuffle else None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if drop_last and stop - start < batch_size:
                break
            if order is None:
                x, y = images[start:stop], labels[start:stop].copy()
            else:
                idx = order[start:stop]
                x, y = images.take(idx, axis=0), labels.take(idx)
            if self.augment is not None:
                x = _augment(x, self.augment, generator)
            yield self.normalize(x), torch.from_numpy(y)


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) != batch_size or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")


def batches(
    ds: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    *,
    drop_last: bool = False,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """Iterate once over ``ds`` in ``(x, y)`` batches.

    Uses the dataset's vectorised ``iter_batches`` when it has one, else a ``DataLoader`` (``num_workers``
    applies only there). The order and augmentation of the in-memory path depend only on ``seed``: pass a
    different seed per epoch to get a different shuffle.
    """
    _check_batch_size(batch_size)
    generator = torch.Generator().manual_seed(int(seed))
    iter_batches = getattr(ds, "iter_batches", None)
    if callable(iter_batches):
        return iter_batches(batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        num_workers=num_workers,
    )
    return iter(loader)
