"""Classifier chains across an agent restart (a new driver against the same VPP): adopted, not
rebuilt; members changed while the agent was down repaired by session diffs; stale chains of ours
detached then deleted; tables that are not provably ours left alone."""

from __future__ import annotations

from typing import Any

from tests.vpp.helpers import Target, make_driver, state_of, tables_but_guards
from tests.vpp.test_classifier import MEMBERS, PODS, established, messages
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.classifier.layout import OUR_OPAQUE
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.lab import builders as b
from vppagent.vppsim import Direction


def tables(target: Target) -> dict[int, list[tuple[bytes, int]]]:
    """Every classifier table in VPP but the source guards' with its sessions (match, opaque_index)."""
    raw = target.raw.api
    return {t: sorted((bytes(s.match), int(s.opaque_index)) for s in raw.classify_session_dump(table_id=t))
            for t in tables_but_guards(target)}


def output_heads(target: Target) -> dict[int, tuple[int, int]]:
    """Output classifier attachments (the API cannot read them: the emulator's own state)."""
    sim = target.emulator
    with sim.state.lock:
        return {ifx: (a.ip4, a.ip6) for (ifx, d), a in sim.state.classifier.attachments.items()
                if d is Direction.OUTPUT and (a.ip4, a.ip6) != (NO_INDEX, NO_INDEX)}


def restarted(old: VppDriver, target: Target) -> VppDriver:
    """The agent restarts: its driver goes without cleaning up, a new one connects."""
    old.close()
    return make_driver(target)


def foreign_chain(target: Target) -> list[int]:
    """Someone else's IPv4 chain laid out exactly like ours (a member table, then a gap table with
    a drop session) but without our mark, attached as an input ACL of an interface."""
    raw = target.raw.api
    member_mask = bytes(12) + b"\xff" * 4 + bytes(16)
    gap_mask = bytes(9) + b"\xff" + bytes(22)
    common: dict[str, Any] = dict(is_add=True, del_chain=False, nbuckets=2, memory_size=1 << 20, skip_n_vectors=0,
                                  match_n_vectors=2, miss_next_index=NO_INDEX, current_data_flag=1,
                                  current_data_offset=0, mask_len=32)
    tail = int(raw.classify_add_del_table(table_index=NO_INDEX, next_table_index=NO_INDEX, mask=gap_mask,
                                          **common).new_table_index)
    head = int(raw.classify_add_del_table(table_index=NO_INDEX, next_table_index=tail, mask=member_mask,
                                          **common).new_table_index)
    session: dict[str, Any] = dict(is_add=True, opaque_index=7, advance=0, action=0, metadata=0, match_len=32)
    raw.classify_add_del_session(table_index=head, hit_next_index=NO_INDEX,
                                 match=bytes(12) + bytes([10, 66, 0, 1]) + bytes(16), **session)
    raw.classify_add_del_session(table_index=tail, hit_next_index=0, match=bytes(9) + b"\x11" + bytes(22), **session)
    ifx = target.pod("ns/foreign")
    raw.input_acl_set_interface(sw_if_index=ifx, ip4_table_index=head, ip6_table_index=NO_INDEX,
                                l2_table_index=NO_INDEX, is_add=True)
    return [head, tail]


def check_connectivity(target: Target, interfaces: dict[str, int], *, member: str, non_member: str) -> None:
    assert established(target, interfaces, member, "ns/web0", "tcp", 80)
    assert not established(target, interfaces, non_member, "ns/web0", "tcp", 80)
    assert established(target, interfaces, "ns/web0", non_member, "tcp", 80), "answers to the pod's own flows"


def test_restart_against_unchanged_vpp_adopts_chains_with_zero_writes(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    foreign = foreign_chain(sim_target)
    driver = make_driver(sim_target)
    try:
        state = state_of(messages(MEMBERS))
        assert driver.resync(state).ok
        before, heads = tables(sim_target), output_heads(sim_target)
        ours = [t for t, sessions in before.items() if sessions and all(o == OUR_OPAQUE for _, o in sessions)]
        assert ours and len(heads) == 2, "gated pods web0 and web1 carry a chain each family"
        driver = restarted(driver, sim_target)
        report = driver.resync(state)
        assert report.ok and report.writes == 0, "chains adopted, nothing rebuilt"
        assert tables(sim_target) == before and output_heads(sim_target) == heads
        assert driver.status()["classifier_chains"] == 1
        check_connectivity(sim_target, interfaces, member="ns/client", non_member="ns/other")
        assert all(t in tables(sim_target) for t in foreign)
    finally:
        driver.close()


def test_members_changed_while_the_agent_was_down_cost_one_write_each(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(messages(MEMBERS))).ok
        before = set(tables(sim_target))
        driver = restarted(driver, sim_target)
        # 10.66.0.1 (ns/client) left the set and 10.65.9.9 (ns/other) joined while the agent was down
        changed = [m for m in MEMBERS if m != "10.66.0.1"] + ["10.65.9.9"]
        report = driver.resync(state_of(messages(changed)))
        assert report.ok and report.writes == 2, "one session deleted, one added"
        assert set(tables(sim_target)) == before
        check_connectivity(sim_target, interfaces, member="ns/other", non_member="ns/client")
        # and the adopted chain is this driver's from now on: the next member change is one write
        driver.resync(state_of(messages(changed)))
        assert driver.resync(state_of(messages(changed))).writes == 0
    finally:
        driver.close()


def test_stale_chains_of_ours_are_detached_then_deleted_and_foreign_ones_stay(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    foreign = foreign_chain(sim_target)
    foreign_sessions = {t: tables(sim_target)[t] for t in foreign}
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(messages(MEMBERS))).ok
        driver = restarted(driver, sim_target)
        # while the agent was down the set shrank below the threshold: the list goes back to ACLs
        report = driver.resync(state_of(messages(MEMBERS[:10])))
        assert report.ok
        assert output_heads(sim_target) == {}, "detached (VPP would not have checked before deleting)"
        assert set(tables(sim_target)) == set(foreign), "ours deleted, someone else's kept"
        assert {t: tables(sim_target)[t] for t in foreign} == foreign_sessions
        check_connectivity(sim_target, interfaces, member="ns/client", non_member="ns/other")
        assert driver.resync(state_of(messages(MEMBERS[:10]))).writes == 0
    finally:
        driver.close()


def test_a_gate_changed_while_the_agent_was_down_gets_a_new_chain_and_the_old_one_goes(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target)
    try:
        assert driver.resync(state_of(messages(MEMBERS))).ok
        old_tables = set(tables(sim_target))
        driver = restarted(driver, sim_target)
        # the policy now admits the set on port 81 as well: other gaps, another chain
        changed = [m for m in messages(MEMBERS) if not m.HasField("active_policy_update")]
        changed.append(b.policy("web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[80, 81, (8000, 8099)], src_ip_set_ids=["s:clients"]),
            b.rule("allow", protocol="udp", dst_ports=[53])]))
        state = state_of(changed)
        assert driver.resync(state).ok
        now = set(tables(sim_target))
        assert not now & old_tables, "the old chains are gone"
        heads = {h for pair in output_heads(sim_target).values() for h in pair} - {NO_INDEX}  # (no IPv6 chain)
        assert heads and heads <= now
        check_connectivity(sim_target, interfaces, member="ns/client", non_member="ns/other")
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 81)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 81)
        assert make_driver(sim_target).resync(state).writes == 0, "and a further restart adopts the new ones"
    finally:
        driver.close()
