"""What a resync keeps (acl/lists.py, driver.py): the compiled lists the change since the last state
leaves alone, and each endpoint as parsed; and `Programmed.share_contents`, which lets a pass
compare read-back ACL contents with the wanted ones by identity."""

from __future__ import annotations

import ipaddress

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.api.types import PERMIT_REFLECT, AclContent, AclRule
from vppagent.drivers.vpp.programmed import Programmed
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b

PODS = {f"ns/p{i}": f"10.65.0.{i + 2}" for i in range(4)}


def messages(web_port: int = 80) -> list[felix.ToDataplane]:
    """Two lists per direction: ns/p0 and ns/p1 run policy "web", the others only the profile."""
    out = [b.config({}), b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
           b.policy("web", namespace="ns", inbound=[b.rule("allow", protocol="tcp", dst_ports=[web_port])],
                    outbound=[b.rule("allow", protocol="udp", dst_ports=[53])])]
    for i, (pod, ip) in enumerate(PODS.items()):
        tiers = [b.tier("default", ingress=["web"], egress=["web"], namespace="ns")] if i < 2 else []
        out.append(b.workload(pod, f"cali{i}", ipv4=[f"{ip}/32"], profiles=["open"], tiers=tiers))
    return out


def test_a_resync_recompiles_only_what_changed_since_the_last_state(sim_target: Target) -> None:
    for pod in PODS:
        sim_target.pod(pod)
    driver = make_driver(sim_target)
    try:
        state = state_of(messages())
        assert driver.resync(state).ok
        compiled = driver.status()["compiles"]
        assert compiled == 4  # ("web" tier, profile only) x two directions
        report = driver.resync(state_of(messages()))  # the same state, as new messages
        assert report.ok and report.writes == 0
        assert driver.status()["compiles"] == compiled, "nothing changed: nothing compiled"
        changed = state_of(messages(web_port=8080))
        report = driver.resync(changed)
        assert report.ok and not report.failed and report.writes == 1  # the "web" ingress ACL, in place
        assert driver.status()["compiles"] == compiled + 2, "the two lists holding policy 'web' only"
    finally:
        driver.close()
    fresh = make_driver(sim_target)  # compiles everything: VPP already holds what it wants
    try:
        report = fresh.resync(changed)
        assert report.ok and report.writes == 0
    finally:
        fresh.close()


def _rule(port: int) -> AclRule:
    any4 = ipaddress.ip_network("0.0.0.0/0")
    return AclRule(PERMIT_REFLECT, any4, any4, 6, (0, 65535), (port, port))


def test_share_contents_makes_equal_contents_one_object_and_leaves_the_rest() -> None:
    wanted = AclContent.of([_rule(80), _rule(81)])
    read_back = AclContent.of([_rule(80), _rule(81)])  # equal, another object (as a dump gives)
    other = AclContent.of([_rule(82)])
    forged = AclContent((_rule(83),), wanted.digest)  # same digest, other rules: never taken as equal
    programmed = Programmed(acls={1: read_back, 2: other, 3: forged})
    programmed.share_contents([wanted])
    assert programmed.acls[1] is wanted
    assert programmed.acls[2] is other and programmed.acls[3] is forged
