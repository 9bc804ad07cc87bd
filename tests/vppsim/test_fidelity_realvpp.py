"""Emulator fidelity: every scripted sequence (``fidelity_sequences.py``) on the emulator and on a
private, fresh VPP, all replies compared field by field (``fidelity.py``); none may differ."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpp_papi import VPPApiClient

from tests.realvpp import RealVpp
from tests.vppsim import fidelity_sequences
from tests.vppsim.fidelity import SEQUENCES, Recorder, compare
from vppagent.vppsim.testing import running_vppsim

pytestmark = pytest.mark.realvpp
VHOST_NET = Path("/dev/vhost-net")


@pytest.fixture(scope="module")
def clients(fresh_real_vpp: RealVpp) -> Iterator[tuple[VPPApiClient, VPPApiClient]]:
    """The emulator and a fresh VPP, each with one client, for the whole module (same order on both)."""
    with running_vppsim() as sim:
        sim.faults.no_vhost_net = not VHOST_NET.exists()  # as the host the real VPP runs on
        emulator = VPPApiClient(server_address=str(sim.socket_path), bootstrapapi=True, read_timeout=5)
        real = VPPApiClient(server_address=fresh_real_vpp.socket_path, bootstrapapi=True, read_timeout=5)
        emulator.connect("fidelity")
        real.connect("fidelity")
        yield emulator, real
        emulator.disconnect()
        real.disconnect()


@pytest.fixture
def veth() -> Iterator[None]:
    """The host veth pair the af_packet sequence attaches to."""
    name, peer = fidelity_sequences.VETH
    made = subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a veth pair for af_packet: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["ip", "link", "del", name], check=True, capture_output=True)


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_emulator_answers_as_vpp(name: str, clients: tuple[VPPApiClient, VPPApiClient],
                                 request: pytest.FixtureRequest) -> None:
    if name.startswith("af_packet"):
        request.getfixturevalue("veth")
    emulator, real = clients
    ours, theirs = Recorder(emulator), Recorder(real)
    SEQUENCES[name](ours)
    SEQUENCES[name](theirs)
    comparison = compare(ours.steps, theirs.steps)
    assert comparison.fields > 0
    assert comparison.differences == [], "\n".join(comparison.differences)
