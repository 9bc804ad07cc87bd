"""The ACL plugin's rules: one ACL's rules from and to the wire, checked as VPP checks them, and
how a rule matches a packet.

Behaviour follows VPP 25.10 ``src/plugins/acl/acl.c`` (``acl_add_list``'s consistency loop) and
``public_inlines.h`` (matching), cross-checked with traffic on a real VPP 25.10
(``vpp-acl-semantics-verified.md``). The plugin that holds ACLs and binds them is acl.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vppagent.drivers.vpp.api.errors import ApiError
from vppagent.vppsim.addresses import InvalidPrefix, IPNetwork, decode_prefix, encode_prefix
from vppagent.vppsim.packet import PROTO_TCP, Packet

ACTION_DENY = 0
ACTION_PERMIT = 1
ACTION_PERMIT_REFLECT = 2


class RuleRejected(Exception):
    def __init__(self, retval: ApiError) -> None:
        super().__init__(retval.name)
        self.retval = retval


@dataclass(frozen=True)
class AclRule:
    action: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    sport: tuple[int, int]
    dport: tuple[int, int]
    tcp_flags_mask: int
    tcp_flags_value: int

    @classmethod
    def from_wire(cls, rule: dict[str, Any]) -> AclRule:
        """Validate like ``acl_add_list``'s consistency loop, then convert."""
        try:
            src = decode_prefix(rule["src_prefix"], strict=True)
        except InvalidPrefix:
            raise RuleRejected(ApiError.INVALID_SRC_ADDRESS) from None
        try:
            dst = decode_prefix(rule["dst_prefix"], strict=True)
        except InvalidPrefix:
            raise RuleRejected(ApiError.INVALID_DST_ADDRESS) from None
        if src.version != dst.version:
            # A rule is one address family; VPP reports the mix against the source prefix.
            raise RuleRejected(ApiError.INVALID_SRC_ADDRESS)
        sport = (rule["srcport_or_icmptype_first"], rule["srcport_or_icmptype_last"])
        dport = (rule["dstport_or_icmpcode_first"], rule["dstport_or_icmpcode_last"])
        if sport[0] > sport[1] or dport[0] > dport[1]:
            raise RuleRejected(ApiError.INVALID_VALUE_2)
        return cls(rule["is_permit"], src, dst, rule["proto"], sport, dport, rule["tcp_flags_mask"],
                   rule["tcp_flags_value"])

    def to_wire(self) -> dict[str, Any]:
        return {
            "is_permit": self.action,
            "src_prefix": encode_prefix(self.src.network_address, self.src.prefixlen),
            "dst_prefix": encode_prefix(self.dst.network_address, self.dst.prefixlen),
            "proto": self.proto,
            "srcport_or_icmptype_first": self.sport[0],
            "srcport_or_icmptype_last": self.sport[1],
            "dstport_or_icmpcode_first": self.dport[0],
            "dstport_or_icmpcode_last": self.dport[1],
            "tcp_flags_mask": self.tcp_flags_mask,
            "tcp_flags_value": self.tcp_flags_value,
        }

    def matches(self, packet: Packet) -> bool:
        if packet.src.version != self.src.version:
            return False
        if packet.src not in self.src or packet.dst not in self.dst:
            return False
        if self.proto == 0:
            return True  # proto 0: any protocol, ports and flags ignored
        if packet.proto != self.proto:
            return False
        sport, dport = (packet.sport, packet.dport) if packet.has_ports else (0, 0)
        if not (self.sport[0] <= sport <= self.sport[1] and self.dport[0] <= dport <= self.dport[1]):
            return False
        if self.proto == PROTO_TCP:
            return (packet.tcp_flags & self.tcp_flags_mask) == self.tcp_flags_value
        return True


@dataclass
class Acl:
    tag: str
    rules: list[AclRule]
