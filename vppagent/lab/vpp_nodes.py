"""One real VPP per lab node (`vppagent lab run --driver vpp`), inside the node's namespace.

The node's fabric link (its `eth0`) becomes VPP's uplink: an af_packet interface `host-eth0` with
the node's address and eth0's own MAC. The node's kernel keeps eth0 and the same address for its
BGP session (BIRD runs there, as in the kernel lab); both see every frame on the link:
- same MAC on both, so a neighbour's ARP cache is right whichever answers (both do);
- kernel forwarding is off in a VPP node (`Topology`), so pod traffic is forwarded by VPP alone;
- VPP drops TCP to its own address (no host stack: "unknown ip protocol"), so BGP is the kernel's;
  an ICMP echo to the node address is answered twice (shown as DUP by ping).
Pods attach through the agent's CNI Add (af_packet on a veth), which also puts each pod's af_packet
interface in interrupt mode (drivers/vpp/pods/rxmode.py); the lab does the same for the uplink it
makes, so idle nodes do not poll (three VPPs fit on two cores).
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from vppagent.lab.agents import LabError
from vppagent.lab.record import LabRecord
from vppagent.vpprun import VppProcess, VppStartError, vpp_problem

UPLINK = "eth0"  # the node's fabric link (Topology)
__all__ = ["NodeVpp", "vpp_problem"]


def af_packet_name(host_ifname: str) -> str:
    """VPP's name for an af_packet interface on the Linux interface `host_ifname`."""
    return f"host-{host_ifname}"


def link_mac(namespace: str, ifname: str) -> str:
    proc = subprocess.run(["ip", "-n", namespace, "-br", "link", "show", "dev", ifname], capture_output=True,
                          text=True, timeout=10, check=False)
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) < 3:
        raise LabError(f"no link {ifname} in {namespace}: {proc.stderr.strip()}")
    return fields[2]


class NodeVpp:
    """The VPP of one lab node; its files live in the node's lab directory (`<node>/vpp/`)."""

    def __init__(self, node: str, namespace: str, node_dir: Path, record: LabRecord, services: bool = False) -> None:
        self.node, self.namespace, self.record = node, namespace, record
        # A small heap: the lab holds a handful of pods and ACLs. With Services, cnat allocates its
        # session table on the first translated flow, and 256M ran out there (VPP 26.06.0: abort).
        heap = "512M" if services else "256M"
        self.process = VppProcess(node_dir / "vpp", netns=namespace, heap=heap, buffers=8192)

    @property
    def api_socket(self) -> Path:
        return self.process.api_socket

    def start(self) -> None:
        """Start VPP (recorded before anything else can fail, so teardown stops it by pid)."""
        try:
            pid = self.process.start()
        except (VppStartError, OSError) as exc:
            raise LabError(f"VPP on {self.node}: {exc}") from None
        self.record.add_process(pid, "vpp", f"vpp {self.node}")

    def wait_ready(self) -> None:
        try:
            self.process.wait_ready()
        except VppStartError as exc:
            raise LabError(f"VPP on {self.node}: {exc}") from None

    def configure_uplink(self, address: ipaddress.IPv4Interface) -> None:
        """eth0 as VPP's uplink: same MAC as the kernel's eth0, the node's address, up, interrupt mode."""
        mac = link_mac(self.namespace, UPLINK)
        uplink = af_packet_name(UPLINK)
        for command in (f"create host-interface name {UPLINK} hw-addr {mac}",
                        f"set interface ip address {uplink} {address}",
                        f"set interface state {uplink} up"):
            self.cli(command)
        self.interrupt_mode(uplink)

    def interrupt_mode(self, interface: str) -> None:
        """VPP stops polling `interface` (an af_packet interface: see `af_packet_name`)."""
        self.cli(f"set interface rx-mode {interface} interrupt")

    def cli(self, command: str) -> str:
        try:
            return self.process.cli(command)
        except VppStartError as exc:
            raise LabError(f"VPP on {self.node}: {exc}") from None

    def stop(self) -> None:
        self.process.stop()
