"""What the gate reads of a list's source (gate.py): its rules and IP sets, the candidate sets,
copies of the state with chosen sets' members replaced (every address, or none), and with its
destination sets that cannot hold the endpoint emptied (`reaching`, `DestinationIndex`)."""

from __future__ import annotations

import bisect
import functools
import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vppagent.drivers.vpp.classifier.aggregate import SPAN, Aggregated, ladder, width
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
WORTH_A_GATE = 64  # ACL rules the smaller sets together must take out of the list to go in (`pays`)
FINEST = ladder(4, SPAN)  # the block lengths of a set whose P_i has one tail (the usual: aggregate.py)


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
    `min_members` members (a member change is then a few session writes instead of a list of the
    set's size recompiled and written again: docs/vpp-driver.md, "Large IP sets") or, smaller,
    pay for their gate together (`paying`): set -> the ACL rules it costs (to order them by; the
    MAX_CANDIDATES heaviest), and the pairs that share a rule (AND: at most one may be gated).
    The caller never asks with min_members 0 (the classifier off)."""
    usable: dict[str, bool] = {}
    ranges: dict[str, int] = {}
    blocks_of: dict[str, int] = {}
    pairs: set[frozenset[str]] = set()
    for rule in rules(catalog, ep, direction):
        if rule.action is Action.LOG:
            continue  # the compiler ignores log rules
        for set_id in rule.src_ip_sets:
            usable[set_id] = usable.get(set_id, True) and rule.action is Action.ALLOW
            ranges[set_id] = ranges.get(set_id, 0) + max(1, len(rule.dst_ports))
            blocks_of[set_id] = blocks_of.get(set_id, 0) + max(1, sum(len(port_blocks(p.first, p.last))
                                                                      for p in rule.dst_ports))
        pairs |= {frozenset((a, b)) for a in rule.src_ip_sets for b in rule.src_ip_sets if a < b}
        for set_id in (*rule.dst_ip_sets, *rule.not_src_ip_sets, *rule.not_dst_ip_sets, *rule.ip_port_set_ids()):
            usable[set_id] = False
    weights: dict[str, int] = {}
    smaller: dict[str, tuple[int, int]] = {}
    for set_id, ok in usable.items():
        ipset = state.ipsets.get(set_id)
        if ok and not set_id.endswith(REST) and ipset is not None and ipset.type is not IPSetType.IP_AND_PORT \
                and not any(":" in m for m in ipset.members):
            if len(ipset.members) >= min_members:
                # gated whatever it costs: weighed by its size, not its collapse (a member change of
                # a large set is a new content, and collapsing it again is most of that change)
                weights[set_id] = len(ipset.members) * ranges[set_id]
                continue
            held = frozenset(ipset.members)
            smaller[set_id] = (prefixes(held) * ranges[set_id], admitted(held, 4, FINEST)[0] * blocks_of[set_id])
    weights.update(paying(smaller))
    heaviest = sorted(weights, key=lambda s: (-weights[s], s))[:MAX_CANDIDATES]
    return {s: weights[s] for s in heaviest}, pairs


def paying(smaller: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Of the sets below the threshold (set -> (ACL rules, admit sessions)), those that go in:
    the cheapest first (fewest sessions per rule), as many as pay together (`pays`); set -> its
    ACL rules. Together, because a set left in the ACL keeps its ports from every other set's gate
    (docs/vpp-driver.md, "Which sets"): one that costs a few sessions more than its rules lets the
    others' rules out on its ports."""
    order = sorted(smaller, key=lambda s: (smaller[s][1] / max(1, smaller[s][0]), s))
    taken: list[str] = []
    acl_rules = sessions = 0
    for set_id in order:
        rules_of, sessions_of = smaller[set_id]
        if sessions + sessions_of > acl_rules + rules_of:
            break  # (in this order the running ratio only grows)
        taken.append(set_id)
        acl_rules, sessions = acl_rules + rules_of, sessions + sessions_of
    return {s: smaller[s][0] for s in taken} if pays(acl_rules, sessions) else {}


def pays(acl_rules: int, sessions: int) -> bool:
    """Whether sets below the threshold go to the classifier: when the ACL rules they take out of
    the list (per set, one per aggregated prefix of its members and destination port range of its
    rules: what the compiler writes for it) are at least the admit sessions they add (per set, one
    per block of its members and destination-port block: aggregate.py's blocks at its finest
    ladder, /25 to /32, which tell a run of members in as many sessions as the compiler's
    prefixes, up to a /25), and at least WORTH_A_GATE (below, a chain's own cost - its tables, gap
    sessions, a classifier lookup on every packet - is not worth it). A rule and a session cost
    about the same to write with the pipelined transport (docs/vpp-driver.md, "Large IP sets"); at
    a tie the gate wins, since per packet its tables are a few hash lookups while a set's rules
    crowd the ACL's TupleMerge entries. So scattered addresses and runs of pods on single ports
    go; a set on a port range stays (one rule per prefix, several port blocks per block), and so
    do members in prefixes longer than /25's blocks hold (a /24 of members: 1 rule, 2 sessions)
    unless the others pay for them."""
    return acl_rules >= WORTH_A_GATE and sessions <= acl_rules


@functools.lru_cache(maxsize=4096)
def prefixes(members: frozenset[str]) -> int:
    """The prefixes the compiler aggregates the members into (IPv4), about: their collapse."""
    return len(list(ipaddress.collapse_addresses(n for n in _parsed(members) if n.version == 4)))


def destination_sets(found: Iterable[Rule]) -> frozenset[str]:
    """The sets the rules use on the destination side only (for an ingress list, the endpoint's
    side): address sets, named-port sets and ip-port sets that no rule names as a source."""
    dst: set[str] = set()
    src: set[str] = set()
    for rule in found:
        dst.update(rule.dst_ip_sets, rule.not_dst_ip_sets, rule.dst_named_port_sets,
                   rule.not_dst_named_port_sets, rule.dst_ip_port_sets)
        src.update(rule.src_ip_sets, rule.not_src_ip_sets, rule.src_named_port_sets, rule.not_src_named_port_sets)
    return frozenset(dst - src)


class DestinationIndex:
    """A list's destination sets (`destination_sets`) by address, to tell in a few lookups which
    of them hold a member that meets an endpoint's destinations (reach.py's domain): that is all
    the list's analysis reads of them (`reaching`), so the driver keys a list's gate by it
    (acl/lists.py)."""

    def __init__(self, state: DataplaneState, set_ids: Iterable[str]) -> None:
        # per set: its host members' addresses per family, sorted; its other members (prefixes)
        self.hosts: dict[str, dict[int, list[int]]] = {}
        self.others: dict[str, list[IPNetwork]] = {}
        for set_id in sorted(set(set_ids)):
            ipset = state.ipsets.get(set_id)
            if ipset is None:
                continue
            found: dict[int, list[int]] = {4: [], 6: []}
            others = []
            for m in ipset.members:
                net = member_network(m.partition(",")[0])  # (an ip-port member: "address,tcp:80")
                if net.prefixlen == net.max_prefixlen:
                    found[net.version].append(int(net.network_address))
                else:
                    others.append(net)
            self.hosts[set_id] = {f: sorted(found[f]) for f in (4, 6)}
            self.others[set_id] = others

    def meeting(self, prefixes: Iterable[IPNetwork]) -> tuple[str, ...]:
        """The sets (sorted) with a member that meets one of `prefixes`."""
        wanted = list(prefixes)
        return tuple(set_id for set_id, by_family in self.hosts.items()
                     if any(self._meets(set_id, by_family[p.version], p) for p in wanted))

    def _meets(self, set_id: str, addresses: list[int], p: IPNetwork) -> bool:
        first = int(p.network_address)
        at = bisect.bisect_left(addresses, first)
        return (at < len(addresses) and addresses[at] < first + p.num_addresses) or \
            any(net.version == p.version and net.overlaps(p) for net in self.others[set_id])


def reaching(state: DataplaneState, set_ids: Iterable[str], prefixes: Iterable[IPNetwork]) -> DataplaneState:
    """A copy of the state where each of the destination sets `set_ids` none of whose members
    meets `prefixes` (the destinations a packet reaching the endpoint can have: reach.py's
    domain) is empty; the state itself when none is cut. No member of such a set matches a packet
    whose destination lies in `prefixes`, so every rule matches that packet as before: the list
    is the same on every packet that can reach the endpoint. That lets the gate take a port where
    named ports of other pods made L_0 ragged (docs/vpp-driver.md, "Regions depend on the
    endpoint only through its destination sets"). A set that holds the endpoint stays whole (its
    other members keep that port as it was), so that every endpoint of a spec in the same sets
    shares one analysis: Calico's named-port sets of ingress rules usually hold the endpoints the
    policy selects, and a set cut to the endpoint's own member would give each its own compile.
    Invalid members are kept: a set that does not validate still fails the list."""
    ids = sorted(set(set_ids))
    meeting = set(DestinationIndex(state, ids).meeting(prefixes))
    copy: DataplaneState | None = None
    for set_id in ids:
        ipset = state.ipsets.get(set_id)
        if ipset is None or set_id in meeting or not ipset.members:
            continue
        if copy is None:
            copy = state.copy()
        copy.tables[Kind.IPSET][set_id] = IPSet(set_id, ipset.type, frozenset(), ipset.invalid)
    return state if copy is None else copy


def with_members(state: DataplaneState, members: Mapping[str, tuple[str, ...]]) -> DataplaneState:
    copy = state.copy()
    for set_id, held in members.items():
        copy.tables[Kind.IPSET][set_id] = IPSet(set_id, IPSetType.NET, frozenset(held))
    return copy


def networks(state: DataplaneState, set_id: str, family: int) -> list[IPNetwork]:
    ipset = state.ipsets.get(set_id)
    return [] if ipset is None else [n for n in _parsed(frozenset(ipset.members)) if n.version == family]


@functools.lru_cache(maxsize=4096)
def admitted(members: frozenset[str], family: int, lengths: tuple[int, ...],
             set_id: str = "") -> tuple[int, frozenset[int]]:
    """The prefixes that admit these members of `family` (aggregate.py's blocks of the hosts at
    `lengths`, and the members that are prefixes themselves): how many, and their lengths.
    Remembered per content; with `set_id`, worked out from that set's last content by its
    difference (a member change of a 10,000-member set is a new content: ~60 ms from scratch)."""
    key = (set_id, family, lengths)
    kept = _kept.pop(key, None) if set_id else None
    if kept is None:
        kept = _Kept(frozenset(), Aggregated(family, lengths), Counter())
    w = width(family)
    for held, sign in ((kept.members - members, -1), (members - kept.members, 1)):
        hosts = []
        for m in held:
            n = member_network(m)
            if n.version == family:
                if n.prefixlen == w:
                    hosts.append(int(n.network_address))
                else:
                    kept.prefixes[n.prefixlen] += sign
        kept.aggregated.update(hosts if sign > 0 else (), hosts if sign < 0 else ())
    kept.members = members
    if set_id:
        _kept[key] = kept
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    used = kept.aggregated.used() | {length for length, n in kept.prefixes.items() if n}
    return kept.aggregated.count() + sum(kept.prefixes.values()), used


@dataclass
class _Kept:
    members: frozenset[str]
    aggregated: Aggregated
    prefixes: Counter[int]  # members that are prefixes, by length


KEPT = 256  # sets whose last content `admitted` keeps
_kept: OrderedDict[tuple[str, int, tuple[int, ...]], _Kept] = OrderedDict()


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
