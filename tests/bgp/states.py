"""Build DataplaneStates the way the agent does: by folding Felix ToDataplane messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState


def config_msg(hostname: str, **extra: str) -> felix.ToDataplane:
    return felix.ToDataplane(config_update=felix.ConfigUpdate(config={"FelixHostname": hostname, **extra}))


def host_msg(
    hostname: str,
    ipv4: str = "",
    ipv6: str = "",
    asnumber: str = "",
    labels: Mapping[str, str] | None = None,
) -> felix.ToDataplane:
    return felix.ToDataplane(
        host_metadata_update=felix.HostMetadataUpdate(
            hostname=hostname, ipv4_addr=ipv4, ipv6_addr=ipv6, asnumber=asnumber, labels=dict(labels or {})
        )
    )


def host_remove_msg(hostname: str) -> felix.ToDataplane:
    return felix.ToDataplane(host_metadata_remove=felix.HostMetadataRemove(hostname=hostname))


def pool_msg(cidr: str, ipip_mode: str = "Never", vxlan_mode: str = "Never") -> felix.ToDataplane:
    return felix.ToDataplane(
        ipam_pool_update=felix.IPAMPoolUpdate(
            id=cidr, pool=felix.IPAMPool(cidr=cidr, ipip_mode=ipip_mode, vxlan_mode=vxlan_mode)
        )
    )


def block_msg(dst: str, node: str, node_ip: str = "", *, local: bool) -> felix.ToDataplane:
    """A Felix route for an IPAM block: LOCAL_WORKLOAD on its own node, REMOTE_WORKLOAD elsewhere."""
    return felix.ToDataplane(
        route_update=felix.RouteUpdate(
            types=felix.LOCAL_WORKLOAD if local else felix.REMOTE_WORKLOAD,
            dst=dst,
            dst_node_name=node,
            dst_node_ip=node_ip,
        )
    )


def workload_route_msg(dst: str, node: str, *, borrowed: bool = False) -> felix.ToDataplane:
    return felix.ToDataplane(
        route_update=felix.RouteUpdate(
            types=felix.LOCAL_WORKLOAD, dst=dst, dst_node_name=node, local_workload=True, borrowed=borrowed
        )
    )


def route_remove_msg(dst: str) -> felix.ToDataplane:
    return felix.ToDataplane(route_remove=felix.RouteRemove(dst=dst))


def global_bgp_msg(
    cluster: Iterable[str] = (), external: Iterable[str] = (), lb: Iterable[str] = ()
) -> felix.ToDataplane:
    return felix.ToDataplane(
        global_bgp_config_update=felix.GlobalBGPConfigUpdate(
            service_cluster_cidrs=list(cluster),
            service_external_cidrs=list(external),
            service_loadbalancer_cidrs=list(lb),
        )
    )


def state_of(messages: Iterable[felix.ToDataplane], state: DataplaneState | None = None) -> DataplaneState:
    state = state if state is not None else DataplaneState()
    for msg in messages:
        state.apply(msg)
    return state
