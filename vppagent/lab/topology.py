"""The lab's network: a fabric namespace with a bridge, a namespace per node, one per pod.

Node N's uplink `eth0` (198.18.0.N/24) is a veth whose other end is a port of the fabric bridge.
Nodes forward, and each has a default route to a gateway that does not exist: proxy ARP on a pod's
cali interface answers only for addresses the node routes through another device (env notes §2),
and nothing leaves the fabric, which has no link to the root namespace. Pod namespaces start
empty except for `lo`: their interfaces are made by the agent's CNI Add.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from vppagent.lab.record import LabRecord
from vppagent.lab.scenario import NODE_GATEWAY, NODE_SUBNET, OUTSIDE_ADDRESS, Scenario
from vppagent.netns import call_in_netns

NETNS_DIR = Path("/run/netns")


class TopologyError(RuntimeError):
    pass


def new_prefix() -> str:
    """Short (namespace names stay readable) and unique per run (runs never share a name)."""
    return f"vpl{secrets.token_hex(3)}"


def run(argv: list[str], timeout: float = 10.0) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise TopologyError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def ip_batch(namespace: str | None, commands: list[str]) -> None:
    """Several `ip` commands in one process (`ip -batch`), in `namespace` if given."""
    argv = ["ip", *(["-n", namespace] if namespace else []), "-batch", "-"]
    proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True,
                          timeout=20, check=False)
    if proc.returncode != 0:
        raise TopologyError(f"ip {'-n ' + namespace if namespace else ''} -batch: {proc.stderr.strip()}")


def sysctl(namespace: str, settings: dict[str, str]) -> None:
    """Write /proc/sys/net files from a thread inside `namespace`: net sysctls belong to the
    namespace of the task that opens them (and this needs no procps)."""
    def write() -> None:
        for key, value in settings.items():
            Path("/proc/sys", key.replace(".", "/")).write_text(value)

    call_in_netns(NETNS_DIR / namespace, write)


class Topology:
    def __init__(self, scenario: Scenario, record: LabRecord) -> None:
        self.scenario = scenario
        self.record = record
        self.prefix = record.prefix

    @property
    def fabric(self) -> str:
        return f"{self.prefix}-fabric"

    def node_ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def outside(self) -> str:
        """The host on the nodes' network that is no node (NodePort clients)."""
        return f"{self.prefix}-outside"

    def pod_ns(self, pod: str) -> str:
        return f"{self.prefix}-pod-{pod}"

    def pod_netns_path(self, pod: str) -> Path:
        return NETNS_DIR / self.pod_ns(pod)

    def _add_namespace(self, name: str) -> None:
        self.record.add_namespace(name)
        run(["ip", "netns", "add", name])

    def build(self, kernel_forwarding: bool = True) -> None:
        """`kernel_forwarding` False for VPP nodes: VPP forwards the pods' traffic, and a node
        kernel that sees the same frames on eth0 (af_packet shares the link) must not forward too."""
        forwarding = "1" if kernel_forwarding else "0"
        self._add_namespace(self.fabric)
        ip_batch(self.fabric, ["link set lo up", "link add br0 type bridge", "link set br0 up"])
        for index, node in enumerate(self.scenario.nodes, 1):
            ns = self.node_ns(node.name)
            self._add_namespace(ns)
            address = self.scenario.node_address(node.name)
            ip_batch(ns, [
                "link set lo up",
                f"link add eth0 type veth peer name up{index} netns {self.fabric}",
                f"addr add {address}/{NODE_SUBNET.prefixlen} dev eth0",
                "link set eth0 up",
                f"route add default via {NODE_GATEWAY} dev eth0 onlink",
            ])
            ip_batch(self.fabric, [f"link set up{index} master br0", f"link set up{index} up"])
            # icmp_ratelimit=0: a REJECT answers with an ICMP error, and the kernel sends a host
            # at most 6 of those in a burst, then 1 a second; a pod probing many denied ports
            # would see timeouts instead of fast refusals.
            sysctl(ns, {"net.ipv4.ip_forward": forwarding, "net.ipv6.conf.all.forwarding": forwarding,
                        "net.ipv4.icmp_ratelimit": "0"})
        for _, pod in self.scenario.pods():
            self._add_namespace(self.pod_ns(pod.name))
            ip_batch(self.pod_ns(pod.name), ["link set lo up"])

    def add_outside_host(self) -> None:
        """`outside` on the fabric: OUTSIDE_ADDRESS on its eth0, a port of the bridge."""
        self._add_namespace(self.outside)
        ip_batch(self.outside, [
            "link set lo up",
            f"link add eth0 type veth peer name upoutside netns {self.fabric}",
            f"addr add {OUTSIDE_ADDRESS}/{NODE_SUBNET.prefixlen} dev eth0",
            "link set eth0 up",
        ])
        ip_batch(self.fabric, ["link set upoutside master br0", "link set upoutside up"])


def netns_problem() -> str | None:
    """None when the lab can run here, else why not (for a clear message or a test skip)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, iptables, BIRD)"
    import shutil

    missing = [tool for tool in ("ip", "bird", "birdc", "ipset") if shutil.which(tool) is None]
    if shutil.which("iptables-nft-restore") is None and shutil.which("iptables-legacy-restore") is None:
        missing.append("iptables")
    if missing:
        return f"missing tools: {', '.join(missing)} (Debian: apt-get install iproute2 bird2 ipset iptables)"
    probe = f"vplprobe{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe])
    except (TopologyError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces: {exc}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None
