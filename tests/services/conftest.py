from __future__ import annotations

from collections.abc import Iterator

import pytest

from vppagent.lab.apiserver import StandInApiServer


@pytest.fixture
def api() -> Iterator[StandInApiServer]:
    """The API server stand-in, started on a free port of 127.0.0.1."""
    server = StandInApiServer().start()
    yield server
    server.stop()
