"""What each node's Felix sends (snapshot, deltas, order, relevance) and the expected verdicts."""

from __future__ import annotations

import pytest

from tests.lab.scenarios import SMALL
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import oracle
from vppagent.lab.felix_feed import NodeFeed
from vppagent.lab.scenario import Scenario, load_scenario, parse_scenario
from vppagent.state.model import DataplaneState


def feeds_for(sc: Scenario) -> dict[str, NodeFeed]:
    interfaces = {pod.name: f"cali{i:011d}" for i, (_, pod) in enumerate(sc.pods())}
    return {node.name: NodeFeed(sc, node.name, interfaces) for node in sc.nodes}


def kinds(messages: list[felix.ToDataplane]) -> list[str]:
    return [str(m.WhichOneof("payload")) for m in messages]


def test_snapshot_is_felix_shaped() -> None:
    sc = parse_scenario(SMALL)
    feeds = feeds_for(sc)
    first = next(sc.snapshots())
    messages = feeds["n1"].snapshot(first.objects)
    order = kinds(messages)
    assert order[0] == "config_update" and order[-1] == "in_sync"
    assert messages[0].config_update.config["FelixHostname"] == "n1"
    # Referenced objects come before what references them.
    db_order = kinds(feeds["n2"].snapshot(first.objects))
    assert db_order.index("ipset_update") < db_order.index("active_policy_update") < db_order.index(
        "workload_endpoint_update")
    assert order.index("active_profile_update") < order.index("workload_endpoint_update")
    assert order.count("host_metadata_update") == 2
    blocks = {m.route_update.dst: m.route_update.types for m in messages if m.HasField("route_update")}
    assert blocks["10.65.1.0/24"] == felix.LOCAL_WORKLOAD and blocks["10.65.2.0/24"] == felix.REMOTE_WORKLOAD
    weps = {m.workload_endpoint_update.id.workload_id for m in messages if m.HasField("workload_endpoint_update")}
    assert weps == {"default/web", "default/client"}, "only local workloads"


def test_only_policies_of_local_endpoints_are_sent() -> None:
    sc = parse_scenario(SMALL)
    feeds = feeds_for(sc)
    first = next(sc.snapshots())
    n1, n2 = (feeds[n].snapshot(first.objects) for n in ("n1", "n2"))
    # Policy db applies to db (on n2) only; edge.forward to n1's host endpoint only.
    assert {m.active_policy_update.id.name for m in n1 if m.HasField("active_policy_update")} == {"edge.forward"}
    assert {m.active_policy_update.id.name for m in n2 if m.HasField("active_policy_update")} == {"db"}
    assert "ipset_update" not in kinds(n1) and kinds(n2).count("ipset_update") == 1
    (hep,) = feeds["n1"].state.host_endpoints.values()
    assert [t.name for t in hep.forward_tiers] == [t.name for t in hep.tiers] == ["edge"]
    db = feeds["n2"].state.workload_endpoints
    (endpoint,) = db.values()
    assert [t.name for t in endpoint.tiers] == ["default"]
    assert [p.name for p in endpoint.tiers[0].ingress_policies] == ["db"]
    assert not endpoint.tiers[0].egress_policies  # the policy has no egress section


def test_ipset_change_is_a_delta_and_removals_come_last() -> None:
    sc = load_scenario()
    feeds = feeds_for(sc)
    snapshots = list(sc.snapshots())
    for feed in feeds.values():
        feed.snapshot(snapshots[0].objects)
    quarantine = {node: feed.advance(snapshots[1].objects) for node, feed in feeds.items()}
    for messages in quarantine.values():
        assert kinds(messages) == ["ipset_delta_update"]
        assert list(messages[0].ipset_delta_update.added_members) == [f"{sc.pod_address('backend-2')}/32"]
    release = kinds(feeds["node-b"].advance(snapshots[2].objects))
    assert release == ["ipset_delta_update", "active_policy_update"]
    for node in ("node-a", "node-b"):
        feeds[node].advance(snapshots[2].objects)  # catch up (node-b already did: nothing new)
    removal = kinds(feeds["node-a"].advance(snapshots[3].objects))
    # The endpoint stops referring to the policy before the policy goes, then its unused set.
    assert removal == ["workload_endpoint_update", "active_policy_remove", "ipset_remove"]
    assert kinds(feeds["node-a"].advance(snapshots[3].objects)) == [], "nothing left to send"


def test_the_mirror_state_is_what_the_node_was_sent() -> None:
    sc = load_scenario()
    feed = feeds_for(sc)["node-c"]
    sent: list[felix.ToDataplane] = []
    for snap in sc.snapshots():
        sent += feed.snapshot(snap.objects) if snap.index == 0 else feed.advance(snap.objects)
    folded = DataplaneState()
    for msg in sent:
        folded.apply(msg)
    assert list(folded.to_messages()) == list(feed.state.to_messages())
    assert feed.state.host_endpoints, "node-c's uplink host endpoint"


@pytest.mark.parametrize("scenario", ["default", "small"])
def test_written_expectations_agree_with_the_evaluator(scenario: str) -> None:
    sc = load_scenario() if scenario == "default" else parse_scenario(SMALL)
    feeds = feeds_for(sc)
    checked = 0
    for snap in sc.snapshots():
        for feed in feeds.values():
            feed.snapshot(snap.objects) if snap.index == 0 else feed.advance(snap.objects)
        states = {node: feed.state for node, feed in feeds.items()}
        for exp in snap.expectations:
            want = oracle.expected(sc, snap.objects, states, exp.source, exp.target, exp.port, 40000)
            assert want.allowed == exp.allowed, f"step {snap.name}: {exp} but the evaluator says {want}"
            checked += 1
    assert checked >= 3


def test_quarantine_is_decided_in_the_security_tier() -> None:
    sc = load_scenario()
    feeds = feeds_for(sc)
    snaps = list(sc.snapshots())
    for feed in feeds.values():
        feed.snapshot(snaps[0].objects)
        feed.advance(snaps[1].objects)
    states = {node: feed.state for node, feed in feeds.items()}
    port = sc.pod("db").ports[0]
    leaving = oracle.expected(sc, snaps[1].objects, states, "backend-2", "db", port, 40000)
    assert not leaving.allowed and "node-c" in leaving.reason and "security.quarantine" in leaving.reason
    arriving = oracle.expected(sc, snaps[1].objects, states, "frontend-1", "backend-2", sc.pod("backend-2").ports[0],
                               40000)
    assert not arriving.allowed and "security.quarantine, rule 0" in arriving.reason
