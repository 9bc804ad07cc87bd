"""VPP message fields: the request fields and reply readings of the messages the typed calls
(calls.py, one request each) and the batches (batches.py, pipelined) send, so that a message's
layout has one home whichever way it goes. Module-level functions only, from and to the typed
values of types.py.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import (
    AclContent,
    AclRule,
    ClassifySession,
    ClassifyTableAdd,
    ClassifyTableInfo,
    CnatBackend,
    CnatDetails,
    CnatTranslation,
    RouteTarget,
)
from vppagent.policy.model import IPAddress, IPNetwork

IP_NEIGHBOR_FLAG_STATIC = 1
FIB_PATH_TYPE_NORMAL = 0
SESSION_NO_NEXT = 0xFFFF  # ~0 as a classifier session stores it (a u16 next index)
CNAT_LB_DEFAULT = 0  # cnat_lb_type_t: the flow hash modulo the paths
CNAT_LB_MAGLEV = 1  # Maglev: a path change moves few flows
FLOW_HASH_DEFAULT = 0  # VPP's default flow hash (addresses, ports, protocol)
FLOW_HASH_SRC_IP = 1  # IP_API_V2_FLOW_HASH_SRC_IP: the source address alone
CNAT_POLICY_POD = 2  # cnat_snat_policy_table_t: the pod interfaces


def table_fields(table: ClassifyTableAdd, index: int) -> dict[str, Any]:
    return {"is_add": True, "del_chain": False, "table_index": index, "nbuckets": table.nbuckets,
            "memory_size": table.memory_size, "skip_n_vectors": 0, "match_n_vectors": len(table.mask) // 16,
            "next_table_index": table.next_table, "miss_next_index": table.miss_next, "current_data_flag": 1,
            "current_data_offset": 0, "mask_len": len(table.mask), "mask": table.mask}


def table_del_fields(index: int) -> dict[str, Any]:
    """A table's delete (not its chain's). VPP checks the mask's length against match_n_vectors
    (> 0) before it looks at is_add, so a delete carries a one-vector mask."""
    return {"is_add": False, "del_chain": False, "table_index": index, "match_n_vectors": 1, "mask_len": 16,
            "mask": bytes(16)}


def classify_acl_fields(sw_if_index: int, family: int, table: int, *, add: bool) -> dict[str, Any]:
    return {"sw_if_index": sw_if_index, "ip4_table_index": table if family == 4 else NO_INDEX,
            "ip6_table_index": table if family == 6 else NO_INDEX, "l2_table_index": NO_INDEX, "is_add": add}


def session_fields(table: int, match: bytes, hit_next: int, opaque: int, *, add: bool) -> dict[str, Any]:
    return {"is_add": add, "table_index": table, "hit_next_index": hit_next, "opaque_index": opaque, "advance": 0,
            "action": 0, "metadata": 0, "match_len": len(match), "match": match}


def cnat_translation_fields(translation: CnatTranslation) -> dict[str, Any]:
    """`vl_api_cnat_translation_t` for `cnat_translation_update` (id 0: VPP finds the translation by
    its VIP:port/protocol)."""
    zero = "::" if translation.vip.version == 6 else "0.0.0.0"
    paths = [{"dst_ep": _cnat_endpoint(str(b.ip), b.port), "src_ep": _cnat_endpoint(zero, 0), "flags": 0}
             for b in translation.backends]
    return {"vip": _cnat_endpoint(str(translation.vip), translation.port), "id": 0, "ip_proto": translation.proto,
            "is_real_ip": int(translation.real_ip), "flags": 0,
            "lb_type": CNAT_LB_MAGLEV if translation.affinity else CNAT_LB_DEFAULT, "n_paths": len(paths),
            "flow_hash_config": FLOW_HASH_SRC_IP if translation.affinity else FLOW_HASH_DEFAULT, "paths": paths}


def cnat_from_details(translation: Any) -> CnatDetails | None:
    """One `vl_api_cnat_translation_t` of a dump; None for an interface VIP (the driver makes none)."""
    t = translation
    if int(t.vip.sw_if_index) != NO_INDEX:
        return None
    backends = tuple(CnatBackend(ipaddress.ip_address(p.dst_ep.addr), int(p.dst_ep.port))
                     for p in t.paths[:int(t.n_paths)])
    return CnatDetails(int(t.id), CnatTranslation(ipaddress.ip_address(t.vip.addr), int(t.vip.port),
                                                  int(t.ip_proto), backends,
                                                  affinity=int(t.lb_type) == CNAT_LB_MAGLEV))


def cnat_feature_fields(sw_if_index: int) -> dict[str, Any]:
    return {"sw_if_index": sw_if_index, "enable_disable": True}


def cnat_pod_interface_fields(sw_if_index: int) -> dict[str, Any]:
    return {"sw_if_index": sw_if_index, "is_add": 1, "table": CNAT_POLICY_POD}


def _cnat_endpoint(address: str, port: int) -> dict[str, Any]:
    return {"addr": address, "sw_if_index": NO_INDEX, "if_af": 1 if ":" in address else 0, "port": port}


def input_tables_from(reply: Any) -> dict[int, int]:
    """A `classify_table_by_interface_reply`: the input ACL table per family (NO_INDEX: none)."""
    return {4: int(reply.ip4_table_id), 6: int(reply.ip6_table_id)}


def table_info(index: int, info: Any) -> ClassifyTableInfo:
    return ClassifyTableInfo(index, bytes(info.mask), int(info.next_table_index), int(info.miss_next_index),
                             int(info.nbuckets))


def acl_fields(index: int, tag: str, content: AclContent) -> dict[str, Any]:
    return {"acl_index": index, "tag": tag, "count": len(content), "r": [_rule_fields(r) for r in content.rules]}


def acl_list_fields(sw_if_index: int, acl_in: int | None, acl_out: int | None) -> dict[str, Any]:
    acls = [a for a in (acl_in, acl_out) if a is not None]
    return {"sw_if_index": sw_if_index, "count": len(acls), "n_input": 0 if acl_in is None else 1, "acls": acls}


def _rule_fields(rule: AclRule) -> dict[str, Any]:
    # Prefixes as text: vpp_papi packs strings faster than ipaddress objects.
    return {"is_permit": rule.action, "src_prefix": str(rule.src), "dst_prefix": str(rule.dst),
            "proto": rule.proto, "srcport_or_icmptype_first": rule.sport[0],
            "srcport_or_icmptype_last": rule.sport[1], "dstport_or_icmpcode_first": rule.dport[0],
            "dstport_or_icmpcode_last": rule.dport[1], "tcp_flags_mask": rule.tcp_flags_mask,
            "tcp_flags_value": rule.tcp_flags_value}


def rule_from_details(rule: Any) -> AclRule:
    """One `vl_api_acl_rule_t` from acl_details."""
    return AclRule(int(rule.is_permit), _network(rule.src_prefix), _network(rule.dst_prefix), int(rule.proto),
                   (int(rule.srcport_or_icmptype_first), int(rule.srcport_or_icmptype_last)),
                   (int(rule.dstport_or_icmpcode_first), int(rule.dstport_or_icmpcode_last)),
                   int(rule.tcp_flags_mask), int(rule.tcp_flags_value))


def _network(prefix: Any) -> IPNetwork:
    """vpp_papi gives a `vl_api_prefix_t` as an ipaddress network already: parsing it again cost
    ~80 µs a prefix (1.8 s of a new driver's resync of P1, 10,700 rules read back)."""
    if isinstance(prefix, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return prefix
    return ipaddress.ip_network(prefix)


def session_of(details: Any) -> ClassifySession:
    return ClassifySession(bytes(details.match), _session_next(int(details.hit_next_index)), int(details.opaque_index))


def _session_next(hit_next_index: int) -> int:
    return NO_INDEX if hit_next_index == SESSION_NO_NEXT else hit_next_index


def route_fields(prefix: IPNetwork, target: RouteTarget | None) -> dict[str, Any]:
    """`vl_api_ip_route_t` for table 0; no target = delete the prefix."""
    route: dict[str, Any] = {"table_id": 0, "prefix": str(prefix), "n_paths": 0, "paths": []}
    if target is not None:
        family = "ip6" if prefix.version == 6 else "ip4"
        next_hop = str(target.next_hop) if target.next_hop is not None else ("::" if family == "ip6" else "0.0.0.0")
        route["n_paths"] = 1
        route["paths"] = [{
            "sw_if_index": NO_INDEX if target.sw_if_index is None else target.sw_if_index,
            "table_id": 0, "weight": 1, "preference": 0, "type": FIB_PATH_TYPE_NORMAL, "flags": 0,
            "proto": 1 if prefix.version == 6 else 0, "nh": {"address": {family: next_hop}},
            "n_labels": 0, "label_stack": [{}] * 16,  # vpp_papi needs the fixed array spelled out
        }]
    return route


def route_from_details(route: Any) -> tuple[IPNetwork, RouteTarget] | None:
    if route.n_paths != 1:
        return None
    path = route.paths[0]
    prefix = _network(route.prefix)
    if int(path.type) != FIB_PATH_TYPE_NORMAL:  # drop/local/receive are VPP's own
        return None
    family_nh = path.nh.address.ip6 if prefix.version == 6 else path.nh.address.ip4
    next_hop = ipaddress.ip_address(family_nh)
    # A host route through an interface reads back with the prefix itself as next hop (VPP makes it
    # an attached host route); it is the route the driver programmed with next hop 0.
    attached_host = prefix.prefixlen == prefix.max_prefixlen and next_hop == prefix.network_address
    if int(path.sw_if_index) != NO_INDEX and (int(next_hop) == 0 or attached_host):
        return prefix, RouteTarget(sw_if_index=int(path.sw_if_index))
    if int(path.sw_if_index) == NO_INDEX and int(next_hop) != 0:
        return prefix, RouteTarget(next_hop=next_hop)
    return None


def neighbor_fields(sw_if_index: int, ip: IPAddress, mac: str) -> dict[str, object]:
    return {"sw_if_index": sw_if_index, "flags": IP_NEIGHBOR_FLAG_STATIC, "mac_address": mac, "ip_address": str(ip)}
