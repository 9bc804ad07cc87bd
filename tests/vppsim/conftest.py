"""Fixtures for the emulator's own tests (``vppsim``) and for the conformance suite's targets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from vpp_papi import VPPApiClient

from tests.realvpp import RealVpp
from vppagent.vppsim import RELEASES, Release, VppSim
from vppagent.vppsim.pytest_plugin import vppsim_client  # noqa: F401  (fixture)
from vppagent.vppsim.release import DEFAULT_RELEASE, release
from vppagent.vppsim.testing import running_vppsim

# The release the real VPP under test is (the one CI installs unless this names another).
REAL_VPP_RELEASE = os.environ.get("VPPAGENT_TEST_VPP_RELEASE", DEFAULT_RELEASE)


@dataclass
class Target:
    """Something that speaks VPP's binary API: the emulator or a real VPP."""

    name: str
    socket_path: str
    api_dir: str | None
    release: Release  # what the target should answer as
    sim: VppSim | None = None
    _clients: list[VPPApiClient] = field(default_factory=list)

    def client(self, *, bootstrap: bool = True, read_timeout: float = 5) -> VPPApiClient:
        if bootstrap or self.api_dir is None:
            client = VPPApiClient(server_address=self.socket_path, bootstrapapi=True, read_timeout=read_timeout)
        else:
            client = VPPApiClient(server_address=self.socket_path, apidir=self.api_dir,
                                  read_timeout=read_timeout)
        client.connect(f"vppagent-test-{len(self._clients)}")
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self._clients:
            if client.transport.connected:
                client.disconnect()
        self._clients.clear()


@pytest.fixture(params=sorted(RELEASES))
def vppsim(request: pytest.FixtureRequest) -> Iterator[VppSim]:
    """The emulator's own tests run with it playing each release."""
    with running_vppsim(request.param) as sim:
        yield sim


@pytest.fixture(params=sorted(RELEASES))
def emulator_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The emulator playing each release in turn."""
    with running_vppsim(request.param) as sim:
        target = Target(f"emulator-{sim.release.name}", str(sim.socket_path), str(sim.release.api_dir),
                        sim.release, sim)
        yield target
        target.close_clients()


@pytest.fixture
def real_vpp_target(real_vpp: RealVpp) -> Iterator[Target]:
    target = Target("real-vpp", real_vpp.socket_path, real_vpp.api_dir, release(REAL_VPP_RELEASE))
    yield target
    target.close_clients()
