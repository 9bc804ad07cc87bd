"""What can reach an endpoint's list, and the list cut down to that (drop-only).

An endpoint's compiled list (compile.compile_endpoint) decides every packet, but only some packets
ever meet it. That set, the *domain*, bounds one address of the packet:

- egress (the list on the pod interface's input): the source. A pod can only send from its own
  addresses (ipv4_nets, ipv6_nets), its `allowed_spoofed_sources` (the allowedSourcePrefixes
  annotation) and IPv6 link-local fe80::/10 (the kernel's own ND and router solicitations). Every
  other source is dropped before the list: by the pod's source guard in VPP (helper "guard"), by
  rp_filter / Felix's rpfilter rule in the kernel. `egress_sources` is the one statement of that
  set, for the guard as for the lists.
- ingress (the list on the pod interface's output): the destination. Routing sends only the
  endpoint's own addresses to the pod's interface (cnat has translated service addresses before),
  plus what VPP itself may send on the link: IPv4 multicast 224.0.0.0/4 and broadcast
  255.255.255.255, IPv6 link-local fe80::/10 and multicast ff00::/8. Those are kept for safety,
  not because a policy is expected to name them.

`restrict` drops from a list every rule whose prefix on that side (source for egress,
destination for ingress) is disjoint from every domain prefix of the rule's family: no packet of
the domain can match it. It never narrows a rule and keeps the default action, so for every
packet p with `reaches(ep, direction, p)`:

    first_match(restrict(L, ep, direction), p) == first_match(L, p)   (== evaluate.verdict(p))

and lists where nothing is dead stay identical (shareable). Two policy shapes are mostly dead:
egress "allow from an IP set" of other pods (the endpoint is rarely a member) and ingress "allow
to a named port", which Felix renders as the (address, port) of every pod with that port
cluster-wide: only the endpoint's own entry can be reached.

`ReachIndex` is the cheap way for many endpoints sharing one list: one pass over the rules
groups them by (family, prefix length, network) of the relevant side; a domain then finds the
rules it overlaps with one lookup per present prefix length (shorter rule prefixes: the one
network containing the domain prefix; longer ones: a bisect over that length's networks).
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import Direction, IPNetwork, WorkloadEndpoint
from vppagent.policy.packet import Packet

Side = Literal["src", "dst"]

IPV6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")
# What VPP may send out of a pod interface besides traffic to the pod's own addresses.
VPP_ORIGINATED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("255.255.255.255/32"),
    IPV6_LINK_LOCAL,
    ipaddress.ip_network("ff00::/8"),
)


def _side(direction: Direction | str) -> Side:
    return "src" if Direction(direction) is Direction.EGRESS else "dst"


def _collapsed(nets: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Sorted and merged per family (so equal sets of addresses give equal domains)."""
    nets = tuple(nets)
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))


def egress_sources(ep: WorkloadEndpoint) -> tuple[IPNetwork, ...]:
    """Every source address a packet from the endpoint's pod can have (see the module's
    docstring): its own addresses, its allowed spoofed sources, IPv6 link-local."""
    return _collapsed((*ep.ipv4_nets, *ep.ipv6_nets, *ep.allowed_spoofed_sources, IPV6_LINK_LOCAL))


def ingress_destinations(ep: WorkloadEndpoint) -> tuple[IPNetwork, ...]:
    """Every destination address a packet VPP sends to the endpoint's pod can have."""
    return _collapsed((*ep.ipv4_nets, *ep.ipv6_nets, *VPP_ORIGINATED))


@dataclass(frozen=True)
class Domain:
    """The packets that can meet a list: those whose `side` address lies in one of `prefixes`
    (both families, collapsed). Hashable: equal domains of one list give equal restrictions."""

    side: Side
    prefixes: tuple[IPNetwork, ...]

    def contains(self, pkt: Packet) -> bool:
        addr = pkt.src if self.side == "src" else pkt.dst
        return any(addr in net for net in self.prefixes if net.version == addr.version)


def domain(ep: WorkloadEndpoint, direction: Direction | str) -> Domain:
    side = _side(direction)
    return Domain(side, egress_sources(ep) if side == "src" else ingress_destinations(ep))


def reaches(ep: WorkloadEndpoint, direction: Direction | str, pkt: Packet) -> bool:
    """Whether `pkt` can meet the endpoint's list in `direction` at all."""
    return domain(ep, direction).contains(pkt)


class Addressed(Protocol):
    """A rule as the index sees it: a FlatRule, or the VPP driver's ACL rule made from one."""

    @property
    def src(self) -> IPNetwork: ...

    @property
    def dst(self) -> IPNetwork: ...


class ReachIndex:
    """One list's rules grouped by their prefix on one side, to restrict it to many domains."""

    def __init__(self, rules: Sequence[Addressed], side: Side) -> None:
        self.side = side
        # Rules by the network object first (the compiler hands out shared network objects, so
        # this is one id() per rule), then by value: (family, prefix length) -> network as int
        # -> rule indices, in list order.
        by_object: dict[int, tuple[IPNetwork, list[int]]] = {}
        for i, rule in enumerate(rules):
            net = rule.src if side == "src" else rule.dst
            found = by_object.get(id(net))
            if found is None:
                by_object[id(net)] = (net, [i])
            else:
                found[1].append(i)
        buckets: dict[tuple[int, int], dict[int, list[int]]] = {}
        for net, indices in by_object.values():
            by_net = buckets.setdefault((net.version, net.prefixlen), {})
            at = int(net.network_address)
            if at in by_net:  # equal networks in two objects
                by_net[at] = sorted(by_net[at] + indices)
            else:
                by_net[at] = indices
        self._buckets = buckets
        self._sorted: dict[tuple[int, int], list[int]] = {}

    def _networks(self, key: tuple[int, int]) -> list[int]:
        found = self._sorted.get(key)
        if found is None:
            found = self._sorted[key] = sorted(self._buckets[key])
        return found

    def kept(self, dom: Domain) -> tuple[int, ...]:
        """Indices (in list order) of the rules some packet of `dom` can match on this side."""
        if dom.side != self.side:
            raise ValueError(f"a {dom.side} domain cannot restrict a list indexed by {self.side}")
        hit: dict[tuple[int, int, int], list[int]] = {}
        for net in dom.prefixes:
            family, width, length = net.version, net.max_prefixlen, net.prefixlen
            first = int(net.network_address)
            for (fam, rule_len), by_net in self._buckets.items():
                if fam != family:
                    continue
                if rule_len <= length:  # the one rule network of this length that contains net
                    shift = width - rule_len
                    at = first >> shift << shift
                    if at in by_net:
                        hit[(fam, rule_len, at)] = by_net[at]
                    continue
                networks = self._networks((fam, rule_len))  # rule networks inside net
                last = first + (1 << (width - length)) - 1
                for at in networks[bisect.bisect_left(networks, first):bisect.bisect_right(networks, last)]:
                    hit[(fam, rule_len, at)] = by_net[at]
        if len(hit) == 1:
            return tuple(next(iter(hit.values())))
        return tuple(sorted(i for indices in hit.values() for i in indices))



def with_rules(compiled: CompiledList, kept: Sequence[int]) -> CompiledList:
    """`compiled` with only the rules at `kept` (list order), its default and counts as they were;
    the same object when every rule is kept."""
    if len(kept) == len(compiled.rules):
        return compiled
    rules: tuple[FlatRule, ...] = tuple(compiled.rules[i] for i in kept)
    return dataclasses.replace(compiled, rules=rules)


def restrict_to(compiled: CompiledList, dom: Domain) -> CompiledList:
    return with_rules(compiled, ReachIndex(compiled.rules, dom.side).kept(dom))


def restrict(compiled: CompiledList, ep: WorkloadEndpoint, direction: Direction | str) -> CompiledList:
    """The endpoint's list in `direction` without the rules no packet reaching it can match."""
    if compiled.direction != Direction(direction).value:
        raise ValueError(f"list of {compiled.endpoint} is {compiled.direction}, asked to restrict {direction}")
    return restrict_to(compiled, domain(ep, direction))


__all__ = [
    "IPV6_LINK_LOCAL",
    "VPP_ORIGINATED",
    "Addressed",
    "Domain",
    "ReachIndex",
    "domain",
    "egress_sources",
    "ingress_destinations",
    "reaches",
    "restrict",
    "restrict_to",
    "with_rules",
]
