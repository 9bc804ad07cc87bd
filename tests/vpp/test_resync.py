"""Resync by diff, with writes counted: cold apply, zero writes on an unchanged VPP (also from a
new driver, as after an agent restart), O(1) endpoint adds, in-place policy and IP set changes,
and only our stale objects deleted. Runs against the emulator and, when set, a real VPP."""

from __future__ import annotations

from collections.abc import Iterable

from tests.vpp.helpers import GUARD_REMOVAL_WRITES, Target, guard_writes, make_driver, state_of, wkey
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.sessions import RECLASSIFY_SHOW, RECLASSIFY_SHOWN
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState


def base_messages(pods: Iterable[str]) -> list[felix.ToDataplane]:
    msgs = [
        b.config({}),
        b.ipset("s:web", ["10.65.0.2/32", "10.65.0.3/32"]),
        b.policy("web", namespace="ns", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80],
                                                          src_ip_set_ids=["s:web"])]),
        b.policy("dns", outbound=[b.rule("allow", protocol="udp", dst_ports=[53])]),
        b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
    ]
    for i, pod in enumerate(pods):
        tiers = [b.tier("default", ingress=["web"], egress=["dns"], namespace="ns")] if i % 2 == 0 else []
        if i % 2 == 0:
            tiers = [felix.TierInfo(name="default", ingress_policies=[b.policy_id("web", "ns")],
                                    egress_policies=[b.policy_id("dns")])]
        msgs.append(b.workload(pod, f"cali{i}", ipv4=[f"10.65.0.{10 + i}/32"], ipv6=[f"fd65::{10 + i:x}/128"],
                               profiles=["kns.ns"], tiers=tiers))
    return msgs


def apply(driver: VppDriver, old: DataplaneState, msgs: Iterable[felix.ToDataplane]) -> tuple[DataplaneState, int]:
    new = old.copy()
    for m in msgs:
        new.apply(m)
    report = driver.apply(diff_states(old, new), new)
    assert report.ok and not report.failed, report
    return new, report.writes


def test_cold_apply_writes_only_distinct_acls_bindings_and_routes(target: Target, driver: VppDriver) -> None:
    pods = [f"ns/pod{i}" for i in range(6)]
    interfaces = {p: target.pod(p) for p in pods}
    # the ACL plugin's reclassify-sessions, set once where VPP does not have it yet (driver.py)
    setting = int(RECLASSIFY_SHOWN.format(1) not in target.raw.api.cli_inband(cmd=RECLASSIFY_SHOW).reply)
    report = driver.resync(state_of(base_messages(pods)))
    assert report.ok and not report.failed
    acls = target.our_acls()
    # two policy sets (with tiers / profile only) x two directions, all distinct lists
    assert len(acls) == 4
    bindings = target.bindings()
    assert all(len(bindings[i][0]) == 1 and len(bindings[i][1]) == 1 for i in interfaces.values())
    routes = 2 * len(pods)
    assert report.writes == setting + len(acls) + len(interfaces) + routes + len(pods) * guard_writes(ipv4=1, ipv6=1)
    assert all(f"10.65.0.{10 + i}/32" in target.routes() for i in range(6))
    # endpoints with the same policy share the ACLs
    assert bindings[interfaces["ns/pod0"]] == bindings[interfaces["ns/pod2"]] != bindings[interfaces["ns/pod1"]]


def test_resync_of_an_unchanged_vpp_writes_nothing_even_from_a_new_driver(target: Target, driver: VppDriver) -> None:
    pods = [f"ns/pod{i}" for i in range(4)]
    for p in pods:
        target.pod(p)
    state = state_of(base_messages(pods))
    assert driver.resync(state).writes > 0
    assert driver.resync(state).writes == 0
    restarted = make_driver(target)  # the agent restarted: nothing remembered, all read back
    try:
        report = restarted.resync(state)
        assert report.ok and report.writes == 0
    finally:
        restarted.close()


def test_an_endpoint_add_costs_the_same_few_writes_however_many_exist(target: Target, driver: VppDriver) -> None:
    costs = []
    for n in (2, 12):
        pods = [f"ns/n{n}pod{i}" for i in range(n)]
        for p in pods:
            target.pod(p)
        state = state_of(base_messages(pods))
        driver.resync(state)
        target.pod(f"ns/n{n}new")
        _, writes = apply(driver, state, [b.workload(f"ns/n{n}new", "calinew", ipv4=[f"10.65.1.{n}/32"],
                                                     profiles=["kns.ns"])])
        costs.append(writes)
    assert costs[0] == costs[1] == 2 + guard_writes(), "one binding (existing shared ACLs) + one route + its guard"


def test_policy_and_ipset_changes_replace_acls_in_place(target: Target, driver: VppDriver) -> None:
    pods = [f"ns/pod{i}" for i in range(6)]
    for p in pods:
        target.pod(p)
    state = state_of(base_messages(pods))
    driver.resync(state)
    before = target.bindings()
    state, writes = apply(driver, state, [b.policy("web", namespace="ns", inbound=[
        b.rule("allow", protocol="tcp", dst_ports=[8080], src_ip_set_ids=["s:web"])])])
    assert writes == 1, "the one ACL all three web pods share is replaced in place"
    state, writes = apply(driver, state, [b.ipset_delta("s:web", added=["10.65.0.4"])])
    assert writes == 1
    assert target.bindings() == before, "no interface was rebound (their sessions stay)"
    ingress = {int(d.acl_index): d for d in target.our_acls().values()}
    assert any(r.dstport_or_icmpcode_first == 8080 and str(r.src_prefix) == "10.65.0.4/32"
               for d in ingress.values() for r in d.r)


def test_removed_endpoint_closes_its_interface_and_stale_objects_go(target: Target, driver: VppDriver) -> None:
    pods = ["ns/pod0", "ns/pod1"]
    interfaces = {p: target.pod(p) for p in pods}
    state = state_of(base_messages(pods))
    driver.resync(state)
    acls_before = set(target.our_acls())
    state, writes = apply(driver, state, [b.workload_remove("ns/pod0")])
    # pod0's interface still exists (no CNI Del yet): it drops everything both ways (its routes
    # stay, as for a pod Felix has not described yet). pod0 was the only user of its two ACLs:
    # both became drop-all in place.
    acl_in, acl_out = target.bindings()[interfaces["ns/pod0"]]
    assert target.our_acls()[acl_in[0]].count == target.our_acls()[acl_out[0]].count == 0
    assert set(target.our_acls()) == acls_before
    assert writes == 2 + GUARD_REMOVAL_WRITES  # and its source guard went after the ACLs closed
    # the interface goes (CNI Del by someone else): its unused ACLs and dead routes are deleted
    target.raw.api.delete_loopback(sw_if_index=interfaces["ns/pod0"])
    target.loopbacks.remove(interfaces["ns/pod0"])
    report = driver.resync(state)
    assert report.writes == 2 + 2 and set(target.our_acls()) == acls_before - {acl_in[0], acl_out[0]}
    assert "10.65.0.10/32" not in target.routes() and "10.65.0.11/32" in target.routes()


def test_foreign_acls_are_never_touched_and_drift_in_ours_is_repaired(target: Target, driver: VppDriver) -> None:
    rule = {"is_permit": 1, "src_prefix": "10.65.99.0/24", "dst_prefix": "0.0.0.0/0", "proto": 0,
            "srcport_or_icmptype_first": 0, "srcport_or_icmptype_last": 65535,
            "dstport_or_icmpcode_first": 0, "dstport_or_icmpcode_last": 65535}
    foreign = target.raw.api.acl_add_replace(acl_index=NO_INDEX, tag="operator-acl", count=1, r=[rule]).acl_index
    try:
        target.pod("ns/pod0")
        state = state_of(base_messages(["ns/pod0"]))
        driver.resync(state)
        ours = next(iter(target.our_acls()))
        tag = target.our_acls()[ours].tag
        # someone rewrites one of our ACLs, keeping the tag: the resync compares rules, not tags
        target.raw.api.acl_add_replace(acl_index=ours, tag=tag, count=1, r=[rule])
        report = driver.resync(state)
        assert report.writes == 1
        assert foreign in {int(d.acl_index) for d in target.raw.api.acl_dump(acl_index=NO_INDEX)}
    finally:
        target.raw.api.acl_del(acl_index=foreign)


def test_workload_tag_matching_not_names(target: Target, driver: VppDriver) -> None:
    long_id = "a-very-long-namespace-name/" + "p" * 80
    sw_if_index = target.pod(long_id)
    assert len(workload_tag(wkey(long_id))) <= 63
    state = state_of([b.config({}), b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
                      b.workload(long_id, "caliwhatever", ipv4=["10.65.3.3/32"], profiles=["open"])])
    assert driver.resync(state).ok
    assert sw_if_index in target.bindings()
