"""Rule order and one extra rule that steer the ACL plugin's TupleMerge lookup to keep ports.

Why (measured on VPP 26.06, docs/vpp-driver.md "Per-packet cost"): the plugin's hash lookup
groups a list's rules by mask type, and the mask type of a rule is chosen when the list is applied
to an interface, rule by rule in list order (`hash_lookup.c`): a rule joins the newest mask type of
that interface that covers it, else a new one is made from the rule's own mask, relaxed. The
relaxation drops the less specific address and *its* port (when the two addresses differ by more
than 4 bits), so a rule "from a set member, to any address, tcp/443" gets a mask type with the
source and the protocol but no destination port (a /32 source is also cut to /26; on x86 no other
IPv4 length is cut: the plugin compares the mask in network byte order). Every rule from sources
in one /26 then shares one hash entry, and a packet that reaches it is compared with each of them:
a member's packet to a port no rule allows, 2.3-2.9 x the cost of a one-rule ACL in the P1 lists.
Rules after a coarser mask type (a udp/53 rule from a /9) join that newer one and crowd it too.

What this changes, with the same verdict for every packet:

- a *seed* rule first: a deny from a /4 of source addresses that no permit of the list can meet
  on that protocol (any port: non-first fragments match on the protocol alone), on one port. Its
  mask (source /4, protocol, destination port) is not relaxed (4 bits apart), so it becomes a mask
  type that covers every rule with an exact destination port and a source of /4 or longer;
- the rules that would lose their port (exact destination port, source longer than the
  destination by more than 4 bits) moved right after it, ahead of the rules whose mask types would
  take them (port ranges, any protocol, ICMP), so they join the seed's mask type: their hash entry
  is keyed by (source /4, protocol, port) and a packet to a port nobody allows meets no entry. A
  rule moves ahead of an earlier rule only when both have the same action or no packet can match
  both (address family, protocol and addresses; ports are not trusted to separate them, as
  above), so first match gives every packet the same rule's action.

The price: a packet from a non-member (in the members' /4, i.e. usually any pod) to an allowed
port is compared with the rules on that port, where before it was compared with the rules from its
/26 (none, if no member is near it). So a (protocol, port) with more than MAX_PORT_GROUP such
rules keeps its place, and a family gets the seed only when at least MIN_KEYED rules move and a
free /4 exists; a list whose default is allow (a permit "any" at the end) has none and stays as it
is. Rules with a port range cannot be keyed by port at all (the plugin's port masks are exact or
nothing): they stay keyed by source.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence

from vppagent.drivers.vpp.api.types import DENY, AclRule
from vppagent.policy.model import IPNetwork

SEED_BITS = 4  # TupleMerge keeps both addresses (and ports) when they differ by at most 4 bits
MIN_KEYED = 2  # rules that would lose their port, per family, before a seed pays its mask type
# The most rules on one (protocol, port) that move: VPP splits an entry past 39 colliding rules
# (TM_SPLIT_THRESHOLD), and a split of host rules relaxes back to a mask without the port; and a
# non-member's packet to that port is compared with all of them. Larger groups keep their place.
MAX_PORT_GROUP = 39
# Pair checks spent moving rules; past it the remaining rules keep their place (still exact).
MOVE_BUDGET = 50_000
_SEED_PROTOS = (17, 6)
# /4 source regions tried for the seed, least used first: reserved (240/4), multicast (224/4) for
# IPv4, unassigned space for IPv6; then the rest of each family.
_REGIONS = {
    4: [ipaddress.ip_network(n) for n in ("240.0.0.0/4", "224.0.0.0/4")]
    + [ipaddress.ip_network(f"{a << 4}.0.0.0/4") for a in range(14)],
    6: [ipaddress.ip_network(n) for n in ("4000::/4", "5000::/4", "6000::/4", "7000::/4", "8000::/4")]
    + [ipaddress.ip_network(f"{a:x}000::/4") for a in (9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3)],
}


def loses_port(rule: AclRule) -> bool:
    """Whether TupleMerge, relaxing this rule's mask, drops its (exact) destination port while the
    seed's mask type could take it instead."""
    return (rule.proto != 0 and rule.dport[0] == rule.dport[1] and rule.src.prefixlen >= SEED_BITS
            and rule.src.prefixlen - rule.dst.prefixlen > SEED_BITS)


Span = tuple[int, int, int, int]  # first and last source, first and last destination, as integers


def _bounds(net: IPNetwork) -> tuple[int, int]:
    """First and last address as integers (without `broadcast_address`, which builds objects)."""
    first = int(net.network_address)
    return first, first | ((1 << (net.max_prefixlen - net.prefixlen)) - 1)


def _span(rule: AclRule) -> Span:
    return (*_bounds(rule.src), *_bounds(rule.dst))


def steer(rules: Sequence[AclRule]) -> tuple[AclRule, ...]:
    """`rules` in an order (and with a seed rule per family) that TupleMerge keys by port; the same
    rules unchanged when no family gains. Linear in the rules, plus at most MOVE_BUDGET pair checks."""
    keys = [(r.src.version, r.proto, r.dport[0]) if loses_port(r) else None for r in rules]
    groups = Counter(k for k in keys if k is not None)
    if not groups:
        return tuple(rules)
    movable = [k is not None and groups[k] <= MAX_PORT_GROUP for k in keys]
    per_family = Counter(k[0] for k, m in zip(keys, movable, strict=True) if k is not None and m)
    seeds = {}
    for version, count in sorted(per_family.items()):
        seed = seed_rule(rules, version) if count >= MIN_KEYED else None
        if seed is not None:
            seeds[version] = seed
    if not seeds:
        return tuple(rules)
    front: list[AclRule] = []
    back: list[AclRule] = []
    # the rules left behind so far, by (action, family, protocol); their address spans as needed
    behind: dict[tuple[int, int, int], list[AclRule]] = {}
    spans: dict[int, Span] = {}
    budget = MOVE_BUDGET
    for rule, may_move in zip(rules, movable, strict=True):
        version = rule.src.version
        if may_move and budget > 0 and version in seeds:
            blockers = [b for action, v, proto in behind if action != rule.action and v == version
                        and proto in (rule.proto, 0) for b in behind[(action, v, proto)]]
            budget -= len(blockers)
            if budget >= 0 and not (blockers and _meets_any(_span(rule), blockers, spans)):
                front.append(rule)
                continue
        back.append(rule)
        behind.setdefault((rule.action, version, rule.proto), []).append(rule)
    return (*seeds.values(), *front, *back)


def _meets_any(span: Span, others: list[AclRule], spans: dict[int, Span]) -> bool:
    """Whether the addresses of `span` overlap those of any of `others` (spans cached by id)."""
    for other in others:
        o = spans.get(id(other))
        if o is None:
            o = spans[id(other)] = _span(other)
        if o[0] <= span[1] and span[0] <= o[1] and o[2] <= span[3] and span[2] <= o[3]:
            return True
    return False


def seed_rule(rules: Sequence[AclRule], version: int) -> AclRule | None:
    """A deny no permit of `rules` can contradict: a /4 source region, any destination, on a
    protocol no permit from that region (or any protocol) covers; None when there is none."""
    shift = (32 if version == 4 else 128) - SEED_BITS
    taken: set[tuple[int, int]] = set()  # (protocol, /4 index) some permit reaches; protocol 0: all
    for r in rules:
        if r.action != DENY and r.src.version == version:
            if r.src.prefixlen >= SEED_BITS:  # within one /4
                taken.add((r.proto, int(r.src.network_address) >> shift))
            else:
                first, last = _bounds(r.src)
                taken.update((r.proto, i) for i in range(first >> shift, (last >> shift) + 1))
    any_dst: IPNetwork = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
    for region in _REGIONS[version]:
        index = int(region.network_address) >> shift
        for proto in _SEED_PROTOS:
            if (proto, index) not in taken and (0, index) not in taken:
                return AclRule(DENY, region, any_dst, proto, (0, 65535), (0, 0))
    return None
