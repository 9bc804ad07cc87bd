"""Pods and a node-side peer around a private, real VPP, with the agent attaching the pods.

- Pods: one network namespace each, attached by the agent through Calico's CNI gRPC ``Add``
  (af_packet on a veth whose node end VPP takes), exactly as the CNI plugin asks for them.
- The peer: one more namespace, ``eth0`` on a veth whose node end the test gives VPP itself
  (``create host-interface``, 192.0.2.1/30; the peer is 192.0.2.2) — the node's other side. It owns
  whatever addresses a probe needs as /32s, and VPP routes 10.64.0.0/10 to it (pods' /32s are more
  specific), so a packet from "anyone" is a real packet from a real socket.
- The agent: ``vppagent run --driver vpp --pod-interface af_packet`` on the VPP's API socket, fed
  by felix-shim started as Felix starts its driver (FelixStandIn). Swapped to iptables, it programs
  the lab's own "node" namespace (``--iptables-netns``), never the machine's.

Every name carries the lab's prefix (unique per run); :meth:`PodLab.cleanup` kills what it started
by pid, then deletes the namespaces and the node-side veth ends. Probes only ever address the pods
and the peer, i.e. namespaces made here.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from tests.agentproc import AgentProcess, wait_for
from tests.realvpp import RealVpp
from vppagent.gen.cni import cni_pb2, cni_pb2_grpc
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.lab.felix_standin import FelixStandIn
from vppagent.state.model import DataplaneState

PEER_VPP_ADDRESS = "192.0.2.1"
PEER_ADDRESS = "192.0.2.2"
PEER_ROUTED = "10.64.0.0/10"  # every address a probe uses but a pod goes to the peer (10.64-10.127)
PEER_VPP_ADDRESS6 = "2001:db8::1"
PEER_ADDRESS6 = "2001:db8::2"
PEER_ROUTED6 = "fd64::/15"  # the generator's IPv6 hosts and their edges (fd64:ffff:… to fd65:1::…)
PEER_READY_TIMEOUT = 60.0  # a bound; the peer link answers within milliseconds on a quiet machine


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _ids(messages: Iterable[felix.ToDataplane]) -> dict[str, set[bytes]]:
    out: dict[str, set[bytes]] = {"ipset": set(), "policy": set(), "profile": set()}
    for m in messages:
        if m.HasField("ipset_update"):
            out["ipset"].add(m.ipset_update.id.encode())
        elif m.HasField("active_policy_update"):
            out["policy"].add(m.active_policy_update.id.SerializeToString(deterministic=True))
        elif m.HasField("active_profile_update"):
            out["profile"].add(m.active_profile_update.id.SerializeToString(deterministic=True))
    return out


def transition(previous: Sequence[felix.ToDataplane], current: Sequence[felix.ToDataplane]) -> list[felix.ToDataplane]:
    """What Felix sends to go from `previous` to `current`: every update, then the removes."""
    old, new = _ids(previous), _ids(current)
    removes = [b.ipset_remove(i.decode()) for i in sorted(old["ipset"] - new["ipset"])]
    removes += [felix.ToDataplane(active_policy_remove=felix.ActivePolicyRemove(id=felix.PolicyID.FromString(i)))
                for i in sorted(old["policy"] - new["policy"])]
    removes += [felix.ToDataplane(active_profile_remove=felix.ActiveProfileRemove(id=felix.ProfileID.FromString(i)))
                for i in sorted(old["profile"] - new["profile"])]
    return [*current, *removes]


@dataclass(frozen=True)
class Pod:
    workload_id: str  # namespace/name, as Felix names the workload
    address: str
    address6: str
    netns: str
    host_ifname: str  # the node end of its veth; VPP's interface is host-<this>

    @property
    def netns_path(self) -> Path:
        return Path("/var/run/netns") / self.netns


class PodLab:
    """Namespaces for `pods` (workload id -> IPv4 and IPv6 address) and the peer, named after `prefix`."""

    def __init__(self, prefix: str, pods: dict[str, tuple[str, str]], workdir: Path) -> None:
        self.prefix, self.workdir = prefix, workdir
        self.pods = {wid: Pod(wid, ip, ip6, f"{prefix}-p{i}", f"{prefix}p{i}")
                     for i, (wid, (ip, ip6)) in enumerate(pods.items())}
        self.peer = f"{prefix}-peer"
        self.peer_ifname = f"{prefix}up"
        self.node = f"{prefix}-node"  # where the iptables driver works after a swap (never the root namespace)
        self.processes: list[subprocess.Popen[bytes]] = []  # what the lab started (agent, shim)
        self._made: list[str] = []
        self._peer_owns: set[str] = set()

    # -- namespaces ------------------------------------------------------------------------------
    def build(self) -> PodLab:
        for ns in [*(p.netns for p in self.pods.values()), self.peer, self.node]:
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", self.peer_ifname, "type", "veth", "peer", "name", "eth0", "netns", self.peer)
        sh("ip", "link", "set", self.peer_ifname, "up")
        sh("ip", "-n", self.peer, "addr", "add", f"{PEER_ADDRESS}/30", "dev", "eth0")
        sh("ip", "-n", self.peer, "addr", "add", f"{PEER_ADDRESS6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", self.peer, "link", "set", "eth0", "up")
        sh("ip", "-n", self.peer, "route", "add", PEER_ROUTED, "via", PEER_VPP_ADDRESS)
        sh("ip", "-n", self.peer, "-6", "route", "add", PEER_ROUTED6, "via", PEER_VPP_ADDRESS6)
        return self

    def attach_peer(self, vpp: RealVpp) -> None:
        """The peer's link into VPP: an af_packet interface the test owns (not a pod), addressed,
        routed to. Again after every VPP restart (VPP forgets it; the agent never made it)."""
        name = f"host-{self.peer_ifname}"
        vpp.cli(f"create host-interface name {self.peer_ifname}")
        vpp.cli(f"set interface ip address {name} {PEER_VPP_ADDRESS}/30")
        vpp.cli(f"set interface ip address {name} {PEER_VPP_ADDRESS6}/64")
        vpp.cli(f"set interface state {name} up")
        vpp.interrupt_mode(name)
        vpp.cli(f"ip route add {PEER_ROUTED} via {PEER_ADDRESS} {name}")
        vpp.cli(f"ip route add {PEER_ROUTED6} via {PEER_ADDRESS6} {name}")
        self.wait_peer_link()

    def wait_peer_link(self, timeout: float = PEER_READY_TIMEOUT) -> None:
        """Until VPP answers the peer's ping in both families, asked again each second. Before
        that, a probe's first packet to or from the peer can be lost for reasons no policy has:
        the peer's address still tentative (the kernel's address worker needs the RTNL lock,
        which another namespace's teardown can hold for seconds), or VPP without a neighbour
        entry for the peer (VPP drops the packet that makes it solicit one). The peer's
        solicitation for VPP's address gives VPP that entry too, so the first probe finds the
        path warm, whatever the machine's load."""
        deadline = time.monotonic() + timeout
        for address in (PEER_VPP_ADDRESS, PEER_VPP_ADDRESS6):
            while subprocess.run(["ip", "netns", "exec", self.peer, "ping", "-n", "-q", "-c", "1", "-W", "1", address],
                                 capture_output=True, timeout=30, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"VPP does not answer the peer's ping to {address} within {timeout:.0f} s")

    def peer_owns(self, addresses: Iterable[str]) -> None:
        """Give the peer these addresses (/32, /128 on eth0), so its sockets may send from them."""
        missing = sorted(set(addresses) - self._peer_owns, key=lambda a: (ipaddress.ip_address(a).version,
                                                                          ipaddress.ip_address(a)))
        if not missing:
            return
        batch = "".join(f"addr replace {a}/32 dev eth0\n" if ipaddress.ip_address(a).version == 4
                        else f"addr replace {a}/128 dev eth0 nodad\n" for a in missing)
        proc = subprocess.run(["ip", "-n", self.peer, "-batch", "-"], input=batch, capture_output=True, text=True,
                              timeout=30, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"peer addresses: {proc.stderr.strip()}")
        self._peer_owns.update(missing)

    def kernel_links(self, names: Iterable[str]) -> None:
        """Links (veths going nowhere) named as Felix's endpoints in the node namespace, where a swapped-in iptables
        driver routes: on a node with af_packet pods the host veth ends carry these names in the
        kernel's namespace; here they sit in VPP's (the root namespace, which the test never programs)."""
        for name in names:
            sh("ip", "-n", self.node, "link", "add", name, "type", "veth", "peer", "name", f"{name}k")
            sh("ip", "-n", self.node, "link", "set", name, "up")

    def pod_netns(self) -> dict[str, str]:
        """Each pod address (IPv4 and IPv6) -> its pod's namespace; everything else is the peer's."""
        return {a: p.netns for p in self.pods.values() for a in (p.address, p.address6)}

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), **kwargs)
        self.processes.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.processes:  # ours only, by pid (never one already reaped), before their namespaces go
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in self._made:
            sh("ip", "netns", "del", ns, check=False)
        for name in [self.peer_ifname, *(p.host_ifname for p in self.pods.values())]:
            sh("ip", "link", "del", name, check=False)  # gone with its namespace peer, normally


class VppAgentProcess(AgentProcess):
    """`vppagent run --driver vpp --pod-interface af_packet` on a real VPP, fed through felix-shim."""

    def __init__(self, lab: PodLab, vpp: RealVpp, run_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(run_dir / "agent.sock", lab.workdir / "agent.log",
                         ["--driver", "vpp", "--vpp-api-socket", vpp.socket_path, "--pod-interface", "af_packet",
                          "--iptables-netns", lab.node],
                         spawn=self._spawn)
        self.lab, self.env = lab, env
        self.shim: FelixStandIn | None = None
        self.sent = 0
        self.felix_state = DataplaneState()  # what Felix has told the agent, for the evaluator
        self.objects: list[felix.ToDataplane] = []  # Felix's current objects (see move_to)

    def _spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        env = dict(os.environ) | (self.env or {})
        return self.lab.spawn(argv, env=env, **kwargs)

    def start_felix(self) -> FelixStandIn:
        self.shim = FelixStandIn(self.socket, log_path=self.lab.workdir / "shim.log")
        self.lab.processes.append(self.shim.process)
        self.sent = 0
        return self.shim

    def send(self, msgs: Sequence[felix.ToDataplane], timeout: float = 30.0) -> dict[str, Any]:
        """Felix's messages through the shim; returns the state report once all are applied (the
        agent counts a message and applies its batch under one lock, so a count is an apply)."""
        assert self.shim is not None
        self.sent += self.shim.send(msgs)
        for m in msgs:
            self.felix_state.apply(m)
        target = self.sent

        def applied() -> dict[str, Any] | None:
            report = self.try_state()
            return report if report is not None and report["counters"]["messages"] >= target else None

        report: dict[str, Any] = wait_for(applied, timeout=timeout, what=f"{target} messages applied; {self.tail()}")
        return report

    def move_to(self, objects: Sequence[felix.ToDataplane]) -> dict[str, Any]:
        """Felix's move from the current objects to `objects` (the first time: config, snapshot,
        InSync; a new shim after an agent restart gets the snapshot again)."""
        messages = [b.config({}), *objects, b.in_sync()] if self.sent == 0 else transition(self.objects, objects)
        report = self.send(messages)
        self.objects = list(objects)
        return report

    def cni_add(self, pod: Pod) -> cni_pb2.AddReply:
        namespace, name = pod.workload_id.split("/")
        request = cni_pb2.AddRequest(
            interface_name="eth0", netns=str(pod.netns_path), desired_host_interface_name=pod.host_ifname,
            container_ips=[cni_pb2.IPConfig(address=f"{pod.address}/32"),
                           cni_pb2.IPConfig(address=f"{pod.address6}/128")],
            workload=cni_pb2.WorkloadIDs(name=name, namespace=namespace, pod=name, endpoint="eth0",
                                         orchestrator="k8s"))
        with grpc.insecure_channel(f"unix:{self.cni_socket}") as channel:
            reply: cni_pb2.AddReply = cni_pb2_grpc.CniDataplaneStub(channel).Add(  # type: ignore[no-untyped-call]
                request, timeout=30)
        return reply

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.close()
            self.shim = None
        super().stop()


def attach_pods(agent: VppAgentProcess, vpp: RealVpp) -> None:
    """CNI Add for every pod, then VPP stops polling their interfaces (interrupt mode). The pod can
    use its addresses at once: none is left tentative (IPv6 duplicate address detection)."""
    for pod in agent.lab.pods.values():
        reply = agent.cni_add(pod)
        assert reply.successful, f"CNI Add {pod.workload_id}: {reply.error_message}"
        tentative = sh("ip", "-n", pod.netns, "-6", "addr", "show", "dev", "eth0", "tentative")
        assert pod.address6 not in tentative, f"{pod.workload_id}: {pod.address6} is tentative after CNI Add"
        vpp.interrupt_mode(f"host-{pod.host_ifname}")
