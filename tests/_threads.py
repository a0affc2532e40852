"""A fixture the test packages share: one torch thread per test (two cores are shared by several runs)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each test on one torch thread and restore the previous count after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
