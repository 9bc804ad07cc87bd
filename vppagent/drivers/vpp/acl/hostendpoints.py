"""Host endpoints on VPP: policy on the VPP interface named by the endpoint (the uplink; one VPP
took with af_packet is also found by its Linux name, as Felix names it).

Everything entering VPP through the uplink crosses its input ACL, host-bound or forwarded alike,
so the input ACL tells them apart by destination (the outbound ACL by source):
- to/from the host's addresses (the endpoint's expected addresses and the interface's own VPP
  addresses): the normal chain (failsafes, tiers, profiles) as `compile_host_endpoint` builds it;
- anything else is forwarded: the applyOnForward tiers decide, and what they let through (or do
  not decide) is allowed here, because the workload's own chain then runs on the pod interface
  (Felix: any deny is final, else the last chain decides).
Untracked and pre-DNAT tiers have no counterpart in VPP's ACL plugin: such endpoints are refused
with status "error" ("unsupported on VPP"), never programmed half. So is the "*" endpoint (all
host interfaces).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from vppagent.drivers.vpp.acl.lists import ListCompiler
from vppagent.drivers.vpp.acl.plan import Wanted
from vppagent.drivers.vpp.acl.render import allow_any, rule_from_flat
from vppagent.drivers.vpp.api.types import AclContent, AclRule
from vppagent.drivers.vpp.failures import Owner
from vppagent.drivers.vpp.programmed import AF_PACKET_DEV_TYPE, Programmed
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, compile_host_endpoint
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import Direction, HostEndpoint, IPAddress, PolicyError, WorkloadEndpoint
from vppagent.state.model import DataplaneState, Kind, WorkloadKey

FORWARD_PROFILE = "__vppagent_forward_fallthrough"  # synthetic: what falls out of the forward tiers
AF_PACKET_PREFIX = "host-"  # VPP names the af_packet interface on Linux's eth0 `host-eth0`


def interfaces_by_name(programmed: Programmed) -> dict[str, int]:
    """Non-pod VPP interfaces by the name a host endpoint may give: Felix names the Linux
    interface (`eth0`), and an uplink VPP took with af_packet is `host-eth0` in VPP. VPP's own
    name wins when both spellings name an interface."""
    others = [i for i in programmed.interfaces.values() if not i.is_pod]
    by_name = {i.name: i.sw_if_index for i in others}
    for info in others:
        if info.dev_type == AF_PACKET_DEV_TYPE and info.name.startswith(AF_PACKET_PREFIX):
            by_name.setdefault(info.name.removeprefix(AF_PACKET_PREFIX), info.sw_if_index)
    return by_name


def host_endpoint_lists(state: DataplaneState, programmed: Programmed, compiler: ListCompiler,
                        wanted: dict[int, Wanted], owners: dict[int, Owner], failed: dict[Owner, str]) -> None:
    """Add each host endpoint's lists to `wanted` (by interface) and `owners`, or its refusal to `failed`."""
    if not state.host_endpoints:
        return
    by_name = interfaces_by_name(programmed)
    catalog = Catalog(state)
    forward_catalog: Catalog | None = None
    for endpoint_id, pb in sorted(state.host_endpoints.items()):
        owner: Owner = (Kind.HOST_ENDPOINT, endpoint_id)
        try:
            hep = HostEndpoint.from_proto(endpoint_id, pb)
        except ValueError as exc:  # an expected address that does not parse: this endpoint's fault
            failed[owner] = f"host endpoint {endpoint_id}: {exc}"
            if (sw_if_index := by_name.get(pb.name)) is not None:
                wanted[sw_if_index] = (None, None)  # keeps what it has
                owners[sw_if_index] = owner
            continue
        if hep.untracked_tiers or hep.pre_dnat_tiers:
            failed[owner] = (f"host endpoint {endpoint_id}: untracked and pre-DNAT policy is "
                             "unsupported on VPP (the ACL plugin has no such stages)")
            continue
        if hep.name in ("", "*"):
            failed[owner] = f"host endpoint {endpoint_id}: '*' (all interfaces) is unsupported on VPP"
            continue
        sw_if_index = by_name.get(hep.name)
        if sw_if_index is None:
            continue  # no such VPP interface here: nothing to police (as Felix)
        if forward_catalog is None:
            forward_catalog = Catalog(_with_forward_fallthrough(state))
        host = list(hep.expected_addrs) + programmed.interface_addresses(sw_if_index)
        try:
            lists = [_uplink_list(catalog, forward_catalog, hep, d, host, compiler.rule_limit)
                     for d in (Direction.INGRESS, Direction.EGRESS)]
        except ValueError as exc:  # PolicyError (named), or data that does not parse
            failed[owner] = str(exc) if isinstance(exc, PolicyError) else f"host endpoint {endpoint_id}: {exc}"
            wanted[sw_if_index] = (None, None)
            owners[sw_if_index] = owner
            continue
        wanted[sw_if_index] = (lists[0], lists[1])  # ingress to the host = VPP input
        owners[sw_if_index] = owner


def _uplink_list(catalog: Catalog, forward_catalog: Catalog, hep: HostEndpoint, direction: Direction,
                 host: Sequence[IPAddress], rule_limit: int) -> AclContent:
    normal = compile_host_endpoint(catalog, hep, direction, rule_limit=rule_limit)
    rules: list[AclRule] = []
    for addr in host:
        rules.extend(_restricted(normal, addr, direction))
    forward = _forward_list(forward_catalog, hep, direction, rule_limit)
    rules.extend(rule_from_flat(r) for r in forward.rules)
    if forward.default_action == "allow":
        rules.extend(allow_any())
    return AclContent.of(rules)


def _restricted(compiled: CompiledList, addr: IPAddress, direction: Direction) -> Iterable[AclRule]:
    """The list for packets to (ingress) or from (egress) `addr` only, ending in its default."""
    host = ipaddress.ip_network(addr)
    for flat in compiled.rules:
        side = flat.dst if direction is Direction.INGRESS else flat.src
        if flat.family != addr.version or addr not in side:
            continue
        rule = rule_from_flat(flat)
        yield rule._replace(dst=host) if direction is Direction.INGRESS else rule._replace(src=host)
    any_net = ipaddress.ip_network("0.0.0.0/0" if addr.version == 4 else "::/0")
    last = allow_any()[0 if addr.version == 4 else 1]
    default = last if compiled.default_action == "allow" else last._replace(action=0)
    yield default._replace(src=any_net, dst=host) if direction is Direction.INGRESS else \
        default._replace(src=host, dst=any_net)


def _forward_list(catalog: Catalog, hep: HostEndpoint, direction: Direction, rule_limit: int) -> CompiledList:
    """hep_chain(kind="forward") with "no verdict" as allow, compiled like a workload chain whose
    only profile allows everything (encapsulation drops are off in the synthetic config)."""
    if not hep.forward_tiers:
        return CompiledList(f"hep:{hep.id}", direction.value, (), "allow", 0)
    ep = WorkloadEndpoint(WorkloadKey("vppagent", f"hep-forward/{hep.id}", "fwd"), hep.name, True,
                          (FORWARD_PROFILE,), (), (), hep.forward_tiers)
    return compile_endpoint(catalog, ep, direction, rule_limit=rule_limit)


def _with_forward_fallthrough(state: DataplaneState) -> DataplaneState:
    synthetic = state.copy()
    allow = felix.Rule(action="allow")
    synthetic.tables[Kind.PROFILE][FORWARD_PROFILE] = felix.Profile(inbound_rules=[allow], outbound_rules=[allow])
    config = dict(state.config)
    config.update({"AllowVXLANPacketsFromWorkloads": "true", "AllowIPIPPacketsFromWorkloads": "true"})
    synthetic.tables[Kind.CONFIG][""] = felix.ConfigUpdate(config=config)
    return synthetic
