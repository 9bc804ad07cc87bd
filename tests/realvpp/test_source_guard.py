"""The source guard on a real VPP 26.06: a pod's packets leave VPP only from its own addresses,
its allowed prefixes and IPv6 link-local (guard/, docs/vpp-driver.md "Source guard").

pod-a's endpoint allows everything both ways and may also send from 10.70.0.0/16
(allow_spoofed_source_prefixes). From pod-a's namespace, UDP datagrams built whole (a raw socket,
so any source can be written) go to the peer, where a UDP socket counts what arrives: pod-a's own
addresses and the allowed prefix arrive, pod-b's address and an outside one do not, and VPP's
ip4-inacl / ip6-inacl counters show the drops. pod-a pings VPP's link-local address from its own
link-local (neighbour discovery on the way: multicast, not judged by the guard).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.realvpp import RealVpp
from tests.realvpp.cases import POD_A, PODS, PODS6, pod_b_messages
from tests.realvpp.podlab import PEER_ADDRESS, PEER_ADDRESS6, PodLab, VppAgentProcess
from tests.realvpp.traffic import internet_checksum
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.netns import call_in_netns

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
ALLOWED, ALLOWED_SOURCE = "10.70.0.0/16", "10.70.3.4"
PORT = 40999
PER_SOURCE = 5  # datagrams sent from each source
VPP_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"  # VPP's side of every pod link (its MAC ee:ee:ee:ee:ee:ee)
ARRIVAL_WAIT = 1.5  # seconds the peer waits for stragglers after the last send


def objects() -> list[felix.ToDataplane]:
    pod_a = b.workload(POD_A, "calipoda", ipv4=[f"{PODS[POD_A]}/32"], ipv6=[f"{PODS6[POD_A]}/128"], profiles=["open"])
    pod_a.workload_endpoint_update.endpoint.allow_spoofed_source_prefixes.append(ALLOWED)
    return [*pod_b_messages(), pod_a]


def datagram(src: str, dst: str, payload: bytes) -> bytes:
    """An IPv4 or IPv6 header and a UDP datagram with its checksum, from `src` whatever it is."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    length = 8 + len(payload)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, length)
    else:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", length, 17)
    udp = struct.pack("!HHHH", PORT, PORT, length, 0) + payload
    # a UDP checksum of 0 means "none": one that sums to 0 is sent as 0xFFFF
    udp = udp[:6] + struct.pack("!H", internet_checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    if s.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, 17, 0, s.packed, d.packed)
        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    else:
        header = struct.pack("!IHBB16s16s", 6 << 28, length, 17, 64, s.packed, d.packed)
    return header + udp


def send_from(netns: str, src: str, dst: str, count: int) -> None:
    family = socket.AF_INET if ":" not in dst else socket.AF_INET6

    def send() -> None:
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            for i in range(count):
                sock.sendto(datagram(src, dst, f"{src} {i}".encode()), (dst, 0))

    call_in_netns(netns, send)


class Receiver:
    """A UDP socket in the peer's namespace, both families, counting datagrams per claimed source."""

    def __init__(self, netns: str) -> None:
        def bind() -> list[socket.socket]:
            v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            v4.bind(("0.0.0.0", PORT))
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::", PORT))
            return [v4, v6]

        self.sockets = call_in_netns(netns, bind)
        for s in self.sockets:
            s.settimeout(0.05)

    def drain(self) -> dict[str, int]:
        """What arrived since the last call: source address -> datagrams (after ARRIVAL_WAIT)."""
        counts: dict[str, int] = {}
        deadline = time.monotonic() + ARRIVAL_WAIT
        while time.monotonic() < deadline:
            for s in self.sockets:
                try:
                    _, source = s.recvfrom(2048)
                except TimeoutError:
                    continue
                counts[source[0]] = counts.get(source[0], 0) + 1
        return counts

    def close(self) -> None:
        for s in self.sockets:
            s.close()


@pytest.fixture(scope="module")
def guarded(agent: VppAgentProcess, lab: PodLab) -> Iterator[Receiver]:
    report = agent.move_to(objects())
    statuses = {row["workload_id"]: row["status"] for row in report["workload_endpoints"]}
    assert set(statuses.values()) == {"up"}, report
    receiver = Receiver(lab.peer)
    try:
        yield receiver
    finally:
        receiver.close()


def inacl_drops(vpp: RealVpp) -> dict[str, int]:
    """Input-classifier drops from `show errors` ("ip4" / "ip6" -> count). Every guard table misses
    to drop, so a miss is a drop: 26.06 counts them as "input ACL misses" of ip4-inacl / ip6-inacl
    (the drop itself it files under ip4-input / ip6-input as "valid ip4 packets", found here)."""
    out: dict[str, int] = {}
    for line in vpp.cli("show errors").splitlines():
        match = re.match(r"\s*(\d+)\s+(ip[46])-inacl\s+input ACL misses", line)
        if match:
            out[match.group(2)] = out.get(match.group(2), 0) + int(match.group(1))
    return out


def test_own_and_allowed_sources_arrive_spoofed_ones_are_dropped(guarded: Receiver, lab: PodLab,
                                                                 vpp: RealVpp) -> None:
    pod_a = lab.pods[POD_A]
    warm = {PEER_ADDRESS: PODS[POD_A], PEER_ADDRESS6: PODS6[POD_A]}
    for dst, src in warm.items():  # neighbours resolved both ways before anything is counted
        send_from(pod_a.netns, src, dst, 1)
    guarded.drain()
    before = inacl_drops(vpp)
    sources = {PODS[POD_A]: True, ALLOWED_SOURCE: True, PODS6[POD_A]: True,
               PODS[list(PODS)[1]]: False, "10.66.0.1": False, PODS6[list(PODS6)[1]]: False, "fd66::1": False}
    for src in sources:
        send_from(pod_a.netns, src, PEER_ADDRESS6 if ":" in src else PEER_ADDRESS, PER_SOURCE)
    arrived = guarded.drain()
    drops = inacl_drops(vpp)
    expected = {src: PER_SOURCE for src, passes in sources.items() if passes}
    assert {src: arrived.get(src, 0) for src in sources} == {src: expected.get(src, 0) for src in sources}, arrived
    spoofed4 = sum(1 for s, ok in sources.items() if not ok and ":" not in s) * PER_SOURCE
    spoofed6 = sum(1 for s, ok in sources.items() if not ok and ":" in s) * PER_SOURCE
    shown = vpp.cli("show errors")
    assert drops.get("ip4", 0) - before.get("ip4", 0) == spoofed4, shown
    assert drops.get("ip6", 0) - before.get("ip6", 0) == spoofed6, shown


def test_a_pod_reaches_vpps_link_local_from_its_own(guarded: Receiver, lab: PodLab, vpp: RealVpp) -> None:
    pod_a = lab.pods[POD_A]
    before = inacl_drops(vpp)
    ping = subprocess.run(["ip", "netns", "exec", pod_a.netns, "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2",
                           f"{VPP_LINK_LOCAL}%eth0"], capture_output=True, text=True, timeout=30, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert inacl_drops(vpp).get("ip6", 0) == before.get("ip6", 0)


def test_the_guard_is_attached_to_every_pod_interface(guarded: Receiver, lab: PodLab, vpp: RealVpp) -> None:
    for pod in lab.pods.values():
        features = vpp.cli(f"show interface features host-{pod.host_ifname}")
        unicast4 = features.split("ip4-unicast:")[1].split(":")[0]
        unicast6 = features.split("ip6-unicast:")[1].split(":")[0]
        assert "ip4-inacl" in unicast4 and "ip6-inacl" in unicast6, features
