"""Shared fixtures of the decomposition tests: seeded generators and the tensors with a known answer."""

from __future__ import annotations

import pytest
import torch
from tests._threads import _one_thread  # noqa: F401 - autouse fixture


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
