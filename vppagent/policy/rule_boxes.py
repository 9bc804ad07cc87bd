"""A rule's packets as boxes: the first step of the compiler, one address family at a time.

`RuleBoxes.rule_boxes(rule)` gives (P, N): the rule matches exactly the packets in some P box and
in no N box. Nets and IP set members are aggregated into prefixes first; a match the VPP ACL
plugin cannot read (SCTP ports, non-TCP/UDP ip-port set members) is a CompileError here, so no
list is ever built from it. How the boxes become a first-match list is in compile.py.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections import defaultdict
from collections.abc import Sequence
from typing import cast

from vppagent.policy.boxes import FULL_L4, Box, full_box, intersect, width
from vppagent.policy.catalog import Catalog
from vppagent.policy.model import (
    ICMP_FOR_FAMILY,
    PROTOCOL_NAMES,
    SCTP,
    TCP,
    UDP,
    IPNetwork,
    PolicyError,
    PortRange,
    Rule,
)


class CompileError(PolicyError):
    """The endpoint's policy cannot be compiled; the endpoint must not be programmed open."""


class RuleLimitExceeded(CompileError):
    pass


class RuleBoxes:
    """A rule's packets as boxes, for one address family (IP set boxes cached per set and side)."""

    def __init__(self, cat: Catalog, family: int, limit: int) -> None:
        # Weakly: one RuleBoxes per catalog is kept in a WeakKeyDictionary keyed by the catalog
        # (shared_rule_boxes), and a strong reference from the value would keep every catalog
        # ever compiled alive, with all its boxes and lists.
        self.cat: Catalog = cast(Catalog, cat if isinstance(cat, weakref.ProxyType) else weakref.proxy(cat))
        self.family = family
        self.w = width(family)
        self.limit = limit
        self.set_cache: dict[tuple[str, str], list[Box]] = {}
        # By id: the catalog holds every Rule it hands out, and the entry pins the rule too.
        self.rule_cache: dict[int, tuple[Rule, tuple[list[Box], list[Box]]]] = {}

    def _prefix(self, net: IPNetwork) -> tuple[int, int]:
        return int(net.network_address), net.prefixlen

    def nets_boxes(self, nets: Sequence[IPNetwork], side: str) -> list[Box]:
        # Aggregation: adjacent and nested CIDRs merge (collapse_addresses sorts too).
        same_family = [n for n in nets if n.version == self.family]
        mine: list[IPNetwork] = list(ipaddress.collapse_addresses(same_family))  # type: ignore[type-var]
        out = []
        for net in mine:
            a, n = self._prefix(net)
            out.append(full_box()._replace(src=a, src_len=n) if side == "src" else
                       full_box()._replace(dst=a, dst_len=n))
        return out

    def set_boxes(self, set_id: str, side: str) -> list[Box]:
        """An address set on one side, or an (ip, proto, port) set on one side ('src'/'dst')."""
        key = (set_id, side)
        cached = self.set_cache.get(key)
        if cached is not None:
            return cached
        s = self.cat.ipset(set_id)
        if s.ip_ports:
            by_proto_port: dict[tuple[int, int], list[IPNetwork]] = defaultdict(list)
            for addr, proto, port in s.ip_ports:
                if addr.version == self.family:
                    if proto not in (TCP, UDP):
                        raise CompileError(f"IP set {set_id}: {PROTOCOL_NAMES.get(proto, proto)} ports "
                                           "cannot be matched by VPP ACLs")
                    by_proto_port[(proto, port)].append(ipaddress.ip_network(addr))
            boxes = []
            for (proto, port), addrs in sorted(by_proto_port.items()):
                for b in self.nets_boxes(addrs, side):
                    if side == "src":
                        boxes.append(b._replace(proto_lo=proto, proto_hi=proto, a_lo=port, a_hi=port))
                    else:
                        boxes.append(b._replace(proto_lo=proto, proto_hi=proto, b_lo=port, b_hi=port))
        else:
            boxes = self.nets_boxes(s.nets, side)
        self.set_cache[key] = boxes
        return boxes

    def port_boxes(self, rule: Rule, ranges: Sequence[PortRange], side: str) -> list[Box]:
        if not ranges:
            return []
        proto = rule.protocol
        if proto == SCTP:
            raise CompileError("SCTP ports cannot be matched by VPP ACLs (VPP reads no SCTP ports)")
        assert proto is not None  # validation: numeric ports need tcp, udp or sctp
        base = full_box()._replace(proto_lo=proto, proto_hi=proto)
        if side == "src":
            return [base._replace(a_lo=r.first, a_hi=r.last) for r in ranges]
        return [base._replace(b_lo=r.first, b_hi=r.last) for r in ranges]

    def restrict(self, boxes: list[Box], options: list[Box]) -> list[Box]:
        out = []
        for b in boxes:
            for o in options:
                m = intersect(b, o, self.w)
                if m is not None:
                    out.append(m)
        if len(out) > self.limit:
            raise RuleLimitExceeded(f"a rule expands to more than {self.limit} boxes")
        return out

    def rule_boxes(self, rule: Rule) -> tuple[list[Box], list[Box]]:
        """(P, N): the rule matches exactly the packets in some P box and in no N box.
        Cached per rule: callers must not change the lists."""
        cached = self.rule_cache.get(id(rule))
        if cached is not None and cached[0] is rule:
            return cached[1]
        result = self._rule_boxes(rule)
        self.rule_cache[id(rule)] = (rule, result)
        return result

    def _rule_boxes(self, rule: Rule) -> tuple[list[Box], list[Box]]:
        if self.family not in rule.families():
            return [], []
        proto_box = full_box()
        icmp = ICMP_FOR_FAMILY[self.family]
        p: list[Box] = [full_box()]
        n: list[Box] = []
        if rule.protocol is not None:
            p = self.restrict(p, [proto_box._replace(proto_lo=rule.protocol, proto_hi=rule.protocol)])
        if rule.not_protocol is not None:
            n.append(proto_box._replace(proto_lo=rule.not_protocol, proto_hi=rule.not_protocol))
        for side, nets, not_nets, sets, not_sets in (
                ("src", rule.src_nets, rule.not_src_nets, rule.src_ip_sets, rule.not_src_ip_sets),
                ("dst", rule.dst_nets, rule.not_dst_nets, rule.dst_ip_sets, rule.not_dst_ip_sets)):
            if nets:
                p = self.restrict(p, self.nets_boxes(nets, side))
            n += self.nets_boxes(not_nets, side)
            for set_id in sets:
                p = self.restrict(p, self.set_boxes(set_id, side))
            for set_id in not_sets:
                n += self.set_boxes(set_id, side)
        for side, ports, named, not_ports, not_named in (
                ("src", rule.src_ports, rule.src_named_port_sets, rule.not_src_ports, rule.not_src_named_port_sets),
                ("dst", rule.dst_ports, rule.dst_named_port_sets, rule.not_dst_ports, rule.not_dst_named_port_sets)):
            if ports or named:
                group = self.port_boxes(rule, ports, side)
                for set_id in named:
                    group += self.set_boxes(set_id, side)
                p = self.restrict(p, group)
            n += self.port_boxes(rule, not_ports, side)
            for set_id in not_named:
                n += self.set_boxes(set_id, side)
        for set_id in rule.dst_ip_port_sets:
            p = self.restrict(p, self.set_boxes(set_id, "dst"))
        if rule.icmp is not None or rule.not_icmp is not None:
            p = self.restrict(p, [proto_box._replace(proto_lo=icmp, proto_hi=icmp)])
        for match, positive in ((rule.icmp, True), (rule.not_icmp, False)):
            if match is None:
                continue
            code = (match.code, match.code) if match.code is not None else FULL_L4
            box = full_box()._replace(proto_lo=icmp, proto_hi=icmp, a_lo=match.type, a_hi=match.type,
                                      b_lo=code[0], b_hi=code[1])
            if positive:
                p = self.restrict(p, [box])
            else:
                n.append(box)
        return p, n


_SHARED: weakref.WeakKeyDictionary[Catalog, dict[tuple[int, int], RuleBoxes]] = weakref.WeakKeyDictionary()


def shared_rule_boxes(cat: Catalog, family: int, limit: int) -> RuleBoxes:
    """One RuleBoxes per catalog, family and limit: every list compiled from one catalog (one
    state version) reuses the boxes of each rule and IP set, which are computed once."""
    per_catalog = _SHARED.setdefault(cat, {})
    found = per_catalog.get((family, limit))
    if found is None:
        found = per_catalog[(family, limit)] = RuleBoxes(cat, family, limit)
    return found
