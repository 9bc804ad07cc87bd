"""vppsim: a protocol-faithful emulator of VPP's binary API socket (26.06 or 25.10), for tests and development.

Start one in-process::

    with VppSim("/tmp/vpp-api.sock") as sim:
        vpp = VPPApiClient(server_address="/tmp/vpp-api.sock", bootstrapapi=True)
        vpp.connect("agent")
        ...
        sim.connect((tap_a, "10.0.0.2"), (tap_b, "10.0.0.3"), "tcp", 80).established

or as a process: ``python -m vppagent.vppsim --socket PATH [--vpp-version 25.10|26.06]``.  See ``docs/vppsim.md``.
"""

from vppagent.drivers.vpp.api.errors import ApiError
from vppagent.vppsim.codec import API_DIR, ApiDefinitions, load_definitions
from vppagent.vppsim.evaluator import Endpoint, connect, evaluate, send
from vppagent.vppsim.faults import Faults
from vppagent.vppsim.packet import ConnectResult, Direction, Packet, PathResult, Verdict
from vppagent.vppsim.release import DEFAULT_RELEASE, RELEASES, Release
from vppagent.vppsim.server import VppSim
from vppagent.vppsim.state import SimState

__all__ = [
    "API_DIR",
    "DEFAULT_RELEASE",
    "RELEASES",
    "ApiDefinitions",
    "ApiError",
    "ConnectResult",
    "Direction",
    "Endpoint",
    "Faults",
    "Packet",
    "PathResult",
    "Release",
    "SimState",
    "Verdict",
    "VppSim",
    "connect",
    "evaluate",
    "load_definitions",
    "send",
]
