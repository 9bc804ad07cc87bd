"""The source guard on the emulator: a pod sends only from its own addresses, its allowed prefixes
and IPv6 link-local; the guard follows address and prefix changes, comes before the egress ACL at
CNI Add, goes before the interface at CNI Del, is adopted by a restarted agent, and neither the
guard nor the gate ever takes the other's tables (guard/, classifier/read.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.vpp.helpers import (
    FakePlumbing,
    Target,
    guard_writes,
    make_driver,
    pod_spec,
    resynced,
    state_of,
    tables_but_guards,
)
from tests.vpp.test_classifier import MEMBERS, established
from tests.vpp.test_classifier import PODS as GATED_PODS
from tests.vpp.test_classifier import messages as gated_messages
from tests.vpp.test_pipeline_driver import recorded_pipelines
from vppagent.drivers.vpp.api.connection import ApiRequest
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.classifier.read import read_chains, read_tables
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.guard.read import orphans
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.pods.spec import PodDelete
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState
from vppagent.vppsim import Direction, Packet

PODS = {"ns/a": ("10.65.0.2", "fd65::2"), "ns/b": ("10.65.0.3", "fd65::3")}
PEER, PEER6 = "10.65.0.3", "fd65::3"


def messages(allowed: Sequence[str] = (), a_ipv4: str = "10.65.0.2", pods: Sequence[str] = tuple(PODS)
             ) -> list[felix.ToDataplane]:
    msgs = [b.config({}), b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")])]
    for i, pod in enumerate(pods):
        v4, v6 = PODS[pod]
        m = b.workload(pod, f"cali{i}", ipv4=[f"{a_ipv4 if pod == 'ns/a' else v4}/32"], ipv6=[f"{v6}/128"],
                       profiles=["open"])
        if pod == "ns/a":
            m.workload_endpoint_update.endpoint.allow_spoofed_source_prefixes.extend(allowed)
        msgs.append(m)
    return msgs


def sends(target: Target, sw_if_index: int, src: str) -> bool:
    """A UDP packet from the pod on `sw_if_index` with source `src` passes its interface's input."""
    dst = PEER6 if ":" in src else PEER
    return target.emulator.evaluate(sw_if_index, Direction.INPUT, Packet.make(src, dst, "udp", 40000, 53)).permitted


def guard_tables(driver: VppDriver, sw_if_index: int) -> dict[int, list[int]]:
    return {f: list(c.tables) for (i, f), c in driver.guards.chains.items() if i == sw_if_index}


def input_record(target: Target, sw_if_index: int) -> tuple[int, int]:
    with target.emulator.state.lock:
        a = target.emulator.state.classifier.attachments.get((sw_if_index, Direction.INPUT))
        return (NO_INDEX, NO_INDEX) if a is None else (a.ip4, a.ip6)


def apply(driver: VppDriver, old: DataplaneState, msgs: list[felix.ToDataplane]) -> tuple[DataplaneState, int]:
    new = state_of(msgs)
    report = driver.apply(diff_states(old, new), new)
    assert report.ok and not report.failed, report
    return new, report.writes


def test_a_pod_sends_only_from_its_own_addresses_and_link_local(sim_target: Target) -> None:
    a, b_ = sim_target.pod("ns/a"), sim_target.pod("ns/b")
    driver = make_driver(sim_target)
    try:
        report = driver.resync(state_of(messages()))
        assert report.ok and not report.failed
        assert sends(sim_target, a, "10.65.0.2") and sends(sim_target, a, "fd65::2")
        assert sends(sim_target, a, "fe80::1ff:fe23:4567") and sends(sim_target, b_, "10.65.0.3")
        for spoofed in ("10.65.0.3", "10.66.0.1", "0.0.0.0", "fd65::3", "::", "2001:db8::1"):
            assert not sends(sim_target, a, spoofed), spoofed
        # the verdict is the guard's: the egress ACL (allow everything) lets them all pass
        with sim_target.emulator.state.lock:
            assert sim_target.emulator.state.acl.evaluate(a, Direction.INPUT,
                                                          Packet.make("10.65.0.3", PEER, "udp", 40000, 53)).permitted
        # IPv6 multicast takes VPP's multicast arc, where no input feature runs (neighbour discovery, DAD)
        assert sim_target.emulator.evaluate(a, Direction.INPUT, Packet.make("::", "ff02::1:ff00:2", "icmp6",
                                                                            135, 0)).permitted
    finally:
        driver.close()


def test_allowed_prefixes_pass_and_follow_changes(sim_target: Target) -> None:
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")
    state = state_of(messages(allowed=["10.70.0.0/16", "fd70::/64"]))
    with resynced(sim_target, state) as driver:
        assert sends(sim_target, a, "10.70.3.4") and sends(sim_target, a, "fd70::5")
        assert not sends(sim_target, a, "10.71.0.9")
        base = {4: 1, 6: 2}  # the host-length head (and fe80::/10's table)
        assert {f: len(t) for f, t in guard_tables(driver, a).items()} == {4: base[4] + 1, 6: base[6] + 1}
        heads = {f: t[0] for f, t in guard_tables(driver, a).items()}
        state, writes = apply(driver, state, messages(allowed=["10.71.0.0/24"]))
        assert sends(sim_target, a, "10.71.0.9") and not sends(sim_target, a, "10.70.3.4")
        assert not sends(sim_target, a, "fd70::5") and sends(sim_target, a, "10.65.0.2")
        # a /24 table in behind the head (+ re-point), its session; the /16 and /64 sessions out,
        # their tables unlinked (re-point) and deleted
        assert writes == 3 + 2 * 3
        assert {f: t[0] for f, t in guard_tables(driver, a).items()} == heads, "the heads never move"
        state, writes = apply(driver, state, messages())
        assert not sends(sim_target, a, "10.71.0.9") and sends(sim_target, a, "10.65.0.2")
        assert {f: len(t) for f, t in guard_tables(driver, a).items()} == base
        assert driver.resync(state).writes == 0


def test_an_address_change_moves_the_guard_in_three_writes(sim_target: Target) -> None:
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")
    state = state_of(messages())
    with resynced(sim_target, state) as driver:
        acls = driver.programmed().binding(a)
        state, writes = apply(driver, state, messages(a_ipv4="10.65.0.20"))
        assert sends(sim_target, a, "10.65.0.20") and not sends(sim_target, a, "10.65.0.2")
        # the guard: one session in, one out; the routes: one in, one out (the lists are the same)
        assert writes == 2 + 2 and driver.programmed().binding(a) == acls


def test_a_removed_endpoint_loses_its_guard_after_its_acls_close(sim_target: Target) -> None:
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")
    state = state_of(messages())
    with resynced(sim_target, state) as driver:
        tables = {t for ts in guard_tables(driver, a).values() for t in ts}
        apply(driver, state, messages(pods=["ns/b"]))
        assert guard_tables(driver, a) == {} and input_record(sim_target, a) == (NO_INDEX, NO_INDEX)
        assert not tables & set(sim_target.raw.api.classify_table_ids().ids)
        assert not sends(sim_target, a, "10.65.0.2"), "drop everything: no endpoint"


def test_the_guards_of_removed_endpoints_go_as_one_pipeline_of_detaches_then_one_of_deletes(
        sim_target: Target) -> None:
    pods = [sim_target.pod(p) for p in PODS]
    state = state_of(messages())
    with resynced(sim_target, state) as driver:
        tables = {t for i in pods for ts in guard_tables(driver, i).values() for t in ts}
        batches = recorded_pipelines(driver)
        apply(driver, state, messages(pods=[]))
        assert [b for b in batches if "input_acl_set_interface" in b] == [["input_acl_set_interface"] * 4]
        assert [b for b in batches if "classify_add_del_table" in b] == [["classify_add_del_table"] * len(tables)]
        assert all(input_record(sim_target, i) == (NO_INDEX, NO_INDEX) for i in pods)
        assert not tables & set(sim_target.raw.api.classify_table_ids().ids)


def test_a_restarted_agent_reads_every_classifier_table_once(sim_target: Target) -> None:
    """The gate's read-back and the guards' share one read (readback.py)."""
    for pod in ("ns/web0", "ns/web1", "ns/client", "ns/other"):
        sim_target.pod(pod)
    state = state_of(gated_messages(MEMBERS))
    with resynced(sim_target, state) as driver:
        assert driver.classifier.chains and driver.guards.chains
        held = len(sim_target.raw.api.classify_table_ids().ids)
    driver = make_driver(sim_target)
    try:
        before = driver.conn.requests.copy()
        assert driver.resync(state).writes == 0
        asked = driver.conn.requests - before
        assert asked["classify_table_info"] == held and asked["classify_session_dump"] == held
    finally:
        driver.close()


def test_a_restarted_agent_adopts_guards_and_deletes_those_no_pod_needs(sim_target: Target) -> None:
    a, b_ = sim_target.pod("ns/a"), sim_target.pod("ns/b")
    driver = make_driver(sim_target)
    try:
        state = state_of(messages(allowed=["10.70.0.0/16"]))
        assert driver.resync(state).ok
        before = guard_tables(driver, a)
        b_tables = {t for ts in guard_tables(driver, b_).values() for t in ts}
        driver.close()
        driver = make_driver(sim_target)  # the agent restarted: nothing remembered
        assert driver.resync(state).writes == 0, "guards adopted, nothing rebuilt"
        assert guard_tables(driver, a) == before
        driver.close()
        driver = make_driver(sim_target)  # again, and ns/b went while it was down
        report = driver.resync(state_of(messages(allowed=["10.70.0.0/16"], pods=["ns/a"])))
        assert report.ok and guard_tables(driver, a) == before
        assert not b_tables & set(sim_target.raw.api.classify_table_ids().ids)
        assert input_record(sim_target, b_) == (NO_INDEX, NO_INDEX)
        assert sends(sim_target, a, "10.70.1.1") and not sends(sim_target, a, "10.65.0.3")
    finally:
        driver.close()


def test_cni_add_guards_before_binding_and_cni_del_detaches_before_deleting(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="tap", plumbing=FakePlumbing())
    try:
        driver.resync(state_of(messages()))  # Felix knows ns/a before its pod is attached
        sent: list[str] = []
        call = driver.conn.call

        def recording(message: str, **fields: Any) -> Any:
            sent.append(message)
            return call(message, **fields)

        pipeline = driver.conn.pipeline

        def recording_pipeline(requests: list[ApiRequest]) -> list[Any]:
            sent.extend(r.message for r in requests)
            return pipeline(requests)

        driver.conn.call = recording  # type: ignore[method-assign]
        driver.conn.pipeline = recording_pipeline  # type: ignore[method-assign]
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32", "fd65::2/128"]))
        (sw_if_index,) = {i for (i, _) in driver.guards.chains}
        assert sends(sim_target, sw_if_index, "10.65.0.2") and not sends(sim_target, sw_if_index, "10.65.0.3")
        order = [m for m in sent if m in ("input_acl_set_interface", "acl_interface_set_acl_list")]
        assert order == ["input_acl_set_interface"] * 2 + ["acl_interface_set_acl_list"], order
        assert driver.detach_pod(PodDelete("/proc/self/ns/net", "eth0")) == "calitest0"
        assert input_record(sim_target, sw_if_index) == (NO_INDEX, NO_INDEX), "no record left for the index"
        assert driver.guards.chains == {}
    finally:
        driver.close()


def test_an_index_reused_after_someone_else_deleted_a_guarded_pod_gets_a_working_guard(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="tap", plumbing=FakePlumbing())
    try:
        state = state_of(messages())
        driver.resync(state)
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32", "fd65::2/128"]))
        (old,) = {i for (i, _) in driver.guards.chains}
        sim_target.raw.api.tap_delete_v2(sw_if_index=old)  # not through the agent: the guard stays recorded
        assert input_record(sim_target, old) != (NO_INDEX, NO_INDEX)
        driver.attach_pod(pod_spec("ns/b", ["10.65.0.3/32", "fd65::3/128"], host_ifname="calitest1"))
        (new,) = {i for (i, _) in driver.guards.chains}
        assert new == old, "VPP handed the index on"
        assert sends(sim_target, new, "10.65.0.3") and not sends(sim_target, new, "10.65.0.2")
        assert not sends(sim_target, new, "10.66.0.1")
        assert driver.resync(state).ok and not sends(sim_target, new, "10.66.0.1")
    finally:
        driver.close()


def test_gate_and_guard_never_take_each_others_tables(sim_target: Target) -> None:
    for pod in ("ns/web0", "ns/web1", "ns/client", "ns/other"):
        sim_target.pod(pod)
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(gated_messages(MEMBERS))).ok
        gate = tables_but_guards(sim_target)
        guards = {t for c in driver.guards.chains.values() for t in c.tables}
        assert gate and guards and not gate & guards
        found = read_chains(driver.calls)
        assert found and all(set(c.tables) <= gate for c in found), "the gate reads back only its own"
        assert set(orphans(read_tables(driver.calls), set())) == guards, "the guard's read-back sees only its own"
        driver.close()
        driver = make_driver(sim_target)
        assert driver.resync(state_of(gated_messages(MEMBERS))).writes == 0
        assert tables_but_guards(sim_target) == gate
    finally:
        driver.close()


def test_a_removed_endpoints_guard_stays_while_vpp_refuses_its_drop_everything_list(sim_target: Target) -> None:
    """Its old list, restricted to its sources, is still bound: without the guard a spoofed source
    would pass it. The guard goes once the drop-everything list is bound."""
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")
    state = state_of(messages())
    with resynced(sim_target, state) as driver:
        sim_target.emulator.faults.reject("acl_interface_set_acl_list", -7)
        gone = state_of(messages(pods=["ns/b"]))
        driver.apply(diff_states(state, gone), gone)
        assert guard_tables(driver, a) != {} and input_record(sim_target, a) != (NO_INDEX, NO_INDEX)
        assert sends(sim_target, a, "10.65.0.2") and not sends(sim_target, a, "10.65.0.3"), "old list, guarded"
        sim_target.emulator.faults.clear()
        assert driver.resync(gone).ok
        assert guard_tables(driver, a) == {} and not sends(sim_target, a, "10.65.0.2")


def test_a_pod_with_no_list_whose_policy_fails_to_compile_drops_everything(sim_target: Target) -> None:
    """Pinned (its list cannot be compiled) it keeps the lists it has; one with none (its interface
    re-created after a VPP restart) is not left with no list and no guard: it is closed."""
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")
    msgs = messages()
    msgs[1] = b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow", src_ip_set_ids=["missing"])])
    driver = make_driver(sim_target)
    try:
        report = driver.resync(state_of(msgs))
        assert report.ok and "ns/a" in {key.workload_id for _, key in report.failed}, report
        assert not sends(sim_target, a, "10.65.0.2") and not sends(sim_target, a, "10.65.0.3")
    finally:
        driver.close()


def test_a_guard_vpp_refuses_fails_its_endpoint_closed(sim_target: Target) -> None:
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")
    sim_target.emulator.faults.reject("input_acl_set_interface", -7)
    driver = make_driver(sim_target)
    try:
        state = state_of(messages())
        report = driver.resync(state)
        assert report.ok and {key.workload_id for _, key in report.failed} == set(PODS)
        assert all("source guard" in reason for reason in report.failed.values())
        assert not sends(sim_target, a, "10.65.0.2"), "no guard, no egress"
        sim_target.emulator.faults.clear()
        report = driver.resync(state)
        assert report.ok and not report.failed
        assert sends(sim_target, a, "10.65.0.2") and not sends(sim_target, a, "10.65.0.3")
    finally:
        driver.close()


def test_guard_writes_match_the_helper(sim_target: Target) -> None:
    sim_target.pod("ns/a")
    state = state_of(messages(pods=["ns/a"]))
    with resynced(sim_target, state) as driver:
        sim_target.pod("ns/b")
        _, writes = apply(driver, state, messages())
        assert writes == 1 + 2 + guard_writes(ipv4=1, ipv6=1), "one binding (ns/a's ACLs), two routes, its guard"


def test_a_restarted_agent_does_not_take_a_deleted_interfaces_guard_for_the_one_at_its_index(
        sim_target: Target) -> None:
    old = sim_target.pod("ns/a")
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(messages(pods=["ns/a"]))).ok
        driver.close()
        # while the agent is down someone deletes pod-a's interface (its guard stays recorded for
        # the index, feature off) and pod-b's comes up at the same index
        sim_target.raw.api.delete_loopback(sw_if_index=old)
        sim_target.loopbacks.remove(old)
        assert sim_target.pod("ns/b") == old and input_record(sim_target, old) != (NO_INDEX, NO_INDEX)
        driver = make_driver(sim_target)
        report = driver.resync(state_of(messages(pods=["ns/b"])))
        assert report.ok and not report.failed
        assert sends(sim_target, old, "10.65.0.3") and not sends(sim_target, old, "10.65.0.2")
        assert not sends(sim_target, old, "10.66.0.1"), "guarded for real, not on a record with the feature off"
        assert set(sim_target.guard_tables()) == {t for ts in guard_tables(driver, old).values() for t in ts}
    finally:
        driver.close()


def test_a_record_naming_a_deleted_guard_is_cleared_for_the_next_pod_at_its_index(sim_target: Target) -> None:
    old = sim_target.pod("ns/a")
    state = state_of(messages(pods=["ns/a", "ns/b"]))
    with resynced(sim_target, state) as driver:
        # pod-a's interface goes behind the agent's back: its guard cannot be detached any more, and
        # the next pass deletes its tables; VPP's record for the index now names a freed table
        sim_target.raw.api.delete_loopback(sw_if_index=old)
        sim_target.loopbacks.remove(old)
        assert driver.resync(state).ok
        recorded = input_record(sim_target, old)
        assert recorded[0] != NO_INDEX and recorded[0] not in set(sim_target.raw.api.classify_table_ids().ids)
        sim_target.raw.api.create_loopback(mac_address="02:00:00:00:00:09")  # takes the index as someone's
        sim_target.raw.api.sw_interface_tag_add_del(is_add=True, sw_if_index=old,
                                                    tag="vpa1:wl:k8s/ns/b/eth0")
        sim_target.loopbacks.append(old)
        report = driver.resync(state_of(messages(pods=["ns/b"])))
        assert report.ok and not report.failed, report
        assert sends(sim_target, old, "10.65.0.3") and not sends(sim_target, old, "10.66.0.1")
        assert set(sim_target.guard_tables()) == {t for ts in guard_tables(driver, old).values() for t in ts}


def test_a_guard_update_vpp_refuses_closes_the_pods_egress_until_it_is_made(sim_target: Target) -> None:
    a, b_ = sim_target.pod("ns/a"), sim_target.pod("ns/b")
    state = state_of(messages())
    with resynced(sim_target, state) as driver:
        sim_target.emulator.faults.reject("classify_add_del_session", -7)
        moved = state_of(messages(a_ipv4="10.65.0.20"))
        report = driver.apply(diff_states(state, moved), moved)
        assert report.ok and [key.workload_id for _, key in report.failed] == ["ns/a"], report
        assert not sends(sim_target, a, "10.65.0.20") and not sends(sim_target, a, "10.65.0.2"), "closed"
        assert sends(sim_target, b_, "10.65.0.3"), "ns/b untouched"
        sim_target.emulator.faults.clear()
        assert driver.resync(moved).ok
        assert sends(sim_target, a, "10.65.0.20") and not sends(sim_target, a, "10.65.0.2")


def test_a_gated_pods_chain_is_detached_before_its_interface_goes(sim_target: Target) -> None:
    """The same VPP behaviour on output: a chain left recorded for a deleted pod interface would
    leave the next pod at that index with its widened list L_U and no chain (ip4-outacl off)."""
    driver = make_driver(sim_target, pod_interface="tap", plumbing=FakePlumbing())
    try:
        state = state_of(gated_messages(MEMBERS))
        driver.resync(state)
        for i, (pod, ip) in enumerate(GATED_PODS.items()):
            driver.attach_pod(pod_spec(pod, [f"{ip}/32"], host_ifname=f"cali{i}"))
        assert driver.resync(state).ok
        before = gated_interfaces(sim_target)
        assert not established(sim_target, before, "ns/other", "ns/web0", "tcp", 80)
        assert driver.detach_pod(PodDelete("/proc/self/ns/net", "eth0")) == "cali0"  # ns/web0's
        driver.attach_pod(pod_spec("ns/web0", [f"{GATED_PODS['ns/web0']}/32"], host_ifname="cali0"))
        assert driver.resync(state).ok
        after = gated_interfaces(sim_target)
        assert after["ns/web0"] == before["ns/web0"], "VPP handed the index on"
        assert established(sim_target, after, "ns/client", "ns/web0", "tcp", 80)
        assert not established(sim_target, after, "ns/other", "ns/web0", "tcp", 80), "its chain is on"
    finally:
        driver.close()


def gated_interfaces(target: Target) -> dict[str, int]:
    by_tag = {i.tag: i.sw_if_index for i in target.emulator.state.interfaces.all()}
    return {p: by_tag[f"vpa1:wl:k8s/{p}/eth0"] for p in GATED_PODS if f"vpa1:wl:k8s/{p}/eth0" in by_tag}


def test_a_resync_of_an_unchanged_vpp_trusts_the_guards_this_driver_made(sim_target: Target) -> None:
    """A periodic resync reads no guard back while every table of ours is still listed (one
    `classify_table_ids`); once a guard table is gone, the driver reads back and rebuilds."""
    a = sim_target.pod("ns/a")
    state = state_of(messages())
    with resynced(sim_target, state) as driver:
        before = driver.conn.requests.copy()
        report = driver.resync(state)
        assert report.ok and report.writes == 0
        asked = driver.conn.requests - before
        assert not {m: n for m, n in asked.items() if m in ("classify_table_by_interface", "classify_table_info",
                                                            "classify_session_dump")}, asked
        gone = guard_tables(driver, a)[4][-1]
        sim_target.raw.api.classify_add_del_table(is_add=False, table_index=gone, del_chain=False)
        assert driver.resync(state).ok
        assert sends(sim_target, a, "10.65.0.2") and not sends(sim_target, a, "10.65.0.3")


def test_new_sources_pass_the_guard_only_once_the_list_for_them_is_written(sim_target: Target) -> None:
    """The egress list is restricted to the pod's sources: a "deny from 10.70.0.0/16" is dropped
    from it while 10.70.0.0/16 is not a source. When the prefix is allowed, the guard may let it
    through only after the list that holds the deny again is written; while VPP refuses that
    list, packets from the prefix are dropped (before: the guard widened first, and the old list
    let them through to the "allow all")."""
    a = sim_target.pod("ns/a")
    sim_target.pod("ns/b")

    def with_deny(allowed: Sequence[str] = ()) -> list[felix.ToDataplane]:
        msgs = messages(allowed=allowed)
        msgs[1] = b.profile("open", inbound=[b.rule("allow")],
                            outbound=[b.rule("deny", src_net=["10.70.0.0/16"]), b.rule("allow")])
        return msgs

    state = state_of(with_deny())
    with resynced(sim_target, state) as driver:
        sim_target.emulator.faults.reject("acl_add_replace", -7)
        opened = state_of(with_deny(allowed=["10.70.0.0/16", "10.71.0.0/16"]))
        report = driver.apply(diff_states(state, opened), opened)
        assert report.ok and "ns/a" in {key.workload_id for _, key in report.failed}, report
        assert not sends(sim_target, a, "10.70.1.1") and not sends(sim_target, a, "10.71.1.1"), "new sources wait"
        assert sends(sim_target, a, "10.65.0.2")
        sim_target.emulator.faults.clear()
        assert driver.resync(opened).ok
        assert not sends(sim_target, a, "10.70.1.1"), "the policy's deny holds"
        assert sends(sim_target, a, "10.71.1.1") and sends(sim_target, a, "10.65.0.2")
