"""The store: pending until InSync, diffs after, held-back objects, replay compaction."""

from __future__ import annotations

from vppagent.lab import builders as b
from vppagent.server.store import Store
from vppagent.state.model import DataplaneState, Kind, PolicyKey, WorkloadKey

WEP = WorkloadKey("k8s", "ns/pod1", "eth0")


def snapshot() -> list:
    return [
        b.config({"ReportingIntervalSecs": "5"}),
        b.ipset("s:web", ["10.0.0.1/32", "10.0.0.2"]),
        b.policy("allow-web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80],
                                                src_ip_set_ids=["s:web"])]),
        b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("ns/pod1", "cali1", ipv4=["10.0.0.5/32"],
                   tiers=[b.tier("default", ingress=["allow-web"])], profiles=["kns.ns"]),
    ]


def synced_store() -> Store:
    store = Store()
    for msg in snapshot():
        store.apply(msg)
    store.apply(b.in_sync())
    diff, eff = store.prepare()
    assert diff is None  # nothing known to be programmed: full resync
    store.commit(eff)
    return store


def test_nothing_reaches_the_driver_before_in_sync() -> None:
    store = Store()
    for msg in snapshot():
        store.apply(msg)
    assert not store.has_work
    diff, eff = store.prepare()
    assert diff is not None and diff.is_empty()
    assert eff.counts()["policies"] == 0
    assert store.pending.counts()["policies"] == 1


def test_delta_after_sync_yields_only_that_change() -> None:
    store = synced_store()
    store.apply(b.ipset_delta("s:web", added=["10.0.0.3"]))
    diff, eff = store.prepare()
    assert diff is not None
    assert diff.summary() == {"upserts": {"ipsets": ["s:web"]}, "removes": {}}
    assert eff.ipsets["s:web"].members == {"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"}
    store.commit(eff)
    diff, _ = store.prepare()
    assert diff is not None and diff.is_empty()


def test_new_stream_resyncs_by_diff_and_removes_exactly_the_dropped_policy() -> None:
    store = synced_store()
    store.new_stream()
    msgs = snapshot()
    msgs.insert(3, b.policy("extra", inbound=[b.rule("deny")]))
    for msg in msgs:
        store.apply(msg)
    store.apply(b.in_sync())
    diff, eff = store.prepare()
    assert diff is not None and diff.summary()["upserts"] == {"policies": ["extra"]}
    store.commit(eff)
    store.new_stream()
    for msg in snapshot():
        store.apply(msg)
    store.apply(b.in_sync())
    diff, _ = store.prepare()
    assert diff is not None
    assert diff.summary() == {"upserts": {}, "removes": {"policies": ["extra"]}}


def test_invalid_policy_is_held_back_with_its_endpoint_and_old_version_kept() -> None:
    store = synced_store()
    store.apply(b.policy("allow-web", inbound=[b.rule("allow", src_net=["10.0.0.300/32"])]))
    diff, eff = store.prepare()
    assert diff is not None and diff.is_empty(), "the bad version must not be programmed"
    key = PolicyKey("allow-web", "", "")
    assert "allow-web" in store.held[(Kind.POLICY, key)]
    assert "10.0.0.300" in store.held[(Kind.POLICY, key)]
    assert (Kind.WORKLOAD_ENDPOINT, WEP) in store.held
    # the programmed (valid) version stays in effect
    assert eff.policies[key].inbound_rules[0].dst_ports[0].first == 80


def test_reference_to_missing_ipset_holds_back_policy_and_new_endpoint() -> None:
    store = synced_store()
    store.apply(b.policy("needs-set", inbound=[b.rule("allow", src_ip_set_ids=["s:missing"])]))
    store.apply(b.workload("ns/pod2", "cali2", tiers=[b.tier("default", ingress=["needs-set"])],
                           profiles=["kns.ns"]))
    diff, eff = store.prepare()
    assert diff is not None
    assert PolicyKey("needs-set", "", "") not in eff.policies
    pod2 = WorkloadKey("k8s", "ns/pod2", "eth0")
    assert pod2 not in eff.workload_endpoints, "a new endpoint with a bad policy is not programmed"
    assert "s:missing" in store.held[(Kind.WORKLOAD_ENDPOINT, pod2)]
    # the unrelated endpoint is untouched
    assert (Kind.WORKLOAD_ENDPOINT, WEP) not in store.held


def test_ipset_with_invalid_member_holds_back_and_keeps_old_members() -> None:
    store = synced_store()
    store.apply(b.ipset("s:web", ["10.0.0.1", "not-an-ip"]))
    _, eff = store.prepare()
    assert eff.ipsets["s:web"].members == {"10.0.0.1/32", "10.0.0.2/32"}
    assert "not-an-ip" in store.held[(Kind.IPSET, "s:web")]


def test_failed_objects_keep_old_programmed_value_and_stay_dirty() -> None:
    store = synced_store()
    store.apply(b.workload("ns/pod1", "cali1", ipv4=["10.0.0.6/32"], profiles=["kns.ns"],
                           tiers=[b.tier("default", ingress=["allow-web"])]))
    diff, eff = store.prepare()
    assert diff is not None and list(diff.upserts) == [Kind.WORKLOAD_ENDPOINT]
    store.commit(eff, failed=[(Kind.WORKLOAD_ENDPOINT, WEP)])
    assert store.programmed is not None
    assert list(store.programmed.workload_endpoints[WEP].ipv4_nets) == ["10.0.0.5/32"]
    diff, _ = store.prepare()
    assert diff is not None and WEP in diff.upserts[Kind.WORKLOAD_ENDPOINT], "retried"


def test_replay_of_compacted_state_reproduces_it() -> None:
    state = DataplaneState()
    for msg in snapshot():
        state.apply(msg)
    state.apply(b.ipset_delta("s:web", added=["10.9.9.9"], removed=["10.0.0.1"]))
    state.apply(b.policy_remove("allow-web"))
    replayed = DataplaneState()
    for msg in state.to_messages():
        replayed.apply(msg)
    assert replayed.tables == state.tables
    assert PolicyKey("allow-web", "", "") not in replayed.policies
