"""The classifier gate's fixed offsets on a real VPP 26.06 (docs/vpp-driver.md, "Large IP sets"):
a TCP SYN from a member of no set, to a port only a gated set may reach, with IPv4 options (IHL 6,
so the "port" the classifier reads is option bytes) must not reach the pod. Policy says deny; here
VPP 26.06 did not deliver such a SYN (a member's neither), so this guards that path, not the gate."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.realvpp import RealVpp
from tests.realvpp.cases import POD_A, PODS
from tests.realvpp.podlab import PodLab, VppAgentProcess
from tests.realvpp.test_multiset_gate import IN_NONE, multi_objects
from vppagent.netns import call_in_netns

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
NOPS = b"\x01\x01\x01\x00"  # three NOPs and the end of options: IHL 6


def syn_with_options(src: str, dst: str, port: int, options: bytes) -> bool:
    """Whether the SYN reached the pod (an answer, SYN-ACK or RST, came back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if options:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, options)
        sock.bind((src, 40555 if options else 40556))
        sock.settimeout(1.0)
        try:
            sock.connect((dst, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return True


def test_ipv4_options_do_not_reach_a_gated_port(agent: VppAgentProcess, lab: PodLab, vpp: RealVpp) -> None:
    lab.peer_owns((IN_NONE,))
    report = agent.move_to(multi_objects())
    assert report["driver_status"]["gated_lists"] >= 1
    vpp.cli("clear acl-plugin sessions")
    assert not call_in_netns(lab.peer, lambda: syn_with_options(IN_NONE, PODS[POD_A], 8080, b"")), "plain: denied"
    vpp.cli("clear acl-plugin sessions")
    assert not call_in_netns(lab.peer, lambda: syn_with_options(IN_NONE, PODS[POD_A], 8080, NOPS)), "options: denied"
