"""A first-match judge of VPP ACL rules for the steering tests (acl/tuplemerge.py): what the ACL
plugin's verdict is for one packet, whole or a non-first fragment, under one bound list."""

from __future__ import annotations

from typing import NamedTuple

from vppagent.drivers.vpp.api.types import DENY, AclRule
from vppagent.policy.model import IPAddress


class Pkt(NamedTuple):
    src: IPAddress
    dst: IPAddress
    proto: int
    sport: int
    dport: int
    flags: int = 0  # TCP flags


def matches(rule: AclRule, pkt: Pkt, fragment: bool) -> bool:
    if pkt.src.version != rule.src.version or pkt.src not in rule.src or pkt.dst not in rule.dst:
        return False
    if rule.proto == 0:
        return True
    if rule.proto != pkt.proto:
        return False
    if fragment:  # a non-first fragment: the plugin matches L4 rules on the protocol alone
        return True
    if not (rule.sport[0] <= pkt.sport <= rule.sport[1] and rule.dport[0] <= pkt.dport <= rule.dport[1]):
        return False
    return rule.proto != 6 or pkt.flags & rule.tcp_flags_mask == rule.tcp_flags_value


def first_action(rules: tuple[AclRule, ...], pkt: Pkt, fragment: bool) -> int:
    """The action of the first rule the packet matches; none: the list's implicit deny."""
    return next((r.action for r in rules if matches(r, pkt, fragment)), DENY)
