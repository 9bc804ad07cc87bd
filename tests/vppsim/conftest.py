"""Fixtures for the emulator's own tests (``vppsim``) and for the conformance suite's targets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from vpp_papi import VPPApiClient

from vppagent.vppsim import API_DIR, VppSim
from vppagent.vppsim.pytest_plugin import vppsim, vppsim_client  # noqa: F401  (fixtures)

REAL_VPP_SOCKET_ENV = "VPPAGENT_TEST_VPP_SOCKET"
REAL_VPP_API_DIR_ENV = "VPPAGENT_TEST_VPP_API_DIR"


@dataclass
class Target:
    """Something that speaks VPP's binary API: the emulator or a real VPP."""

    name: str
    socket_path: str
    api_dir: str | None
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


@pytest.fixture
def emulator_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    sim: VppSim = request.getfixturevalue("vppsim")
    target = Target("emulator", str(sim.socket_path), str(API_DIR), sim)
    yield target
    target.close_clients()


@pytest.fixture
def real_vpp_target() -> Iterator[Target]:
    socket_path = os.environ.get(REAL_VPP_SOCKET_ENV)
    if not socket_path:
        pytest.skip(f"{REAL_VPP_SOCKET_ENV} is not set: no real VPP to run the conformance suite against")
    if not Path(socket_path).exists():
        pytest.skip(f"{REAL_VPP_SOCKET_ENV}={socket_path} does not exist")
    api_dir = os.environ.get(REAL_VPP_API_DIR_ENV, "/usr/share/vpp/api")
    target = Target("real-vpp", socket_path, api_dir if Path(api_dir).is_dir() else None)
    yield target
    target.close_clients()
