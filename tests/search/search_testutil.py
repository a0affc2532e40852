"""Shared helpers for the search tests: a tiny space on small synthetic images, a worker script."""

from __future__ import annotations

from tensorslim.search import Fidelity, SearchSpace

SHAPE = (1, 12, 12)
DATA_OPTIONS = {"input_shape": SHAPE, "num_samples": 96, "num_test": 32, "num_classes": 3}
LOW = Fidelity(epochs=1, max_batches=1, val_batches=1, batch_size=32)


def tiny_space(**overrides) -> SearchSpace:
    base = dict(input_shape=SHAPE, num_classes=3, stages=[1, 2], depths=[1], widths=[[4, 6], [6, 8]],
                stem_widths=[4], kernels=[3], expansions=[1, 2], downsample=[1, 2], head_hw_max=4)
    base.update(overrides)
    return SearchSpace(**base)


