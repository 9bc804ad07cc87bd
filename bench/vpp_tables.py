"""What VPP's ACL plugin built for the lists bound to interfaces: lookup contexts and their
TupleMerge mask types, read from VPP's CLI (`show acl-plugin lookup context`, `show acl-plugin
tables applied lc_index N`). Shared by bench/vpp_packet.py and bench/vpp_converge.py.

The hash lookup (TupleMerge, on by default) groups a list's rules by mask type (which bits of the
5-tuple a rule looks at, relaxed so near shapes share one); a packet that no earlier mask type
decided costs one hash probe per mask type, and rules colliding in one bucket are then compared one
by one. So the per-packet cost follows the number of mask types and the collisions, not the rules.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Cli = Callable[[str], str]

_CONTEXT = re.compile(r"index (\d+):interface ACL sw_if_index: (\d+) is_input: (\d), acl_indices: ([\d, ]*)")
_MASK_INFO = re.compile(r"^\s+\d+: mask type index (\d+) first rule index (\d+) num_entries (\d+) max_collisions (\d+)")


@dataclass(frozen=True)
class LookupContext:
    lc_index: int
    sw_if_index: int
    is_input: bool
    acls: tuple[int, ...]


@dataclass(frozen=True)
class MaskShapes:
    """One lookup context's applied TupleMerge table: distinct mask types, hash entries, and the
    most rules sharing one entry (compared linearly)."""

    mask_types: int
    entries: int
    max_collisions: int


def lookup_contexts(cli: Cli) -> list[LookupContext]:
    out = []
    for m in _CONTEXT.finditer(cli("show acl-plugin lookup context")):
        acls = tuple(int(a) for a in m.group(4).replace(",", " ").split())
        out.append(LookupContext(int(m.group(1)), int(m.group(2)), m.group(3) == "1", acls))
    return out


def mask_shapes(cli: Cli, lc_index: int) -> MaskShapes:
    text = cli(f"show acl-plugin tables applied lc_index {lc_index}")
    infos = []
    in_section = False
    for line in text.splitlines():
        if "applied mask info entries" in line:
            in_section = True
        elif "lookup applied entries" in line:
            in_section = False
        elif in_section and (m := _MASK_INFO.match(line)):
            infos.append((int(m.group(3)), int(m.group(4))))
    return MaskShapes(len(infos), sum(n for n, _ in infos), max((c for _, c in infos), default=0))


def global_mask_types(cli: Cli) -> int:
    """Mask types the plugin holds over all ACLs (`show acl-plugin tables mask`)."""
    return len(re.findall(r"^\s+\d+: [0-9a-f]{16} ", cli("show acl-plugin tables mask"), re.M))


def shapes_per_acl(cli: Cli, acl_indices: Iterable[int]) -> dict[int, MaskShapes]:
    """Mask shapes of each ACL, read from one lookup context that holds it alone (an interface
    direction bound to just that ACL); an ACL bound nowhere is left out."""
    wanted = set(acl_indices)
    contexts: dict[int, int] = {}
    for lc in lookup_contexts(cli):
        if len(lc.acls) == 1 and lc.acls[0] in wanted:
            contexts.setdefault(lc.acls[0], lc.lc_index)
    return {acl: mask_shapes(cli, lc) for acl, lc in contexts.items()}


def summary(shapes: Iterable[MaskShapes]) -> str:
    """min / median / max of mask types and collisions over lists, one line."""
    values = list(shapes)
    if not values:
        return "no list bound"
    types = [s.mask_types for s in values]
    coll = [s.max_collisions for s in values]
    return (f"{len(values)} lists: mask types per list min {min(types)} / median {statistics.median(types):g} / "
            f"max {max(types)}; most rules in one hash entry min {min(coll)} / median "
            f"{statistics.median(coll):g} / max {max(coll)}")
