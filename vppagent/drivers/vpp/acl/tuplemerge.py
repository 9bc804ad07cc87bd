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
MOVE_BUDGET = 200_000
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


def may_share_packets(a: AclRule, b: AclRule) -> bool:
    """Whether one packet can match both rules (ports ignored, flags ignored: conservative)."""
    return (a.src.version == b.src.version and (a.proto == 0 or b.proto == 0 or a.proto == b.proto)
            and a.src.overlaps(b.src) and a.dst.overlaps(b.dst))


def steer(rules: Sequence[AclRule]) -> tuple[AclRule, ...]:
    """`rules` in an order (and with a seed rule per family) that TupleMerge keys by port; the same
    rules unchanged when no family gains."""
    groups = Counter((r.src.version, r.proto, r.dport[0]) for r in rules if loses_port(r))

    def movable(rule: AclRule) -> bool:
        return loses_port(rule) and groups[(rule.src.version, rule.proto, rule.dport[0])] <= MAX_PORT_GROUP

    seeds = {}
    for version in (4, 6):
        keyed = sum(1 for r in rules if r.src.version == version and movable(r))
        if keyed >= MIN_KEYED:
            seed = seed_rule(rules, version)
            if seed is not None:
                seeds[version] = seed
    if not seeds:
        return tuple(rules)
    front: list[AclRule] = []
    back: list[AclRule] = []
    back_by_action: dict[int, list[AclRule]] = {}
    budget = MOVE_BUDGET
    for rule in rules:
        if budget > 0 and rule.src.version in seeds and movable(rule):
            blockers = [b for action, kept in back_by_action.items() if action != rule.action for b in kept]
            budget -= len(blockers)
            if budget >= 0 and not any(may_share_packets(rule, b) for b in blockers):
                front.append(rule)
                continue
        back.append(rule)
        back_by_action.setdefault(rule.action, []).append(rule)
    return (*seeds.values(), *front, *back)


def seed_rule(rules: Sequence[AclRule], version: int) -> AclRule | None:
    """A deny no permit of `rules` can contradict: a /4 source region, any destination, on a
    protocol no permit from that region (or any protocol) covers; None when there is none."""
    permits = [r for r in rules if r.action != DENY and r.src.version == version]
    any_dst: IPNetwork = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
    for region in _REGIONS[version]:
        for proto in _SEED_PROTOS:
            seed = AclRule(DENY, region, any_dst, proto, (0, 65535), (0, 0))
            if not any(may_share_packets(seed, p) for p in permits):
                return seed
    return None
