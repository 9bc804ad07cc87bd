"""Short constructors for ToDataplane messages, for tests, benchmarks and the lab's Felix stand-in.

They build exactly what Felix would send; nothing here is used on the agent's data path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vppagent.gen.felix import felixbackend_pb2 as felix

IPSET_TYPES = {"ip": 0, "ip_and_port": 1, "net": 2}


def config(values: Mapping[str, str] | None = None) -> felix.ToDataplane:
    return felix.ToDataplane(config_update=felix.ConfigUpdate(config=dict(values or {})))


def in_sync() -> felix.ToDataplane:
    return felix.ToDataplane(in_sync=felix.InSync())


def ipset(set_id: str, members: Iterable[str], kind: str = "net") -> felix.ToDataplane:
    return felix.ToDataplane(ipset_update=felix.IPSetUpdate(
        id=set_id, members=list(members), type=IPSET_TYPES[kind]))  # type: ignore[arg-type]


def ipset_delta(set_id: str, added: Iterable[str] = (), removed: Iterable[str] = ()) -> felix.ToDataplane:
    return felix.ToDataplane(ipset_delta_update=felix.IPSetDeltaUpdate(
        id=set_id, added_members=list(added), removed_members=list(removed)))


def ipset_remove(set_id: str) -> felix.ToDataplane:
    return felix.ToDataplane(ipset_remove=felix.IPSetRemove(id=set_id))


def rule(action: str = "allow", **fields: Any) -> felix.Rule:
    """A felix.Rule; `protocol="tcp"` or `protocol=6` is accepted, ports as (first, last) or int."""
    out = felix.Rule(action=action)
    for name, value in fields.items():
        if name in ("protocol", "not_protocol"):
            target = getattr(out, name)
            if isinstance(value, int):
                target.number = value
            else:
                target.name = value
        elif name.endswith("_ports"):
            for port in value:
                first, last = (port, port) if isinstance(port, int) else port
                getattr(out, name).add(first=first, last=last)
        elif name in ("icmp_type_code", "not_icmp_type_code"):
            getattr(out, name).CopyFrom(felix.IcmpTypeAndCode(type=value[0], code=value[1]))
        elif isinstance(value, list | tuple):
            getattr(out, name).extend(value)
        else:
            setattr(out, name, value)
    return out


def policy_id(name: str, namespace: str = "", kind: str = "") -> felix.PolicyID:
    return felix.PolicyID(name=name, namespace=namespace, kind=kind)


def policy(name: str, inbound: Sequence[felix.Rule] = (), outbound: Sequence[felix.Rule] = (),
           namespace: str = "", kind: str = "", tier: str = "default") -> felix.ToDataplane:
    return felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(
        id=policy_id(name, namespace, kind),
        policy=felix.Policy(namespace=namespace, inbound_rules=list(inbound),
                            outbound_rules=list(outbound), tier=tier)))


def policy_remove(name: str, namespace: str = "", kind: str = "") -> felix.ToDataplane:
    return felix.ToDataplane(active_policy_remove=felix.ActivePolicyRemove(
        id=policy_id(name, namespace, kind)))


def profile(name: str, inbound: Sequence[felix.Rule] = (), outbound: Sequence[felix.Rule] = ()
            ) -> felix.ToDataplane:
    return felix.ToDataplane(active_profile_update=felix.ActiveProfileUpdate(
        id=felix.ProfileID(name=name),
        profile=felix.Profile(inbound_rules=list(inbound), outbound_rules=list(outbound))))


def profile_remove(name: str) -> felix.ToDataplane:
    return felix.ToDataplane(active_profile_remove=felix.ActiveProfileRemove(id=felix.ProfileID(name=name)))


def tier(name: str, ingress: Sequence[str] = (), egress: Sequence[str] = (),
         default_action: str = "Deny", namespace: str = "") -> felix.TierInfo:
    return felix.TierInfo(
        name=name, default_action=default_action,
        ingress_policies=[policy_id(p, namespace) for p in ingress],
        egress_policies=[policy_id(p, namespace) for p in egress])


def workload(workload_id: str, name: str, ipv4: Sequence[str] = (), ipv6: Sequence[str] = (),
             tiers: Sequence[felix.TierInfo] = (), profiles: Sequence[str] = (), state: str = "active",
             orchestrator: str = "k8s", endpoint_id: str = "eth0") -> felix.ToDataplane:
    return felix.ToDataplane(workload_endpoint_update=felix.WorkloadEndpointUpdate(
        id=felix.WorkloadEndpointID(orchestrator_id=orchestrator, workload_id=workload_id,
                                    endpoint_id=endpoint_id),
        endpoint=felix.WorkloadEndpoint(state=state, name=name, ipv4_nets=list(ipv4),
                                        ipv6_nets=list(ipv6), tiers=list(tiers),
                                        profile_ids=list(profiles))))


def workload_remove(workload_id: str, orchestrator: str = "k8s", endpoint_id: str = "eth0"
                    ) -> felix.ToDataplane:
    return felix.ToDataplane(workload_endpoint_remove=felix.WorkloadEndpointRemove(
        id=felix.WorkloadEndpointID(orchestrator_id=orchestrator, workload_id=workload_id,
                                    endpoint_id=endpoint_id)))


def host_endpoint(endpoint_id: str, name: str, tiers: Sequence[felix.TierInfo] = (),
                  profiles: Sequence[str] = (), untracked_tiers: Sequence[felix.TierInfo] = (),
                  pre_dnat_tiers: Sequence[felix.TierInfo] = (),
                  forward_tiers: Sequence[felix.TierInfo] = ()) -> felix.ToDataplane:
    return felix.ToDataplane(host_endpoint_update=felix.HostEndpointUpdate(
        id=felix.HostEndpointID(endpoint_id=endpoint_id),
        endpoint=felix.HostEndpoint(name=name, tiers=list(tiers), profile_ids=list(profiles),
                                    untracked_tiers=list(untracked_tiers),
                                    pre_dnat_tiers=list(pre_dnat_tiers),
                                    forward_tiers=list(forward_tiers))))


def route(dst: str, types: int, node: str = "", node_ip: str = "",
          pool_type: int = felix.NO_ENCAP) -> felix.ToDataplane:
    """A RouteUpdate; by default in an unencapsulated IP pool, as Felix sends a block of one."""
    return felix.ToDataplane(route_update=felix.RouteUpdate(
        dst=dst, types=types, dst_node_name=node, dst_node_ip=node_ip,  # type: ignore[arg-type]
        ip_pool_type=pool_type))  # type: ignore[arg-type]
