"""What the gate reads of a list's source (gate.py): its rules and IP sets, the candidate sets,
and copies of the state with chosen sets' members replaced (every address, or none)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from vppagent.drivers.vpp.classifier.aliases import REST
from vppagent.drivers.vpp.classifier.regions import port_blocks
from vppagent.policy.catalog import Catalog
from vppagent.policy.model import Action, Direction, IPNetwork, Rule, WorkloadEndpoint
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import STAGED_KINDS, DataplaneState, Kind, PolicyKey

# Every IPv4 address. IPv6 is never gated: VPP's classifier reads the next header and the port at
# fixed offsets, so a packet with an extension header (destination options, hop-by-hop, ...) would
# miss every gap table while the ACL plugin finds its port, and L_U would admit any source
# (measured on VPP 26.06: docs/vpp-driver.md, "Large IP sets"). Sets with an IPv6 member stay in
# the ACL; for the others, L_U's IPv6 part is L's own (the set has no IPv6 address there either).
ANY = ("0.0.0.0/0",)
MAX_CANDIDATES = 256  # the heaviest are tried
WORTH_A_GATE = 64  # ACL rules a smaller set must take out of the list to go in when it pays (`pays`)


def policy_names(ep: WorkloadEndpoint, direction: Direction) -> tuple[list[PolicyKey], list[str]]:
    """The list's policies (not staged) and profiles."""
    return [k for t in ep.tiers for k in t.policies(direction) if k.kind not in STAGED_KINDS], list(ep.profile_ids)


def rules(catalog: Catalog, ep: WorkloadEndpoint, direction: Direction) -> Iterable[Rule]:
    for tier in ep.tiers:
        for key in tier.policies(direction):
            if key.kind not in STAGED_KINDS:
                yield from catalog.policy(key).rules(direction)
    for name in ep.profile_ids:
        yield from catalog.profile(name).rules(direction)


def candidates(catalog: Catalog, state: DataplaneState, ep: WorkloadEndpoint, direction: Direction,
               min_members: int) -> tuple[dict[str, int], set[frozenset[str]]]:
    """Address sets used only as the source of allow rules that either have at least
    `min_members` members (a member change is then one session write instead of a list of the
    set's size recompiled and written again: docs/vpp-driver.md, "Large IP sets") or, smaller,
    pay for their gate (`pays`): set -> the ACL rules it costs (to order them by; the
    MAX_CANDIDATES heaviest), and the pairs that share a rule (AND: at most one may be gated).
    The caller never asks with min_members 0 (the classifier off)."""
    usable: dict[str, bool] = {}
    ranges: dict[str, int] = {}
    blocks: dict[str, int] = {}
    pairs: set[frozenset[str]] = set()
    for rule in rules(catalog, ep, direction):
        if rule.action is Action.LOG:
            continue  # the compiler ignores log rules
        for set_id in rule.src_ip_sets:
            usable[set_id] = usable.get(set_id, True) and rule.action is Action.ALLOW
            ranges[set_id] = ranges.get(set_id, 0) + max(1, len(rule.dst_ports))
            blocks[set_id] = blocks.get(set_id, 0) + max(1, sum(len(port_blocks(p.first, p.last))
                                                                for p in rule.dst_ports))
        pairs |= {frozenset((a, b)) for a in rule.src_ip_sets for b in rule.src_ip_sets if a < b}
        for set_id in (*rule.dst_ip_sets, *rule.not_src_ip_sets, *rule.not_dst_ip_sets, *rule.ip_port_set_ids()):
            usable[set_id] = False
    weights: dict[str, int] = {}
    for set_id, ok in usable.items():
        ipset = state.ipsets.get(set_id)
        if ok and not set_id.endswith(REST) and ipset is not None and ipset.type is not IPSetType.IP_AND_PORT \
                and not any(":" in m for m in ipset.members):
            if len(ipset.members) >= min_members:
                # gated whatever it costs: weighed by its size, not its collapse (a member change of
                # a large set is a new content, and collapsing it again is most of that change)
                weights[set_id] = len(ipset.members) * ranges[set_id]
                continue
            acl_rules = prefixes(frozenset(ipset.members)) * ranges[set_id]
            if pays(acl_rules, len(ipset.members) * blocks[set_id]):
                weights[set_id] = acl_rules
    heaviest = sorted(weights, key=lambda s: (-weights[s], s))[:MAX_CANDIDATES]
    return {s: weights[s] for s in heaviest}, pairs


def pays(acl_rules: int, sessions: int) -> bool:
    """Whether a set below the threshold goes to the classifier: when the ACL rules it takes out
    of the list (one per aggregated prefix of its members and destination port range of its
    rules) are at least the admit sessions it adds (one per member and destination-port block,
    what P_i needs when it is not the whole drop region), and at least WORTH_A_GATE (below, a
    chain's own cost - its tables, gap sessions, a classifier lookup on every packet - is not
    worth it). A rule and a session cost about the same to write with the pipelined transport
    (docs/vpp-driver.md, "Large IP sets"); at a tie the gate wins, since per packet its tables
    are a few hash lookups while a set's rules crowd the ACL's TupleMerge entries. So a set of
    scattered addresses on single ports goes, one whose members aggregate into prefixes stays."""
    return acl_rules >= WORTH_A_GATE and sessions <= acl_rules


@functools.lru_cache(maxsize=4096)
def prefixes(members: frozenset[str]) -> int:
    """The prefixes the compiler aggregates the members into (IPv4), about: their collapse."""
    return len(list(ipaddress.collapse_addresses(n for n in _parsed(members) if n.version == 4)))


def with_members(state: DataplaneState, members: Mapping[str, tuple[str, ...]]) -> DataplaneState:
    copy = state.copy()
    for set_id, held in members.items():
        copy.tables[Kind.IPSET][set_id] = IPSet(set_id, IPSetType.NET, frozenset(held))
    return copy


def networks(state: DataplaneState, set_id: str, family: int) -> list[IPNetwork]:
    ipset = state.ipsets.get(set_id)
    return [] if ipset is None else [n for n in _parsed(frozenset(ipset.members)) if n.version == family]


@functools.lru_cache(maxsize=4096)
def _parsed(members: frozenset[str]) -> tuple[IPNetwork, ...]:
    """(Remembered per set content: every list that gates the set asks, and its chain again.)"""
    return tuple(member_network(m) for m in members)


@functools.lru_cache(maxsize=1 << 17)
def member_network(member: str) -> IPNetwork:
    """One member, parsed. Remembered per member, not only per set content: a member change of a
    10,000-member set is a new content, and parsing all of it again cost ~0.3 s of a one-write
    change (bench/vpp_converge.py, "ipset member change")."""
    return ipaddress.ip_network(member, strict=False)
