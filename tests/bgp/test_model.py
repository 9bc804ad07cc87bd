"""build_bgp_inputs: who peers with whom, which prefixes are ours, what is skipped and why."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from felix_shim.releases.decoder import FelixDecoder
from felix_shim.releases.schema import schema as release_schema
from tests.bgp import states as m
from vppagent.bgp.config import BgpConfig
from vppagent.bgp.model import (
    BgpInputs,
    BgpInputsUnavailable,
    PeerKind,
    build_bgp_inputs,
    hash_router_id,
    parse_as_number,
)
from vppagent.gen.felix import felixbackend_pb2 as felix

ip = ipaddress.ip_address
net = ipaddress.ip_network


def inputs(messages: list[felix.ToDataplane], **config: Any) -> BgpInputs:
    return build_bgp_inputs(m.state_of(messages), BgpConfig.model_validate(config))


def three_nodes(me: str = "node2", **labels: dict[str, str]) -> list[felix.ToDataplane]:
    return [m.config_msg(me)] + [
        m.host_msg(f"node{n}", f"198.18.0.{n}", labels=labels.get(f"node{n}")) for n in (1, 2, 3)
    ]


def peers_by_address(result: BgpInputs) -> dict[str, Any]:
    return {str(p.address): p for p in result.peers}


def test_mesh_peers_every_other_node_and_lower_address_connects() -> None:
    result = inputs(three_nodes("node2"))
    peers = peers_by_address(result)
    assert set(peers) == {"198.18.0.1", "198.18.0.3"}
    assert all(p.kind is PeerKind.MESH for p in peers.values())
    # node2 (198.18.0.2) > node1: node2 waits for node1; node3 > node2: node2 connects.
    assert peers["198.18.0.1"].passive is True
    assert peers["198.18.0.3"].passive is False
    assert result.router_id == ip("198.18.0.2")
    assert result.local_as == 64512


def test_passive_side_is_consistent_between_both_ends() -> None:
    for a, b in [(1, 2), (1, 3), (2, 3)]:
        pa = peers_by_address(inputs(three_nodes(f"node{a}")))[f"198.18.0.{b}"]
        pb = peers_by_address(inputs(three_nodes(f"node{b}")))[f"198.18.0.{a}"]
        assert pa.passive != pb.passive


def test_node_mesh_off_means_no_cluster_peers() -> None:
    assert inputs(three_nodes(), node_mesh=False).peers == ()


def test_hostname_override_and_missing_node() -> None:
    assert inputs(three_nodes("node2"), hostname="node3").hostname == "node3"
    with pytest.raises(BgpInputsUnavailable, match="node9"):
        inputs(three_nodes("node9"))
    with pytest.raises(BgpInputsUnavailable, match="no hostname"):
        inputs([m.host_msg("node1", "198.18.0.1")])


def test_node_as_numbers_and_asdot() -> None:
    messages = [m.config_msg("a"), m.host_msg("a", "10.0.0.1", asnumber="1.10"), m.host_msg("b", "10.0.0.2"),
                m.host_msg("c", "10.0.0.3", asnumber="65001")]
    result = inputs(messages, as_number=65000)
    assert result.local_as == 65546
    assert {str(p.address): p.as_number for p in result.peers} == {"10.0.0.2": 65000, "10.0.0.3": 65001}
    assert parse_as_number("4294967295") == 2**32 - 1
    for bad in ("0", "4294967296", "1.70000", "AS1", ""):
        with pytest.raises(ValueError):
            parse_as_number(bad)


def test_v332_host_metadata_messages_are_used() -> None:
    # A v3.32 Felix's split host metadata, as felix-shim hands it on (in the v3.33 form).
    v332 = release_schema("3.32")
    to_dp, v4v6, v6 = v332.to_dataplane, v332.message("HostMetadataV4V6Update"), v332.message("HostMetadataV6Update")
    frames = [
        to_dp(host_metadata_v4v6_update=v4v6(hostname="a", ipv4_addr="10.0.0.1/24", ipv6_addr="fd00::1",
                                             asnumber="65001")),
        to_dp(host_metadata_v4v6_update=v4v6(hostname="b", ipv4_addr="10.0.0.2")),
        to_dp(host_metadata_v6_update=v6(hostname="b", ipv6_addr="fd00::2")),
    ]
    decoder = FelixDecoder("3.32")
    messages = [m.config_msg("a"), *(decoder.decode(f.SerializeToString())[1] for f in frames)]
    result = inputs(messages)
    assert (result.node_ipv4, result.node_ipv6, result.local_as) == (ip("10.0.0.1"), ip("fd00::1"), 65001)
    assert sorted(str(p.address) for p in result.peers) == ["10.0.0.2", "fd00::2"]


def test_ipv6_only_node_gets_hashed_router_id() -> None:
    result = inputs([m.config_msg("a"), m.host_msg("a", ipv6="fd00::1"), m.host_msg("b", ipv6="fd00::2")])
    assert result.families() == (6,)
    assert result.router_id == hash_router_id("a") != hash_router_id("b")


def test_unparsable_nodes_are_skipped_with_a_reason() -> None:
    messages = [
        *three_nodes("node1"),
        m.host_msg("bad", "300.1.1.1"),
        m.host_msg("loop", "127.0.0.1"),
        m.host_msg("wrongfam", "fd00::9"),
        m.host_msg("asn", "10.9.9.9", asnumber="x"),
    ]
    result = inputs(messages)
    assert sorted(str(p.address) for p in result.peers) == ["198.18.0.2", "198.18.0.3"]
    assert len(result.problems) == 4
    assert all(any(name in p for p in result.problems) for name in ("'bad'", "'loop'", "'wrongfam'", "'asn'"))


def test_duplicate_node_addresses_make_one_session() -> None:
    result = inputs([*three_nodes("node1"), m.host_msg("node4", "198.18.0.3")])
    assert sorted(str(p.address) for p in result.peers) == ["198.18.0.2", "198.18.0.3"]
    assert [p.description for p in result.peers] == ["node2", "node3"]
    assert any("'node4'" in p and "'node3'" in p for p in result.problems)


def test_local_blocks_borrowed_and_remote_routes() -> None:
    messages = [
        *three_nodes("node1"),
        m.block_msg("10.244.1.0/26", "node1", local=True),
        m.block_msg("10.244.1.64/26", "node1", local=True),
        m.block_msg("10.244.2.0/26", "node2", local=False),
        m.block_msg("10.244.9.9/32", "node1", local=True),  # a /32 block: never a blackhole
        m.workload_route_msg("10.244.1.5/32", "node1"),  # covered by our block
        m.workload_route_msg("10.244.2.7/32", "node1", borrowed=True),
        m.workload_route_msg("fd10::7/128", "node1", borrowed=True),
    ]
    result = inputs(messages)
    assert result.local_blocks == (net("10.244.1.0/26"), net("10.244.1.64/26"))
    assert result.borrowed_addresses == (net("10.244.2.7/32"), net("fd10::7/128"))
    removed = build_bgp_inputs(m.state_of([*messages, m.route_remove_msg("10.244.1.64/26")]), BgpConfig())
    assert removed.local_blocks == (net("10.244.1.0/26"),)


def test_pools_and_services() -> None:
    messages = [
        *three_nodes("node1"),
        m.pool_msg("10.244.0.0/16"),
        m.pool_msg("10.250.0.0/16", ipip_mode="Always"),
        m.pool_msg("fd10::/48", vxlan_mode="CrossSubnet"),
        m.global_bgp_msg(cluster=["10.96.0.0/12", "10.96.0.1/12"], external=["bogus"], lb=["fd96::/112"]),
    ]
    result = inputs(messages)
    assert [(str(p.cidr), p.encapsulated) for p in result.pools] == [
        ("10.244.0.0/16", False), ("10.250.0.0/16", True), ("fd10::/48", True)]
    assert result.service_cidrs == (net("10.96.0.0/12"), net("fd96::/112"))
    assert any("'bogus'" in p for p in result.problems)


def test_route_reflector_roles() -> None:
    labels = {"node1": {"rr": "yes"}, "node3": {"rr": "no"}}
    reflector = inputs(three_nodes("node1", **labels), node_mesh=False, route_reflector_label="rr=yes",
                       route_reflector_cluster_id="224.0.0.1")
    assert reflector.route_reflector and reflector.route_reflector_cluster_id == ip("224.0.0.1")
    assert {str(p.address): (p.kind, p.route_reflector_client) for p in reflector.peers} == {
        "198.18.0.2": (PeerKind.REFLECTOR_CLIENT, True), "198.18.0.3": (PeerKind.REFLECTOR_CLIENT, True)}
    client = inputs(three_nodes("node2", **labels), node_mesh=False, route_reflector_label="rr=yes")
    assert [(str(p.address), p.kind) for p in client.peers] == [("198.18.0.1", PeerKind.REFLECTOR)]
    # Key-only selector: node3's "rr=no" makes it a reflector too.
    key_only = inputs(three_nodes("node2", **labels), node_mesh=False, route_reflector_label="rr")
    assert [p.kind for p in key_only.peers] == [PeerKind.REFLECTOR, PeerKind.REFLECTOR]


def test_reflector_does_not_make_ebgp_nodes_clients() -> None:
    messages = [m.config_msg("a"), m.host_msg("a", "10.0.0.1"), m.host_msg("b", "10.0.0.2", asnumber="65001")]
    result = inputs(messages, route_reflector_cluster_id="224.0.0.1")
    assert [p.route_reflector_client for p in result.peers] == [False]


def test_explicit_peers() -> None:
    peers = [
        {"address": "198.18.0.3", "as_number": 65001, "source_address": "node"},  # replaces the mesh peer
        {"address": "fd00::9", "as_number": 65001},  # no IPv6 on this node
        {"address": "198.18.0.2", "as_number": 65001},  # ourselves
        {"address": "192.0.2.1", "as_number": 65002, "route_reflector_client": True},  # eBGP: flag dropped
    ]
    result = inputs(three_nodes("node2"), peers=peers)
    by_address = peers_by_address(result)
    assert set(by_address) == {"198.18.0.1", "198.18.0.3", "192.0.2.1"}
    assert by_address["198.18.0.3"].kind is PeerKind.EXPLICIT
    assert by_address["198.18.0.3"].source_address == ip("198.18.0.2")
    assert by_address["192.0.2.1"].route_reflector_client is False
    assert len(result.problems) == 3


def test_interface_prefixes_from_felix() -> None:
    result = inputs([m.config_msg("a", InterfacePrefix="cali,tap, bad\"x"), m.host_msg("a", "10.0.0.1")])
    assert result.ignored_interfaces == ("cali*", "kube-ipvs*", "tap*")
    assert any("InterfacePrefix" in p for p in result.problems)
