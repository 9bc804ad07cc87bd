"""Differential test: random small states from the policy core's generator, programmed by the
iptables driver into a node namespace, and packets sent for real; the kernel's verdict (did the
packet come out on the other side?) must equal the reference evaluator's, every time.

Ingress packets enter the node from a peer link and are looked for on the pod's eth0; egress
packets leave the pod and are looked for on the peer. One driver instance serves all cases, so
most cases are incremental applies (new policies, changed endpoint) and every 10th a full resync.
"""

from __future__ import annotations

import random

import pytest

from tests.kernel import frames
from tests.kernel.netlab import NODE_MAC, Lab, sh
from vppagent.drivers.iptables import IptablesDriver
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import random_case, random_packets
from vppagent.state.diff import StateDiff

pytestmark = pytest.mark.root
CASES = 60
PACKETS_PER_CASE = 4
ALLOWED_WITHIN = 0.3  # seconds; forwarding in a namespace takes well under a millisecond
LATE_ALLOWED = 5.0  # an allowed packet may take this long on a loaded machine (frames.collect)


def test_kernel_agrees_with_the_evaluator(lab: Lab) -> None:
    pod = lab.pods[0]
    for step in (["down"], ["name", "cali1234"], ["up"]):  # the generator's endpoint interface
        sh("ip", "-n", lab.node, "link", "set", "cali1234" if step == ["up"] else pod.iface, *step)
    driver = IptablesDriver(netns=lab.node, refresh=False)
    node_mac, client_mac = frames.mac_of(lab.node, "eth0"), frames.mac_of(lab.client, "eth0")
    pod_mac = frames.mac_of(pod.ns, "eth0")
    send_from_pod, send_from_client = frames.sender(pod.ns, "eth0"), frames.sender(lab.client, "eth0")
    at_pod, at_client = frames.open_capture(pod.ns, "eth0"), frames.open_capture(lab.client, "eth0")
    rng = random.Random(20261128)
    disagreements: list[str] = []
    checked = {"allow": 0, "deny": 0}
    try:
        for index in range(CASES):
            case = random_case(rng)
            report = driver.resync(case.state) if index % 10 == 0 else driver.apply(StateDiff(), case.state)
            assert report.ok, report.error
            assert not report.failed, report.failed
            sh("ip", "netns", "exec", lab.node, "conntrack", "-F", check=False)
            packets = {frames.key_of(p): p for p in random_packets(rng, case, PACKETS_PER_CASE, new_only=True)
                       if p.src != p.dst and p.proto != 132}  # SCTP would need an INIT with CRC32c
            expected = {k: verdict(case.state, case.endpoint, case.direction, p).allowed for k, p in packets.items()}
            capture = at_pod if case.direction == "ingress" else at_client
            frames.drain(capture)
            for pkt in packets.values():
                if case.direction == "ingress":
                    send_from_client(frames.frame(pkt, node_mac, client_mac))
                else:
                    send_from_pod(frames.frame(pkt, bytes.fromhex(NODE_MAC.replace(":", "")), pod_mac))
            wanted_seen = {k for k, allowed in expected.items() if allowed}
            seen = frames.collect(capture, set(packets), ALLOWED_WITHIN, wanted_seen, LATE_ALLOWED)
            for key, pkt in packets.items():
                checked["allow" if expected[key] else "deny"] += 1
                if (key in seen) != expected[key]:
                    disagreements.append(f"case {index} ({case.direction}, IPv{case.family}) {pkt}: kernel "
                                         f"{'passed' if key in seen else 'dropped'}, evaluator "
                                         f"{'allows' if expected[key] else 'denies'}")
            assert seen <= set(packets) and wanted_seen is not None
    finally:
        driver.close()
    assert not disagreements, "\n".join(disagreements)
    assert checked["allow"] >= 30 and checked["deny"] >= 30, f"too one-sided to mean much: {checked}"
