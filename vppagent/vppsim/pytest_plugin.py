"""Pytest fixtures for suites that test against the emulator.

Import them into a ``conftest.py``::

    from vppagent.vppsim.pytest_plugin import vppsim, vppsim_client  # noqa: F401

``vppsim`` is a running :class:`~vppagent.vppsim.VppSim` on a private socket (fresh state
per test); ``vppsim_client`` is a connected ``vpp_papi.VPPApiClient`` that fetched its
definitions with ``get_api_json`` (``bootstrapapi=True``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vpp_papi import VPPApiClient

from vppagent.vppsim.server import VppSim
from vppagent.vppsim.testing import running_vppsim


@pytest.fixture
def vppsim() -> Iterator[VppSim]:
    with running_vppsim() as sim:
        yield sim


@pytest.fixture
def vppsim_client(vppsim: VppSim) -> Iterator[VPPApiClient]:
    client = VPPApiClient(server_address=str(vppsim.socket_path), bootstrapapi=True, read_timeout=2)
    client.connect("vppsim-test")
    yield client
    if client.transport.connected:
        client.disconnect()
