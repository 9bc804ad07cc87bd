"""L_U without the deny rules the chain makes needless (gate.py).

On the drop region D the chain's verdict is L's own (gate.py: in D, L_0 denies and a packet is
admitted exactly when some L_i allows it for a member), and the interface's verdict is
L_U ∧ chain. A deny rule r of L_U may go when no allow rule after it matches a packet of r
outside D (one that no rule in between matches first):

- a packet p that r matched first: L_U denied p, so L denies p (L ≤ L_U: L_U has every gated
  set = every address). In D the chain then drops p, whatever L_U without r says; outside D no
  later allow matches p, so L_U without r still denies it (the default is deny).
- every other packet meets the same first rule as before.

The bench's lists deny TCP 0-1023 from each member of sets that other rules allow from: in L_U
those denies matter only on the gated ports, which are in D, so they go (docs/vpp-driver.md).
"""

from __future__ import annotations

import bisect
import dataclasses

from vppagent.drivers.vpp.classifier.regions import GapEntry, rule_box
from vppagent.policy.boxes import FULL_L4, Box, covers, intersect, subtract_all, width
from vppagent.policy.flat import CompiledList

Dims = tuple[int, int, int, int, int, int]  # protocol, source port and destination port ranges


def without_needless_denies(compiled: CompiledList, gaps: tuple[GapEntry, ...],
                            boxes: list[Box] | None = None) -> CompiledList:
    """`boxes`: the rules' boxes (regions.rule_box), when the caller has them."""
    if compiled.default_action != "deny" or not gaps:
        return compiled
    drop: dict[int, list[Box]] = {4: [], 6: []}
    for g in gaps:
        drop[g.family].append(Box(int(g.src.network_address), g.src.prefixlen, int(g.dst.network_address),
                                  g.dst.prefixlen, g.proto, g.proto, *FULL_L4, g.dport,
                                  g.dport + (~g.dport_mask & 0xFFFF)))
    inside = {f: _Inside(boxes, width(f)) for f, boxes in drop.items()}
    if boxes is None:
        boxes = [rule_box(r) for r in compiled.rules]
    # Rules (by position) that may cover another rule's part: those whose source is not one host
    # (a part outside D that one of them matches first does not reach the allow rule after it).
    wide = [i for i, (r, b) in enumerate(zip(compiled.rules, boxes, strict=True)) if b.src_len < r.src.max_prefixlen]
    allowing: dict[int, dict[Dims, list[int]]] = {4: {}, 6: {}}  # per family, the allow rules by their dims
    for j, r in enumerate(compiled.rules):
        if r.action == "allow":
            allowing[r.family].setdefault(_dims(boxes[j]), []).append(j)
    allows: dict[tuple[int, Dims], list[int]] = {}  # per deny's dims: the allow rules that meet them
    gone: set[int] = set()
    for i, rule in enumerate(compiled.rules):
        if rule.action == "allow":
            continue
        box, family, w = boxes[i], rule.family, width(rule.family)
        key = (family, _dims(box))
        if key not in allows:
            allows[key] = sorted(j for dims, found in allowing[family].items() if _meets(key[1], dims) for j in found)
        later = allows[key]
        in_drop = inside[family]
        src, src_len = box[0], box[1]
        for j in later[bisect.bisect_right(later, i):]:
            other = boxes[j]
            shift = w - (other[1] if other[1] < src_len else src_len)  # (intersect's source test, inline)
            if shift < w and (other[0] >> shift) != (src >> shift):
                continue
            part = intersect(box, other, w)
            if part is not None and not (in_drop(part) or _covered_between(part, j, i, boxes, wide, w)):
                break
        else:
            gone.add(i)
    if not gone:
        return compiled
    return dataclasses.replace(compiled, rules=tuple(r for i, r in enumerate(compiled.rules) if i not in gone))


class _Inside:
    """Whether a box lies in D (one family's drop boxes), remembered. With S the longest source
    prefix of a drop box, every address of a source prefix at least S long is in the same drop
    boxes' sources (those holding its first S bits), so whether a box with such a source lies in
    D is whether the box with its source cut to those S bits does; the same for destinations.
    So the many parts that differ only in a long source (a deny per member of a set) are asked
    once per S-prefix."""

    def __init__(self, drop: list[Box], w: int) -> None:
        self.drop, self.w = drop, w
        self.src_len = max((d.src_len for d in drop), default=0)
        self.dst_len = max((d.dst_len for d in drop), default=0)
        self.known: dict[Box, bool] = {}

    def __call__(self, part: Box) -> bool:
        w, s, d = self.w, self.src_len, self.dst_len
        src, src_len, dst, dst_len = part[0], part[1], part[2], part[3]
        if src_len >= s:
            src, src_len = (src >> (w - s) << (w - s) if s else 0), s
        if dst_len >= d:
            dst, dst_len = (dst >> (w - d) << (w - d) if d else 0), d
        key = tuple.__new__(Box, (src, src_len, dst, dst_len, *part[4:]))
        found = self.known.get(key)
        if found is None:
            w = self.w
            meet = [d for d in self.drop if intersect(d, key, w) is not None]
            found = self.known[key] = bool(meet) and (any(covers(d, key, w) for d in meet)
                                                      or subtract_all([key], meet, w, 64) == [])
        return found


def _covered_between(part: Box, j: int, i: int, boxes: list[Box], wide: list[int], w: int) -> bool:
    """Whether a rule between i and j covers `part` (what reaches j of it: none)."""
    between = wide[bisect.bisect_right(wide, i):bisect.bisect_left(wide, j)]
    return any(covers(boxes[k], part, w) for k in reversed(between))  # (the nearest cover is the usual one)


def _dims(box: Box) -> Dims:
    return box[4], box[5], box[6], box[7], box[8], box[9]


def _meets(dims: Dims, other: Dims) -> bool:
    return (dims[0] <= other[1] and other[0] <= dims[1] and dims[2] <= other[3] and other[2] <= dims[3]
            and dims[4] <= other[5] and other[4] <= dims[5])
