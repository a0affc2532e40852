from __future__ import annotations

import pytest
from search_testutil import tiny_space

from tensorslim.search import SearchSpace


@pytest.fixture
def space() -> SearchSpace:
    return tiny_space()
