"""P_i worked out member by member (gate.py: where P_i is too ragged to hold as entries, the
set's `basis`): per member, where the list allows inside the drop boxes with the source clipped
to the member, so that earlier denies that cut P_i into many pieces only ever remove whole
members.

The fast way, for a member that every rule and drop box meeting it contains (no source in the
basis is longer than the member: a host member, in practice): inside the member, every rule
there matches what it matches with its source ignored, so the member's entries are those of the
same rules and drop boxes with every source = every address, with the member as the source. That
answer is remembered by what the rules say apart from their sources (`_relative`): the members
of a set meet the same few rules (the same /24 deny, the same allow), and so do the members of
other sets and lists, so most members cost a few dictionary lookups. Any other member goes the
direct way (`directly`, also the reference tests/vpp/test_gate_memberwise.py compares with).
"""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict
from collections.abc import Iterable

from vppagent.drivers.vpp.classifier.regions import (
    Basis,
    GapEntry,
    Indexed,
    Ruled,
    Slice,
    Unfit,
    View,
    allowed_by,
    check_service_ports,
    entries,
    net,
    port_blocks,
)
from vppagent.policy.boxes import ANY_PROTO, FULL_L4, Box, intersect, width
from vppagent.policy.model import IPNetwork

Relative = tuple[tuple[IPNetwork, int, int, int], ...]  # (destination, protocol, port value, port mask)
PREPARED = 256  # bases whose index is kept (a list's gate has one per ragged set)


class _Prepared:
    """A basis indexed for members: its rules by source prefix, and everything without sources."""

    def __init__(self, family: int, basis: Basis) -> None:
        drops, rules, default = basis
        self.w = width(family)
        self.default = default
        self.drops = drops
        index: dict[tuple[int, int], list[int]] = {}  # (source length, source) -> positions
        for i, ruled in enumerate(rules):
            box = ruled[0]
            key = (box[1], box[0])
            found = index.get(key)
            if found is None:
                index[key] = [i]
            else:
                found.append(i)
        self.index = index
        self.lengths = sorted({n for n, _ in index})
        self.longest = max([*self.lengths, *(d.src_len for d in drops), 0])
        self.rules = rules
        self.unsourced: dict[int, Ruled] = {}  # by position, as members need them
        self.unsourced_drops = [_unsourced(d) for d in drops]

    def relative(self, family: int, address: int, length: int) -> Relative | str:
        """The entries (or why they do not fit) of a member no rule or drop box is inside."""
        w = self.w
        found: list[int] = []
        index = self.index
        for src_len in self.lengths:
            if src_len > length:
                break
            found += index.get((src_len, address >> (w - src_len) << (w - src_len) if src_len else 0), ())
        found.sort()
        drops = tuple(u for d, u in zip(self.drops, self.unsourced_drops, strict=True)
                      if not d.src_len or address >> (w - d.src_len) == d.src >> (w - d.src_len))
        unsourced, rules = self.unsourced, self.rules
        for i in found:
            if i not in unsourced:
                unsourced[i] = (_unsourced(rules[i][0]), rules[i][1])
        return _relative(family, tuple(unsourced[i] for i in found), drops, self.default)


@functools.lru_cache(maxsize=1 << 16)
def _relative(family: int, rules: tuple[Ruled, ...], drops: tuple[Box, ...], default: str) -> Relative | str:
    try:
        boxes = [p for d in drops for p in allowed_by(rules, default, family, d)]
        check_service_ports(boxes)
    except Unfit as exc:
        return str(exc)
    return tuple((net(family, box.dst, box.dst_len), box.proto_lo, value, mask)
                 for box in boxes for value, mask in port_blocks(box.b_lo, box.b_hi))


_prepared: OrderedDict[int, tuple[Basis, _Prepared]] = OrderedDict()


def _prepare(family: int, basis: Basis) -> _Prepared:
    """(Remembered by identity: the gate checks a basis, then the chain asks member by member.)"""
    key = id(basis) * 8 + family
    found = _prepared.get(key)
    if found is not None and found[0] is basis:
        _prepared.move_to_end(key)
        return found[1]
    prepared = _Prepared(family, basis)
    _prepared[key] = (basis, prepared)
    while len(_prepared) > PREPARED:
        _prepared.popitem(last=False)
    return prepared


def member_entries(family: int, basis: Basis, nets: Iterable[IPNetwork]) -> list[GapEntry]:
    """P_i for these members, as entries (each with the member, or a part of it, as source).
    Unfit where a piece is not TCP/UDP to service ports with any source port."""
    prepared = _prepare(family, basis)
    out: list[GapEntry] = []
    for member in nets:
        address, length = int(member.network_address), member.prefixlen
        if length < prepared.longest:
            out += directly(family, basis, [member])
            continue
        found = prepared.relative(family, address, length)
        if isinstance(found, str):
            raise Unfit(found)
        src = net(family, address, length)
        out += [GapEntry(family, src, dst, proto, value, mask) for dst, proto, value, mask in found]
    return out


def check_members(family: int, basis: Basis, nets: Iterable[IPNetwork], view: View) -> None:
    """member_entries' Unfit, without the entries (the gate checks the current members), for
    the basis of `view` (regions.basis(view, family, drops)): its rules are read through the
    view's index of each drop box (for a Slice, its parent's: one index serves every set of
    the list), not indexed again per set."""
    drops, _, default = basis
    w = width(family)
    marker = view.marker if isinstance(view, Slice) else None
    per_drop = [(d, _unsourced(d), view.indexed(family, d)) for d in drops]
    longest = max([0, *(d.src_len for d in drops), *(x.lengths[-1] for _, _, x in per_drop if x.lengths)])
    # The parts with no source meet every member: found once per drop box.
    shared = [x.sourceless(marker) for _, _, x in per_drop]
    checked: set[tuple[tuple[int, tuple[int, ...]], ...]] = set()
    addresses: list[int] = []
    for member in nets:
        if member.prefixlen < longest:
            directly(family, basis, [member])
        else:  # (every source in the basis is at most as long: the member's answer follows from its address)
            addresses.append(int(member.network_address))
    # A member's answer follows from which parts with a source meet it, per drop box holding it:
    # found per source length for all members at once (a prefix every member of a group shares
    # is one lookup for them all), and checked once per distinct answer.
    widest = max([0, *(d.src_len for d in drops)])  # (members alike in these bits are in the same drop boxes)
    groups: dict[int, list[int]] = {}
    for a in addresses:
        groups.setdefault(a >> (w - widest) << (w - widest) if widest else 0, []).append(a)
    filtered: dict[tuple[int, int, int], tuple[int, ...]] = {}
    for prefix, alike in sorted(groups.items()):
        holding = [k for k, d in enumerate(drops)
                   if not d.src_len or prefix >> (w - d.src_len) == d.src >> (w - d.src_len)]
        common: list[tuple[int, int, int]] = []  # (drop box, length, source) met by every member here
        own: dict[int, list[tuple[int, int, int]]] = {}  # per member, the others
        for k in holding:
            for length, sources in sorted(per_drop[k][2].prefixes().items()):
                shift = w - length
                found = {a >> shift << shift for a in alike}
                hits = found & sources
                if len(found) == 1 and hits:
                    common.append((k, length, hits.pop()))
                elif hits:
                    for a in alike:
                        if (source := a >> shift << shift) in hits:
                            own.setdefault(a, []).append((k, length, source))
        answers = {tuple(sorted(common + own[a])) for a in own}
        if len(own) < len(alike):
            answers.add(tuple(common))
        for met in sorted(answers):
            meets = tuple((k, tuple(i for j, length, source in met if j == k
                                    for i in _filtered(filtered, k, length, source, per_drop[k][2], marker)))
                          for k in holding)
            if meets not in checked:
                checked.add(meets)
                _check(family, meets, per_drop, shared, default)


def _filtered(memo: dict[tuple[int, int, int], tuple[int, ...]], k: int, length: int, source: int,
              indexed: Indexed, marker: int | None) -> tuple[int, ...]:
    """The positions of the parts with this source in drop box k read at `marker` (remembered)."""
    key = (k, length, source)
    found = memo.get(key)
    if found is None:
        parts = indexed.parts
        found = memo[key] = tuple(i for i in indexed.index.get((length, source), ())
                                  if parts[i][2] is None or parts[i][2] == marker)
    return found


def _check(family: int, meets: tuple[tuple[int, tuple[int, ...]], ...],
           per_drop: list[tuple[Box, Box, Indexed]], shared: list[tuple[int, ...]], default: str) -> None:
    """Unfit unless the entries of a member meeting these parts (per drop box: its position,
    and the parts with a source meeting the member) fit."""
    rules: list[Ruled] = []
    inside: list[Box] = []
    for k, found_here in meets:
        _, unsourced_drop, indexed = per_drop[k]
        inside.append(unsourced_drop)
        parts, unsourced = indexed.parts, indexed.unsourced
        for i in sorted(shared[k] + found_here):
            if i not in unsourced:
                unsourced[i] = (_unsourced(parts[i][0]), parts[i][1])
            rules.append(unsourced[i])
    if isinstance(answer := _relative(family, tuple(rules), tuple(inside), default), str):
        raise Unfit(answer)


def directly(family: int, basis: Basis, nets: Iterable[IPNetwork]) -> list[GapEntry]:
    """member_entries for any members: the rules whose source nests with the member, inside
    the drop boxes clipped to the member."""
    drops, rules, default = basis
    w = width(family)
    by_length: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (box, _) in enumerate(rules):
        by_length[box.src_len][box.src].append(i)
    out: list[GapEntry] = []
    for member in nets:
        address, length = int(member.network_address), member.prefixlen
        found: list[int] = []
        for src_len, table in by_length.items():
            if src_len <= length:
                found += table.get(address >> (w - src_len) << (w - src_len) if src_len else 0, ())
            else:
                found += [i for prefix, ids in table.items() if prefix >> (w - length) << (w - length) == address
                          for i in ids]
        relevant = [rules[i] for i in sorted(found)]
        box = Box(address, length, 0, 0, *ANY_PROTO, *FULL_L4, *FULL_L4)
        within = [b for d in drops if (b := intersect(d, box, w)) is not None]
        out += entries(family, [p for part in within for p in allowed_by(relevant, default, family, part)])
    return out


def _unsourced(box: Box) -> Box:
    return Box(0, 0, *box[2:])
