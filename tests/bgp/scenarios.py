"""Named cluster states and configs shared by the golden, escaping and validation tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.bgp import states as m
from vppagent.bgp.config import BgpConfig
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState

RR_LABEL = {"route-reflector": "true"}


@dataclass(frozen=True)
class Scenario:
    messages: list[felix.ToDataplane]
    config: dict[str, Any]

    def state(self) -> DataplaneState:
        return m.state_of(self.messages)

    def bgp_config(self) -> BgpConfig:
        return BgpConfig.model_validate(self.config)


def _nodes(me: int, count: int, *, v6: bool = False, labels: dict[int, dict[str, str]] | None = None) -> list[
    felix.ToDataplane
]:
    out = [m.config_msg(f"node{me}"), m.pool_msg("10.244.0.0/16")]
    for n in range(1, count + 1):
        out.append(m.host_msg(f"node{n}", f"198.18.0.{n}", f"fd00::{n}" if v6 else "",
                              labels=(labels or {}).get(n)))
        out.append(m.block_msg(f"10.244.{n}.0/24", f"node{n}", f"198.18.0.{n}", local=n == me))
    out.append(m.workload_route_msg(f"10.244.{me}.2/32", f"node{me}"))
    return out


def mesh3() -> Scenario:
    return Scenario([*_nodes(2, 3), m.global_bgp_msg(cluster=["10.96.0.0/12"])], {})


def rr_reflector() -> Scenario:
    labels = {1: RR_LABEL, 4: RR_LABEL}
    return Scenario(_nodes(1, 4, labels=labels),
                    {"node_mesh": False, "route_reflector_label": "route-reflector=true",
                     "route_reflector_cluster_id": "224.0.0.1"})


def rr_client() -> Scenario:
    labels = {1: RR_LABEL, 4: RR_LABEL}
    return Scenario(_nodes(2, 4, labels=labels),
                    {"node_mesh": False, "route_reflector_label": "route-reflector=true"})


def ebgp_peer() -> Scenario:
    return Scenario(
        _nodes(1, 2),
        {
            "as_number": 64512,
            "node_mesh_password": "mesh-secret",
            "peers": [
                {"address": "192.0.2.1", "as_number": 65001, "port": 1179, "password": "t0r-s3cret!",
                 "ttl_security": True, "multihop": 2, "source_address": "node", "keepalive": 10,
                 "hold_time": 30, "graceful_restart_time": 60, "next_hop_self": True},
                {"address": "192.0.2.2", "as_number": 65002, "multihop": 4, "graceful_restart": False,
                 "passive": True},
            ],
        },
    )


def dual_stack() -> Scenario:
    messages = [
        *_nodes(1, 3, v6=True),
        m.pool_msg("fd10::/48", vxlan_mode="Always"),
        m.pool_msg("10.250.0.0/16", ipip_mode="CrossSubnet"),
        m.block_msg("fd10:0:0:1::/64", "node1", "fd00::1", local=True),
        m.block_msg("fd10:0:0:2::/64", "node2", "fd00::2", local=False),
        m.workload_route_msg("10.244.2.9/32", "node1", borrowed=True),
        m.workload_route_msg("fd10:0:0:2::9/128", "node1", borrowed=True),
    ]
    return Scenario(messages, {"listen_port": 1179, "router_id": "10.0.0.1"})


def communities() -> Scenario:
    messages = [
        *_nodes(1, 2, v6=True),
        m.pool_msg("fd10::/48"),
        m.block_msg("fd10:0:0:1::/64", "node1", "fd00::1", local=True),
        m.global_bgp_msg(cluster=["10.96.0.0/12", "fd96::/108"], external=["203.0.113.0/24"],
                         lb=["198.51.100.0/24"]),
    ]
    return Scenario(messages, {
        "as_number": 65010,
        "communities": [
            {"prefix": "10.244.0.0/16", "communities": ["65010:100", "65010:1:2"]},
            {"prefix": "10.96.0.0/12", "communities": ["65010:200"]},
            {"prefix": "fd10::/48", "communities": ["65010:300", "4200000000:7:8"]},
        ],
    })


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "mesh3": mesh3,
    "rr_reflector": rr_reflector,
    "rr_client": rr_client,
    "ebgp_peer": ebgp_peer,
    "dual_stack": dual_stack,
    "communities": communities,
}
