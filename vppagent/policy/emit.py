"""From boxes to VPP ACL rules: the compiler's lower half (split out of compile.py for size).

- `aim`: region boxes intersected with a list of verdict boxes, in first-match order, through
  an index of the verdicts by source prefix when the product is large;
- `finish`: one family's first-match entries cleaned (repeats and rules one earlier rule covers
  dropped, the trailing catch-all folded into the default) and emitted as FlatRules;
- `combine`: the IPv4 and IPv6 parts joined into one list with one default.
"""

from __future__ import annotations

import functools
import ipaddress

from vppagent.policy.boxes import ANY_PROTO, FULL_L4, Box, intersect, is_full, width
from vppagent.policy.flat import FlatAction, FlatRule
from vppagent.policy.model import ICMP_FOR_FAMILY, TCP, UDP, IPNetwork, PortRange

Entry = tuple[Box, FlatAction, str]  # box, action, origin (what decided, for trace)


def box_cost(box: Box) -> int:
    """VPP rules this box becomes (a protocol range is one rule per protocol)."""
    if (box.proto_lo, box.proto_hi) == ANY_PROTO and (box.a_lo, box.a_hi) == FULL_L4 and \
            (box.b_lo, box.b_hi) == FULL_L4:
        return 1
    return box.proto_hi - box.proto_lo + 1



def must(entries: list[Entry] | None) -> list[Entry]:
    assert entries is not None  # aim raises instead of returning None when it has no stop_after
    return entries


_INDEX_BITS = {32: 16, 128: 48}  # source bits a bucket of the index shares (a /16 or a /48)


def aim(region: list[Box], verdicts: list[Entry], w: int, relabel: str | None, cap: int) -> list[Entry] | None:
    """Each region box intersected with each verdict box, region-major and in verdict order
    (the order is what keeps first-match semantics); None past `cap` entries.

    Large products go through _SourceIndex, so the cost follows the output, not region x verdicts."""
    out: list[Entry] = []
    if len(verdicts) == 1 and is_full(verdicts[0][0]):  # (an allow or deny rule: each box as it is)
        _, action, why = verdicts[0]
        label = why if relabel is None else why + relabel
        full = verdicts[0][0]
        for r in region:
            if ANY_PROTO[0] <= r[4] and r[5] <= ANY_PROTO[1]:
                out.append((r, action, label))  # (what intersect would give: the box itself)
            elif (m := intersect(r, full, w)) is not None:
                out.append((m, action, label))
        return out if len(out) <= cap else None
    index = None if len(region) * len(verdicts) <= 4096 or len(region) == 1 else _SourceIndex(verdicts, w)
    for r in region:
        for i in range(len(verdicts)) if index is None else index.candidates(r):
            box, action, why = verdicts[i]
            m = intersect(r, box, w)
            if m is not None:
                out.append((m, action, why if relabel is None else why + relabel))
        if len(out) > cap:
            return None
    return out


class _SourceIndex:
    """The verdicts by the top bits of their source prefix: a region box meets only the verdicts
    whose source can overlap its own (in verdict order), those broader than the index included."""

    def __init__(self, verdicts: list[Entry], w: int) -> None:
        self.w = w
        self.k = _INDEX_BITS[w]
        self.buckets: dict[int, list[int]] = {}
        self.broad: list[int] = []
        for i, (box, _, _) in enumerate(verdicts):
            if box.src_len >= self.k:
                self.buckets.setdefault(box.src >> (w - self.k), []).append(i)
            else:
                self.broad.append(i)

    def candidates(self, r: Box) -> list[int]:
        k, w, buckets, broad = self.k, self.w, self.buckets, self.broad
        if r.src_len >= k:
            chosen = buckets.get(r.src >> (w - k), [])
            return sorted(chosen + broad) if broad and chosen else chosen or broad
        first = r.src >> (w - k)
        span = 1 << (k - r.src_len)
        first = (first >> (k - r.src_len)) << (k - r.src_len)
        if span <= len(buckets):
            keys = [b for b in range(first, first + span) if b in buckets]
        else:
            keys = [b for b in buckets if first <= b < first + span]
        return sorted([i for b in keys for i in buckets[b]] + broad)


@functools.lru_cache(maxsize=65536)
def _network(family: int, addr: int, length: int) -> IPNetwork:
    return ipaddress.IPv4Network((addr, length)) if family == 4 else ipaddress.IPv6Network((addr, length))


@functools.lru_cache(maxsize=65536)
def _ports(lo: int, hi: int) -> PortRange:
    return PortRange(lo, hi)


def _vpp_rules(entry: Entry, family: int) -> list[FlatRule]:
    """One box → VPP rules: per protocol, L4 ranges as VPP reads that protocol (see boxes)."""
    box, action, origin = entry
    src, dst = _network(family, box.src, box.src_len), _network(family, box.dst, box.dst_len)
    proto = box.proto_lo
    if proto == box.proto_hi and proto in (TCP, UDP):  # the common case, first (the rule is the box)
        return [FlatRule.of_box(action, family, src, dst, proto, _ports(box.a_lo, box.a_hi), _ports(box.b_lo, box.b_hi),
                                origin, box)]
    full = _ports(*FULL_L4)
    if box_cost(box) == 1 and (box.proto_lo, box.proto_hi) == ANY_PROTO:
        return [FlatRule.of_box(action, family, src, dst, 0, full, full, origin, box)]
    out = []
    icmp = ICMP_FOR_FAMILY[family]
    for proto in range(box.proto_lo, box.proto_hi + 1):
        a, b = (box.a_lo, box.a_hi), (box.b_lo, box.b_hi)
        if proto == icmp:
            a, b = (a[0], min(a[1], 255)), (b[0], min(b[1], 255))
            if a[0] > a[1] or b[0] > b[1]:
                continue
            a = FULL_L4 if a == (0, 255) else a
            b = FULL_L4 if b == (0, 255) else b
        elif proto not in (TCP, UDP):
            if not (a[0] == 0 and b[0] == 0):
                continue  # VPP reads 0 for this protocol's L4 fields
            a = b = FULL_L4
        out.append(FlatRule(action, family, src, dst, proto, _ports(*a), _ports(*b), origin))
    return out


def finish(entries: list[Entry], family: int) -> tuple[list[FlatRule], FlatAction]:
    """Drop what can never match, and fold the trailing catch-all into a family default."""
    w = width(family)
    kept: list[Entry] = []
    seen: set[Box] = set()
    # Earlier rules with no address constraint, the likely shadows, as their L4 ranges; and
    # per (protocol, source port) ranges of a box, the destination-port ranges of those whose
    # protocol and source-port ranges hold them (asked again for every box of the same kind).
    broad: list[tuple[int, int, int, int, int, int]] = []
    broad_for: dict[tuple[int, int, int, int], list[tuple[int, int]]] = {}
    # The same for every kept rule while the list is short: per L4 ranges (protocol, source and
    # destination port), the kept boxes whose ranges hold them, in order.
    kept_for: dict[tuple[int, ...], list[Box]] = {}
    for e in entries:
        box = e[0]
        if box in seen:
            continue
        seen.add(box)
        # Shadowed by one earlier rule: all of them while the list is short, then only the
        # broad ones (the check is only an optimisation, so it is bounded).
        _, _, _, _, plo, phi, alo, ahi, blo, bhi = box
        key = (plo, phi, alo, ahi)
        if len(kept) <= 200:
            l4 = box[4:]
            holders = kept_for.get(l4)
            if holders is None:
                holders = kept_for[l4] = [k[0] for k in kept if k[0][4] <= plo and phi <= k[0][5] and k[0][6] <= alo
                                          and ahi <= k[0][7] and k[0][8] <= blo and bhi <= k[0][9]]
            src, src_len, dst, dst_len = box[0], box[1], box[2], box[3]
            # (covers(k, box), its L4 part known: only the prefixes are left to compare)
            if any(k[1] <= src_len and k[3] <= dst_len and (not k[1] or src >> (w - k[1]) == k[0] >> (w - k[1]))
                   and (not k[3] or dst >> (w - k[3]) == k[2] >> (w - k[3])) for k in holders):
                continue
            for (p0, p1, a0, a1, b0, b1), found in kept_for.items():
                if plo <= p0 and p1 <= phi and alo <= a0 and a1 <= ahi and blo <= b0 and b1 <= bhi:
                    found.append(box)
        else:
            holding = broad_for.get(key)
            if holding is None:
                holding = broad_for[key] = [(c[4], c[5]) for c in broad
                                            if c[0] <= plo and phi <= c[1] and c[2] <= alo and ahi <= c[3]]
            if any(lo <= blo and bhi <= hi for lo, hi in holding):
                continue
        kept.append(e)
        if is_full(box):
            break
        if box.src_len == 0 and box.dst_len == 0 and len(broad) < 64:
            broad.append(box[4:])
            broad_for.clear()
    assert kept and is_full(kept[-1][0]), "every list ends in a catch-all"
    default = kept.pop()[1]
    while kept and kept[-1][1] == default:
        kept.pop()  # the default would decide the same
    rules = [r for e in kept for r in _vpp_rules(e, family)]
    return rules, default


def combine(per_family: dict[int, tuple[list[FlatRule], FlatAction]]) -> tuple[list[FlatRule], FlatAction]:
    defaults = {d for _, d in per_family.values()}
    default: FlatAction = "allow" if defaults == {"allow"} else "deny"
    rules: list[FlatRule] = []
    for family in (4, 6):
        fam_rules, fam_default = per_family[family]
        rules += fam_rules
        if fam_default != default:
            any_net = ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
            full = PortRange(*FULL_L4)
            rules.append(FlatRule(fam_default, family, any_net, any_net, 0, full, full, "family default"))
    return rules, default
