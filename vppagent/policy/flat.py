"""The compiler's output: flat first-match rules, each one VPP ACL rule, and the list."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from vppagent.policy.boxes import ANY_PROTO, Box, l4_fields
from vppagent.policy.model import ICMP_FOR_FAMILY, PROTOCOL_NAMES, TCP, UDP, IPNetwork, PortRange
from vppagent.policy.packet import Packet

FlatAction = Literal["allow", "deny"]


@dataclass(frozen=True)
class FlatRule:
    """One VPP ACL rule. For TCP/UDP the ranges are ports, for the family's ICMP they are
    type and code, for any other protocol (and proto 0 = any) they are 0-65535."""

    action: FlatAction
    family: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    srcport_or_icmptype: PortRange
    dstport_or_icmpcode: PortRange
    origin: str = field(default="", compare=False)

    @staticmethod
    def of_box(action: FlatAction, family: int, src: IPNetwork, dst: IPNetwork, proto: int, sport: PortRange,
               dport: PortRange, origin: str, box: Box) -> FlatRule:
        """FlatRule(...) for the compiler, which makes them by the thousand: the fields set
        directly (a frozen dataclass's __init__ sets each through object.__setattr__), and
        `box`, the one box the rule is (as box() would work it out), remembered."""
        rule = object.__new__(FlatRule)
        rule.__dict__.update(action=action, family=family, src=src, dst=dst, proto=proto, srcport_or_icmptype=sport,
                             dstport_or_icmpcode=dport, origin=origin, _box=box)
        return rule

    def box(self) -> Box:
        """The rule's packets as a box (protocol 0: every protocol), remembered: the classifier
        gate reads the rules of its lists as boxes."""
        found: Box | None = self.__dict__.get("_box")
        if found is None:
            proto = ANY_PROTO if self.proto == 0 else (self.proto, self.proto)
            found = Box(int(self.src.network_address), self.src.prefixlen, int(self.dst.network_address),
                        self.dst.prefixlen, proto[0], proto[1], self.srcport_or_icmptype.first,
                        self.srcport_or_icmptype.last, self.dstport_or_icmpcode.first, self.dstport_or_icmpcode.last)
            object.__setattr__(self, "_box", found)
        return found

    @property
    def is_permit(self) -> bool:
        return self.action == "allow"

    def matches(self, pkt: Packet) -> bool:
        """VPP's single_rule_match_5tuple for a first packet."""
        if pkt.family != self.family or pkt.src not in self.src or pkt.dst not in self.dst:
            return False
        if self.proto == 0:
            return True
        a, b = l4_fields(pkt)
        return pkt.proto == self.proto and a in self.srcport_or_icmptype and b in self.dstport_or_icmpcode

    def __str__(self) -> str:
        proto = "any" if self.proto == 0 else PROTOCOL_NAMES.get(self.proto, str(self.proto))
        text = f"{'permit' if self.is_permit else 'deny  '} ipv{self.family} {self.src} > {self.dst} {proto}"
        if self.proto in (TCP, UDP):
            text += f" sport {self.srcport_or_icmptype} dport {self.dstport_or_icmpcode}"
        elif self.proto == ICMP_FOR_FAMILY[self.family]:
            text += f" type {self.srcport_or_icmptype} code {self.dstport_or_icmpcode}"
        return text


@dataclass(frozen=True)
class CompiledList:
    endpoint: str
    direction: str
    rules: tuple[FlatRule, ...]
    default_action: FlatAction
    source_rules: int  # rules of the endpoint's policies and profiles in this direction

    @property
    def expansion_factor(self) -> float:
        return len(self.rules) / max(self.source_rules, 1)

    def fingerprint(self) -> str:
        """Same packets in, same verdicts out: equal lists share a fingerprint (origins ignored)."""
        text = "\n".join(str(r) for r in self.rules) + f"\ndefault {self.default_action}\n"
        return hashlib.sha256(text.encode()).hexdigest()

    def render(self) -> str:
        lines = [f"{i:5d}  {r}    # {r.origin}" for i, r in enumerate(self.rules)]
        lines.append(f"default {self.default_action}")
        return "\n".join(lines)


@dataclass(frozen=True)
class FirstMatch:
    action: FlatAction
    index: int | None  # None: the default action applied

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


def first_match(compiled: CompiledList, pkt: Packet) -> FirstMatch:
    for index, rule in enumerate(compiled.rules):
        if rule.matches(pkt):
            return FirstMatch(rule.action, index)
    return FirstMatch(compiled.default_action, None)
