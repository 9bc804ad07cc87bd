"""A scenario: Felix messages sent through the shim to the agent, mirrored into a local state, and
probes whose real outcome is checked against both the expected outcome and the reference
evaluator (source egress AND destination ingress, as the node's FORWARD chain decides)."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.kernel.conftest import KernelAgent
from tests.kernel.netlab import ALLOWED_WAIT, DENIED_WAIT, Lab, Pod, ping_ok, tcp_ok, udp_ok
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.evaluate import verdict
from vppagent.policy.model import ICMP_FOR_FAMILY
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState, WorkloadKey

EPHEMERAL = 40000


@dataclass(frozen=True)
class Probe:
    kind: str  # tcp, udp, ping
    src: int  # pod index (1-based)
    dst: int
    port: int = 0
    expect: bool = True


class World:
    def __init__(self, lab: Lab, agent: KernelAgent, family: int) -> None:
        self.lab, self.agent, self.family = lab, agent, family
        self.state = DataplaneState()

    def pod(self, i: int) -> Pod:
        return self.lab.pods[i - 1]

    def ip(self, i: int) -> str:
        return self.pod(i).ipv4 if self.family == 4 else self.pod(i).ipv6

    def net(self, i: int) -> str:
        return f"{self.ip(i)}/{32 if self.family == 4 else 128}"

    def key(self, i: int) -> WorkloadKey:
        return WorkloadKey("k8s", f"default/pod{i}", "eth0")

    def send(self, *msgs: felix.ToDataplane) -> None:
        for m in msgs:
            self.state.apply(m)
        self.agent.send(*msgs)

    def _packet(self, probe: Probe) -> Packet:
        src, dst = ipaddress.ip_address(self.ip(probe.src)), ipaddress.ip_address(self.ip(probe.dst))
        if probe.kind == "ping":
            return Packet(ICMP_FOR_FAMILY[self.family], src, dst, icmp_type=8 if self.family == 4 else 128)
        return Packet(6 if probe.kind == "tcp" else 17, src, dst, EPHEMERAL, probe.port)

    def evaluator_allows(self, probe: Probe) -> bool:
        pkt = self._packet(probe)
        out = verdict(self.state, self.key(probe.src), "egress", pkt)
        into = verdict(self.state, self.key(probe.dst), "ingress", pkt)
        return out.allowed and into.allowed

    def observe(self, probe: Probe) -> bool:
        """Whether the probe got through. It waits longer when it is expected to get through:
        that costs nothing when it does (it returns at once), and a packet that must not get
        through is watched as long as before (netlab's DENIED_WAIT, ping's second)."""
        ns, dst = self.pod(probe.src).ns, self.ip(probe.dst)
        wait = ALLOWED_WAIT if probe.expect else DENIED_WAIT
        if probe.kind == "tcp":
            return tcp_ok(ns, dst, probe.port, wait)
        if probe.kind == "udp":
            return udp_ok(ns, dst, probe.port, wait)
        return ping_ok(ns, dst, ALLOWED_WAIT if probe.expect else 1.0)

    def check(self, step: str, *probes: Probe) -> None:
        """All probes at once (denied ones wait for their timeout in parallel)."""
        with ThreadPoolExecutor(max_workers=len(probes)) as pool:
            seen = list(pool.map(self.observe, probes))
        problems = []
        for probe, got in zip(probes, seen, strict=True):
            oracle = self.evaluator_allows(probe)
            if got != probe.expect or oracle != probe.expect:
                problems.append(f"{probe}: kernel {'allowed' if got else 'denied'}, "
                                f"evaluator {'allows' if oracle else 'denies'}")
        assert not problems, f"IPv{self.family} step {step!r}:\n" + "\n".join(problems)
