"""Source NAT to another node on a VPP that shares its uplink with the node's kernel (real VPP 26.06).

Wired as the lab's VPP nodes are (vppagent/lab/vpp_nodes.py): VPP runs in the node's namespace, its
uplink is af_packet on the node's ``eth0`` with eth0's MAC and the node's address, and the kernel
keeps eth0 and the same address (forwarding off). Both see every frame. The VPP driver programs a
NodePort whose only backend is on another node (a namespace behind the peer) with a source-NAT
address the kernel does not hold, which the driver makes reachable by proxy ARP on the uplink
(docs/services.md "Source NAT"; the test sets none itself). Shown with real packets:
- every connection from the peer to the node port is answered, and the backend sees the source-NAT
  address;
- the kernel sends no RST meanwhile (answers to the source-NAT address are not its own) and still
  answers ping on the node address, as VPP does (the answer comes twice);
- a node port on the node's own address needs the kernel to leave it alone: without its drop rule
  for the NodePort range the kernel refuses every connection first (measured, docs/services.md), so
  the node here drops TCP to that range, as such a node must.
The driver is used directly (no agent process): what is proven is the VPP side of the design.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.realvpp import API_DIR, RUNTIME_ROOT, pods_unavailable_reason
from tests.realvpp.podlab import sh
from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.services.settings import ServiceSettings
from vppagent.netns import call_in_netns
from vppagent.services.model import Backend, Frontend, ServiceEntry, ServicePortEntry
from vppagent.vpprun import VppProcess

pytestmark = [pytest.mark.realvpp, pytest.mark.root]

NODE_ADDRESS, PEER_ADDRESS, SNAT = "192.0.2.1", "192.0.2.2", "192.0.2.5"  # one /29: SNAT is on the uplink's subnet
BACKEND, NODE_PORT, TARGET_PORT = "10.70.0.2", 30081, 8080
SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(f"remote {a[0]}:{a[1]}".encode()); c.close()
"""


@dataclass
class SharedUplink:
    node: str
    peer: str
    vpp: VppProcess

    def kernel_rsts(self) -> int:
        out = sh("ip", "netns", "exec", self.node, "nstat", "-az", "TcpOutRsts").split()
        return int(out[out.index("TcpOutRsts") + 1])


def _ask(ip: str, port: int) -> str | None:
    try:
        with socket.create_connection((ip, port), timeout=2) as sock:
            return sock.recv(200).decode()
    except OSError:
        return None


@pytest.fixture
def shared_uplink() -> Iterator[SharedUplink]:
    reason = pods_unavailable_reason() or next((f"{tool} is not installed" for tool in ("iptables", "nstat")
                                       if shutil.which(tool) is None), None)
    if reason is not None:
        pytest.skip(f"no VPP sharing a node's uplink: {reason}")
    prefix = f"ku{uuid.uuid4().hex[:4]}"
    node, peer, other = f"{prefix}-node", f"{prefix}-peer", f"{prefix}-n2"
    made: list[str] = []
    run_dir = RUNTIME_ROOT / f"vppagent-{prefix}"
    vpp = VppProcess(run_dir, netns=node, heap="256M", buffers=8192)
    server: subprocess.Popen[bytes] | None = None
    try:
        for ns in (node, peer, other):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer)
        sh("ip", "-n", node, "addr", "add", f"{NODE_ADDRESS}/29", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        # a node port is VPP's: the kernel sharing the address must not refuse it first
        sh("ip", "netns", "exec", node, "iptables", "-I", "INPUT", "-p", "tcp", "-d", NODE_ADDRESS,
           "--dport", "30000:32767", "-j", "DROP")
        sh("ip", "-n", peer, "addr", "add", f"{PEER_ADDRESS}/29", "dev", "eth0")
        sh("ip", "-n", peer, "link", "set", "eth0", "up")
        sh("ip", "-n", peer, "link", "add", "ton2", "type", "veth", "peer", "name", "eth0", "netns", other)
        sh("ip", "-n", peer, "addr", "add", "10.70.0.1/30", "dev", "ton2")
        sh("ip", "-n", peer, "link", "set", "ton2", "up")
        sh("ip", "-n", other, "addr", "add", f"{BACKEND}/30", "dev", "eth0")
        sh("ip", "-n", other, "link", "set", "eth0", "up")
        sh("ip", "-n", other, "route", "add", "default", "via", "10.70.0.1")
        sh("ip", "netns", "exec", peer, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run_dir.mkdir(parents=True, mode=0o700)
        vpp.start()
        vpp.wait_ready()
        mac = sh("ip", "-n", node, "-br", "link", "show", "dev", "eth0").split()[2]
        for command in (f"create host-interface name eth0 hw-addr {mac}",
                        f"set interface ip address host-eth0 {NODE_ADDRESS}/29",
                        "set interface state host-eth0 up", "set interface rx-mode host-eth0 interrupt",
                        f"ip route add 10.64.0.0/10 via {PEER_ADDRESS} host-eth0"):
            vpp.cli(command)
        server = subprocess.Popen(["ip", "netns", "exec", other, sys.executable, "-c", SERVER],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield SharedUplink(node, peer, vpp)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        vpp.stop(remove_dir=True)
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def test_a_node_port_to_another_node_leaves_the_nodes_kernel_alone(shared_uplink: SharedUplink) -> None:
    conn = VppConnection(str(shared_uplink.vpp.api_socket), api_dir=str(API_DIR) if Path(API_DIR).is_dir() else None)
    conn.connect()
    driver = VppDriver(conn, service_settings=ServiceSettings(snat_ipv4=ipaddress.IPv4Address(SNAT)))
    try:
        if not conn.cnat_features:
            pytest.skip("this VPP has no cnat feature mode (before 26.06): no source NAT (docs/services.md)")
        remote = ServiceEntry("default/remote", (ServicePortEntry(
            "http", "tcp", (Frontend(NODE_ADDRESS, NODE_PORT, "tcp", "nodeport"),),
            (Backend(BACKEND, TARGET_PORT),)),))
        driver.set_services({remote.name: remote})
        assert driver.service_errors() == {}
        assert driver.status()["snat_proxy"]["notes"] == [f"{SNAT}: proxy ARP on host-eth0"]
        peer = shared_uplink.peer
        assert call_in_netns(peer, lambda: _ask(BACKEND, TARGET_PORT)), "the other node's server does not answer"
        before = shared_uplink.kernel_rsts()
        answers = call_in_netns(peer, lambda: [_ask(NODE_ADDRESS, NODE_PORT) for _ in range(12)])
        assert None not in answers, answers
        assert {a.split()[1].rsplit(":", 1)[0] for a in answers if a} == {SNAT}, answers
        assert shared_uplink.kernel_rsts() == before  # the kernel answered none of it
        ping = sh("ip", "netns", "exec", peer, "ping", "-c", "2", "-W", "2", NODE_ADDRESS, check=False)
        assert " 0% packet loss" in ping and "DUP!" in ping, ping  # the kernel and VPP both still answer
    finally:
        driver.close()
