"""Data-parallel training and fine-tuning with DistributedDataParallel (gloo on CPU, nccl on GPU).

Launch with ``torchrun --nproc-per-node 2 -m tensorslim.cli.ddp_main PATH --data NAME ... --out DIR`` (or
``torchrun ... -m tensorslim.cli finetune ...``). :func:`tensorslim.train.train` uses these helpers itself, so one
training loop serves one process and a process group alike.

* :func:`init_from_env` reads torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` /
  ``MASTER_PORT`` and starts the process group (``gloo`` without CUDA, ``nccl`` with it). Without those
  variables it returns a single-process :class:`DistInfo` and starts nothing, so the same code runs alone.
* :class:`ShardedDataset` is DistributedSampler-like deterministic sharding of an in-memory dataset: every
  process draws the SAME permutation of the split (from the epoch's seed), cuts it into GLOBAL batches of
  ``world × batch_size`` and keeps its own contiguous slice of each, reading only those images. The union of
  the shards of one step is exactly the batch a single process with batch ``world × batch_size`` would see,
  so, with equal shard sizes and no BatchNorm, DDP's gradient average equals the single-process gradient.
  A last partial global batch is split as evenly as possible (and dropped when it has fewer samples than
  processes). Datasets with augmentation or without ``images`` fall back to slicing the global batch.
* In a process group, :func:`tensorslim.train.train` wraps the model in DDP, trains on this process's shard,
  averages the epoch's statistics over all processes, and lets every process READ the checkpoint to resume
  (they share the file system) while only rank 0 WRITES, followed by a barrier. ``batch_size`` in the config
  is then the per-process batch.
* BatchNorm statistics are per process (standard DDP; ``sync_bn=True`` converts to SyncBatchNorm, which
  needs a GPU); buffers are broadcast from rank 0 at every forward.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import TensorSlimError


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_from_env(backend: str | None = None) -> DistInfo:
    """Start the process group from torchrun's environment variables; single-process when they are absent."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if "WORLD_SIZE" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise TensorSlimError(f"distributed run: environment variable {var} is not set (launch with torchrun)")
    use_cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if use_cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return current()


def current() -> DistInfo:
    """The running process group as a :class:`DistInfo` (single process when none is initialized)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    backend = dist.get_backend()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    device = f"cuda:{local}" if backend == "nccl" else "cpu"
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend, device)


def is_main() -> bool:
    return current().is_main


def barrier() -> None:
    if current().active:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main_only(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on rank 0 only (saving, logging files), then wait for it on every rank."""
    result = fn(*args, **kwargs) if is_main() else None
    barrier()
    return result


def wrap(model: nn.Module, info: DistInfo | None = None, *, sync_bn: bool = False) -> nn.Module:
    """``model`` inside DistributedDataParallel (moved to the process's device); unchanged when not distributed."""
    info = info or current()
    if not info.active:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(info.device)
    device_ids = [info.local_rank] if info.device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


class ShardedDataset(torch.utils.data.Dataset):
    """This process's shard of ``dataset``; see the module docstring for the exact rule."""

    def __init__(self, dataset, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise TensorSlimError(f"rank {rank} is not in [0, {world_size})")
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        for attr in ("name", "split", "num_classes", "input_shape", "classes"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        # ceil(ceil(N / w) / B) == ceil(N / (w B)): train's batch count equals the number of global batches
        return math.ceil(len(self.dataset) / self.world_size)

    def __getitem__(self, index: int):
        return self.dataset[index * self.world_size + self.rank]

    def _slice(self, n: int, batch_size: int) -> tuple[int, int] | None:
        """This rank's [start, stop) within a global batch of n samples (per-rank size batch_size)."""
        if n == batch_size * self.world_size:
            return self.rank * batch_size, (self.rank + 1) * batch_size
        if n < self.world_size:
            return None
        bounds = np.linspace(0, n, self.world_size + 1).round().astype(int)
        return int(bounds[self.rank]), int(bounds[self.rank + 1])

    def iter_batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                     *, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds, w = self.dataset, self.world_size
        fast = getattr(ds, "augment", None) is None and hasattr(ds, "images") and hasattr(ds, "normalize")
        if not fast:
            from .data import batches

            seed_gen = generator
            for x, y in ds.iter_batches(batch_size * w, shuffle=shuffle, generator=seed_gen, drop_last=drop_last) \
                    if hasattr(ds, "iter_batches") else batches(ds, batch_size * w, shuffle):
                cut = self._slice(len(y), batch_size)
                if cut is not None:
                    yield x[cut[0]:cut[1]], y[cut[0]:cut[1]]
            return
        n = len(ds)
        # the same draw as InMemoryDataset.iter_batches, so shards reproduce the single-process batches
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        images, labels = ds.images.numpy(), ds.labels.numpy()
        gb = batch_size * w
        for start in range(0, n, gb):
            stop = min(start + gb, n)
            if drop_last and stop - start < gb:
                break
            cut = self._slice(stop - start, batch_size)
            if cut is None:
                continue
            idx = order[start + cut[0]:start + cut[1]]
            yield ds.normalize(images.take(idx, axis=0)), torch.from_numpy(labels.take(idx))


def shard(dataset, info: DistInfo | None = None):
    """``dataset`` as this process's :class:`ShardedDataset` (the dataset itself when not distributed)."""
    info = info or current()
    return ShardedDataset(dataset, info.rank, info.world_size) if info.active else dataset


def all_reduce_sum(values: list[float], info: DistInfo | None = None) -> list[float]:
    """Sum ``values`` over the process group (returned unchanged in a single process)."""
    info = info or current()
    if not info.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.cpu().tolist()

