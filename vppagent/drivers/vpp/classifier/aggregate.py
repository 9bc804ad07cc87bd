"""A gated set's host members as aligned blocks, for its admit sessions (admits.py): one session
per block instead of one per member, so a set of contiguous pods costs about the sessions the
ACL compiler's prefixes cost in rules (docs/vpp-driver.md, "Large IP sets").

A block is an aligned prefix of one of the set's `ladder` lengths whose every address is a host
member: the coarsest such block holding an address is taken, else the member alone. Blocks never
hold a non-member, and tell the same addresses as the members. The lengths are few because each
one is a table shape of the chain (a hash lookup per packet): `ladder` spreads `levels` lengths
evenly over the last 8 bits (8 levels: every length from /25 to /32; 4: /26, /28, /30, /32; 2:
/28, /32; 1: the host alone), so a collapsed prefix between two lengths splits into at most
2^(step - 1) blocks of the longer one, and no block holds more than 128 addresses.

Members that are prefixes themselves are left out here (admits.py admits them as they are). The
work is integer arithmetic on addresses, per group (the aligned block of the coarsest length):
`Aggregated` keeps the groups and answers a member change with the blocks that came and went,
looking only at the groups the changed members are in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

Block = tuple[int, int]  # (network address as an integer, prefix length)
SPAN = 8  # the ladder's lengths lie within the last SPAN bits: blocks of at most 2^(SPAN - 1) addresses


def width(family: int) -> int:
    return 32 if family == 4 else 128


def ladder(family: int, levels: int) -> tuple[int, ...]:
    """`levels` block lengths (at least 1, at most SPAN), the host first, evenly spaced."""
    w = width(family)
    levels = max(1, min(SPAN, levels))
    step = SPAN // levels
    return tuple(w - i * step for i in range(levels))


def blocks(family: int, hosts: Iterable[int], lengths: tuple[int, ...]) -> list[Block]:
    """The blocks of these host addresses (any order, repeats allowed) at `lengths` (ladder())."""
    w = width(family)
    shift = w - lengths[-1]
    groups: dict[int, set[int]] = {}
    for address in hosts:
        groups.setdefault(address >> shift, set()).add(address)
    out: list[Block] = []
    for group, held in groups.items():
        out += group_blocks(w, group << shift, held, lengths)
    return out


def group_blocks(w: int, base: int, held: set[int], lengths: tuple[int, ...]) -> list[Block]:
    """The blocks of one group: the hosts `held` inside the block (base, lengths[-1])."""
    if len(lengths) == 1:
        return [(a, w) for a in held]
    return _within(w, base, len(lengths) - 1, held, lengths)


def _within(w: int, base: int, level: int, held: set[int], lengths: tuple[int, ...]) -> list[Block]:
    """The blocks of `held` inside (base, lengths[level]), level >= 1."""
    if len(held) == 1 << (w - lengths[level]):
        return [(base, lengths[level])]
    if level == 1 or len(held) < 1 << (w - lengths[1]):  # no block but a host's can be full
        return [(a, w) for a in held]
    shift = w - lengths[level - 1]
    parts: dict[int, set[int]] = {}
    for a in held:
        parts.setdefault(a >> shift, set()).add(a)
    out: list[Block] = []
    for part, inside in parts.items():
        out += _within(w, part << shift, level - 1, inside, lengths)
    return out


class Aggregated:
    """The blocks of a changing set of host addresses, kept per group, so that a member change
    costs the groups it touches (a group holds at most 2^(SPAN - 1) addresses)."""

    def __init__(self, family: int, lengths: tuple[int, ...]) -> None:
        self.w = width(family)
        self.ladder = lengths
        self.shift = self.w - lengths[-1]
        self.groups: dict[int, set[int]] = {}
        self.blocks: dict[int, list[Block]] = {}  # group -> its blocks
        self.lengths: Counter[int] = Counter()  # block length -> how many blocks have it

    def update(self, added: Iterable[int], removed: Iterable[int]) -> tuple[set[Block], set[Block]]:
        """Hosts added and removed; the blocks that came and that went."""
        touched: set[int] = set()
        for a in removed:
            group = a >> self.shift
            held = self.groups.get(group)
            if held is not None and a in held:
                held.discard(a)
                touched.add(group)
        for a in added:
            group = a >> self.shift
            held = self.groups.setdefault(group, set())
            if a not in held:
                held.add(a)
                touched.add(group)
        came: set[Block] = set()
        went: set[Block] = set()
        for group in touched:
            before = set(self.blocks.pop(group, ()))
            held = self.groups[group]
            now = set(group_blocks(self.w, group << self.shift, held, self.ladder)) if held else set()
            if held:
                self.blocks[group] = list(now)
            else:
                del self.groups[group]
            came |= now - before
            went |= before - now
        self.lengths.update(length for _, length in came)
        self.lengths.subtract(length for _, length in went)
        return came, went

    def count(self) -> int:
        return sum(self.lengths.values())

    def used(self) -> frozenset[int]:
        return frozenset(length for length, n in self.lengths.items() if n)

    def all_blocks(self) -> list[Block]:
        return [b for found in self.blocks.values() for b in found]
