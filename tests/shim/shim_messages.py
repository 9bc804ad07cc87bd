"""Small builders for ToDataplane messages used by the shim tests."""

from __future__ import annotations

from vppagent.gen.felix import felixbackend_pb2 as felix


def config(**values: str) -> felix.ToDataplane:
    return felix.ToDataplane(config_update=felix.ConfigUpdate(config=values))


def ipset(set_id: str, *members: str) -> felix.ToDataplane:
    return felix.ToDataplane(
        ipset_update=felix.IPSetUpdate(id=set_id, members=list(members), type=felix.IPSetUpdate.NET)
    )


def ipset_delta(set_id: str, added: list[str], removed: list[str]) -> felix.ToDataplane:
    return felix.ToDataplane(
        ipset_delta_update=felix.IPSetDeltaUpdate(id=set_id, added_members=added, removed_members=removed)
    )


def ipset_remove(set_id: str) -> felix.ToDataplane:
    return felix.ToDataplane(ipset_remove=felix.IPSetRemove(id=set_id))


def policy(name: str, *src_nets: str, tier: str = "default") -> felix.ToDataplane:
    rules = [felix.Rule(action="allow", src_net=[net]) for net in src_nets]
    return felix.ToDataplane(
        active_policy_update=felix.ActivePolicyUpdate(
            id=felix.PolicyID(name=name), policy=felix.Policy(tier=tier, inbound_rules=rules)
        )
    )


def policy_remove(name: str) -> felix.ToDataplane:
    return felix.ToDataplane(active_policy_remove=felix.ActivePolicyRemove(id=felix.PolicyID(name=name)))


def workload(workload_id: str, name: str, *nets: str) -> felix.ToDataplane:
    return felix.ToDataplane(
        workload_endpoint_update=felix.WorkloadEndpointUpdate(
            id=felix.WorkloadEndpointID(orchestrator_id="k8s", workload_id=workload_id, endpoint_id="eth0"),
            endpoint=felix.WorkloadEndpoint(state="active", name=name, ipv4_nets=list(nets)),
        )
    )


def in_sync() -> felix.ToDataplane:
    return felix.ToDataplane(in_sync=felix.InSync())


def numbered(messages: list[felix.ToDataplane], start: int = 1) -> list[felix.ToDataplane]:
    """Copies with Felix's sequence_number set, as Felix sends them."""
    out = []
    for offset, msg in enumerate(messages):
        copy = felix.ToDataplane()
        copy.CopyFrom(msg)
        copy.sequence_number = start + offset
        out.append(copy)
    return out


def unknown_payload(field_number: int = 40) -> bytes:
    """A ToDataplane from a future Calico: sequence_number 7 plus an empty message in `field_number`."""
    tag = (field_number << 3) | 2
    encoded_tag = bytearray()
    while tag > 0x7F:
        encoded_tag.append((tag & 0x7F) | 0x80)
        tag >>= 7
    encoded_tag.append(tag)
    return bytes([15 << 3, 7]) + bytes(encoded_tag) + b"\x00"
