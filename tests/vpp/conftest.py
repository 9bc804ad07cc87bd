"""Fixtures for the VPP driver's tests: the emulator, or a real VPP for tests marked `realvpp`.

`target` is parametrised: "emulator" always runs; "realvpp" runs the same test against the VPP
of the `real_vpp` fixture (tests/conftest.py: a private VPP, or the one at VPPAGENT_TEST_VPP_SOCKET) and
skips with the reason when there is none. Pods are loopbacks
tagged with a workload id (what a CNI Add leaves behind), which both can make; everything a test
creates on a real VPP is removed afterwards. `sim` is the emulator alone, for packet checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realvpp import RealVpp
from tests.vpp.helpers import FakePlumbing, Target, make_driver
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.vppsim import VppSim
from vppagent.vppsim.pytest_plugin import vppsim  # noqa: F401  (fixture)


@pytest.fixture(params=["emulator", pytest.param("realvpp", marks=pytest.mark.realvpp)])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "emulator":
        sim: VppSim = request.getfixturevalue("vppsim")
        t = Target(str(sim.socket_path), sim)
    else:
        real: RealVpp = request.getfixturevalue("real_vpp")  # tests/conftest.py
        t = Target(real.socket_path, None)
    yield t
    t.cleanup()


@pytest.fixture
def sim_target(vppsim: VppSim) -> Iterator[Target]:  # noqa: F811
    t = Target(str(vppsim.socket_path), vppsim)
    yield t
    t.cleanup()


@pytest.fixture
def driver(target: Target) -> Iterator[VppDriver]:
    d = make_driver(target)
    yield d
    d.close()


@pytest.fixture
def sim_driver(sim_target: Target) -> Iterator[VppDriver]:
    d = make_driver(sim_target)
    yield d
    d.close()


@pytest.fixture
def plumbing() -> FakePlumbing:
    return FakePlumbing()
