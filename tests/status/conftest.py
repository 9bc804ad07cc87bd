from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vpp.helpers import Target
from vppagent.vppsim import VppSim
from vppagent.vppsim.pytest_plugin import vppsim  # noqa: F401  (fixture)


@pytest.fixture
def sim_target(vppsim: VppSim) -> Iterator[Target]:  # noqa: F811
    t = Target(str(vppsim.socket_path), vppsim)
    yield t
    t.cleanup()
