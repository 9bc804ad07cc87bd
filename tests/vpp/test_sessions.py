"""The session rule (docs/vpp-driver.md) with `reclassify_sessions` off (Felix's rule): an
established allowed flow survives every update that is not about its endpoints, and in-place
changes of its own lists; only an interface that moves to another ACL (its endpoint's list diverged
from the endpoints it shared an ACL with) loses its reflect sessions. With it on (the default):
tests/vpp/test_reclassify.py."""

from __future__ import annotations

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState
from vppagent.vppsim import Direction, Packet

A, B, B2, C = "10.65.0.2", "10.65.0.3", "10.65.0.4", "10.65.0.5"
ACK = 0x10


def base() -> list[felix.ToDataplane]:
    server = [b.tier("default", ingress=["web"], egress=["quiet"])]  # B may only answer
    return [
        b.config({}),
        b.ipset("s:other", ["10.65.7.7"]),
        b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])]),
        b.policy("quiet", outbound=[]),
        b.policy("db", inbound=[b.rule("allow", protocol="tcp", dst_ports=[5432], src_ip_set_ids=["s:other"])]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("ns/a", "cali1", ipv4=[f"{A}/32"], profiles=["open"]),
        b.workload("ns/b", "cali2", ipv4=[f"{B}/32"], tiers=server, profiles=["open"]),
        b.workload("ns/b2", "cali3", ipv4=[f"{B2}/32"], tiers=server, profiles=["open"]),
        b.workload("ns/c", "cali4", ipv4=[f"{C}/32"], tiers=[b.tier("default", ingress=["db"])], profiles=["open"]),
    ]


class Flow:
    """A TCP connection A:40000 -> B:80, checked by B pushing data to A unprompted: B's egress
    allows nothing, so only the reflect session on B's interface lets the answer out."""

    def __init__(self, target: Target, interfaces: dict[str, int]) -> None:
        self.sim, self.a, self.b = target.emulator, interfaces["ns/a"], interfaces["ns/b"]
        self.syn = Packet.make(A, B, "tcp", 40000, 80)

    def open(self) -> bool:
        return self.sim.connect((self.a, A), (self.b, B), "tcp", 80).established

    def alive(self) -> bool:
        push = Packet.make(B, A, "tcp", 80, 40000, tcp_flags=ACK)
        return all(self.sim.evaluate(i, d, push).permitted for i, d in ((self.b, Direction.INPUT),
                                                                         (self.a, Direction.OUTPUT)))

    def new_one_allowed(self) -> bool:
        fresh = Packet.make(A, B, "tcp", 40001, 80)
        return self.sim.evaluate(self.b, Direction.OUTPUT, fresh).permitted


def update(driver: VppDriver, state: DataplaneState, *msgs: felix.ToDataplane) -> DataplaneState:
    new = state.copy()
    for m in msgs:
        new.apply(m)
    report = driver.apply(diff_states(state, new), new)
    assert report.ok and not report.failed
    return new


def test_established_flows_survive_unrelated_and_in_place_updates(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in ("ns/a", "ns/b", "ns/b2", "ns/c")}
    driver = make_driver(sim_target, reclassify_sessions=False)
    try:
        state = state_of(base())
        driver.resync(state)
        flow = Flow(sim_target, interfaces)
        assert flow.open() and flow.alive()
        # updates about other endpoints, other policies, other sets
        state = update(driver, state, b.ipset_delta("s:other", added=["10.65.7.8"]))
        state = update(driver, state, b.policy("db", inbound=[b.rule("allow", protocol="tcp", dst_ports=[5433])]))
        state = update(driver, state, b.workload("ns/d", "cali5", ipv4=["10.65.0.6/32"], profiles=["open"]))
        assert flow.alive()
        # B's own policy widens, then tightens: its shared ACL changes in place, the flow goes on
        state = update(driver, state, b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80, 81])]))
        assert flow.alive()
        state = update(driver, state, b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[81])]))
        assert flow.alive() and not flow.new_one_allowed(), "tightening stops new flows, not established ones"
        # B's list diverges from B2's (they shared an ACL): B moves to another ACL and its sessions go
        state = update(driver, state, b.workload("ns/b", "cali2", ipv4=[f"{B}/32"], profiles=["open"],
                                                 tiers=[b.tier("default", egress=["quiet"])]))
        assert not flow.alive()
        assert flow.open(), "a new connection is allowed by B's new list"
    finally:
        driver.close()
