from __future__ import annotations

import pytest
from pg_server import pg_url, postgres_server  # noqa: F401 - fixtures: a throwaway PostgreSQL server
from search_testutil import tiny_space
from study_checks import spawn  # noqa: F401 - fixture: worker processes killed when the test ends

from tensorslim.search import SearchSpace


@pytest.fixture
def space() -> SearchSpace:
    return tiny_space()
