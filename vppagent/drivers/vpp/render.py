"""Compiled first-match lists as VPP ACL rules, in one canonical form for both directions.

`AclContent` is what one VPP ACL holds: the rules, in order, and a digest of them. It is built
from the policy compiler's list (to program) and from `acl_dump` details (to compare with what is
programmed), so "does VPP already hold this?" is an equality test, never a guess from a tag.

Rendering (DESIGN.md section 7): an allow is permit+reflect (2), so the answer to an allowed flow
comes back through the session the first packet created on the same interface; a deny is 0. A
list whose default is deny needs nothing more (no match drops); a default allow is a
permit+reflect "any" rule per family at the end. An empty deny list is a zero-rule ACL, which
VPP applies as "drop everything".
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import IPNetwork

DENY = 0
PERMIT = 1
PERMIT_REFLECT = 2
ANY_PORTS = (0, 65535)
ANY_V4 = ipaddress.ip_network("0.0.0.0/0")
ANY_V6 = ipaddress.ip_network("::/0")


class AclRule(NamedTuple):
    action: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    sport: tuple[int, int]
    dport: tuple[int, int]
    tcp_flags_mask: int = 0
    tcp_flags_value: int = 0

    def text(self) -> str:
        return (f"{self.action} {self.src} {self.dst} {self.proto} {self.sport[0]}-{self.sport[1]} "
                f"{self.dport[0]}-{self.dport[1]} {self.tcp_flags_mask}/{self.tcp_flags_value}")

    def wire(self) -> dict[str, Any]:
        # Prefixes as text: vpp_papi packs strings faster than ipaddress objects.
        return {"is_permit": self.action, "src_prefix": str(self.src), "dst_prefix": str(self.dst),
                "proto": self.proto, "srcport_or_icmptype_first": self.sport[0],
                "srcport_or_icmptype_last": self.sport[1], "dstport_or_icmpcode_first": self.dport[0],
                "dstport_or_icmpcode_last": self.dport[1], "tcp_flags_mask": self.tcp_flags_mask,
                "tcp_flags_value": self.tcp_flags_value}


@dataclass(frozen=True)
class AclContent:
    rules: tuple[AclRule, ...]
    digest: str

    @staticmethod
    def of(rules: Iterable[AclRule]) -> AclContent:
        ordered = tuple(rules)
        text = "\n".join(r.text() for r in ordered)
        return AclContent(ordered, hashlib.sha256(text.encode()).hexdigest()[:16])

    def wire(self) -> list[dict[str, Any]]:
        return [r.wire() for r in self.rules]

    def __len__(self) -> int:
        return len(self.rules)


DENY_ALL = AclContent.of(())


def rule_from_flat(rule: FlatRule) -> AclRule:
    action = PERMIT_REFLECT if rule.is_permit else DENY
    return AclRule(action, rule.src, rule.dst, rule.proto,
                   (rule.srcport_or_icmptype.first, rule.srcport_or_icmptype.last),
                   (rule.dstport_or_icmpcode.first, rule.dstport_or_icmpcode.last))


def allow_any() -> tuple[AclRule, AclRule]:
    return (AclRule(PERMIT_REFLECT, ANY_V4, ANY_V4, 0, ANY_PORTS, ANY_PORTS),
            AclRule(PERMIT_REFLECT, ANY_V6, ANY_V6, 0, ANY_PORTS, ANY_PORTS))


def content_from_compiled(compiled: CompiledList) -> AclContent:
    rules = [rule_from_flat(r) for r in compiled.rules]
    if compiled.default_action == "allow":
        rules.extend(allow_any())
    return AclContent.of(rules)


def rule_from_details(rule: Any) -> AclRule:
    """One `vl_api_acl_rule_t` from acl_details (prefixes come back as ipaddress networks)."""
    return AclRule(int(rule.is_permit), ipaddress.ip_network(rule.src_prefix),
                   ipaddress.ip_network(rule.dst_prefix), int(rule.proto),
                   (int(rule.srcport_or_icmptype_first), int(rule.srcport_or_icmptype_last)),
                   (int(rule.dstport_or_icmpcode_first), int(rule.dstport_or_icmpcode_last)),
                   int(rule.tcp_flags_mask), int(rule.tcp_flags_value))


def content_from_details(details: Any) -> AclContent:
    return AclContent.of(rule_from_details(r) for r in details.r)
