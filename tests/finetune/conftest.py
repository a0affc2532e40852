"""Shared fixtures: a small LeNet-5 trained briefly on the synthetic set (one thread: the machine is shared)."""

from __future__ import annotations

import pytest
import torch
from tests._threads import _one_thread  # noqa: F401 - autouse fixture

DATA = {"num_samples": 1200, "num_test": 400, "noise": 0.8}


@pytest.fixture(scope="session")
def sets():
    from tensorslim import data

    return tuple(data.load("synthetic", split, **DATA) for split in ("train", "val", "test"))


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, sets):
    """A model directory: lenet5 trained for one epoch on the synthetic set."""
    from tensorslim import modeldir
    from tensorslim.train import TrainConfig, train

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = modeldir.build({"builder": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 10}}, (1, 28, 28))
    train(model, sets[0], None, TrainConfig(epochs=1, batch_size=64, optimizer="adamw"), log=None)
    path = tmp_path_factory.mktemp("ft") / "base"
    modeldir.save(model, path, dataset="synthetic")
    return path


@pytest.fixture()
def base(base_dir):
    from tensorslim import modeldir

    return modeldir.load(base_dir)
