"""Kernel IP sets for Felix's IP sets: one set per (id, family), members in canonical form.

Felix's types map to hash:ip, hash:net and hash:ip,port. A set holds only its family's members.
`hash:net` cannot hold a /0, so a /0 member becomes its two /1 halves (the same addresses).
Writes are one `ipset restore` per phase: `apply_creates` (new sets created and filled, up to
SMALL_DELTA member changes as add/del lines, bigger ones filled into a temporary set and swapped
in) and `apply_deletes` (sets no longer desired).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from vppagent.drivers.iptables.names import IPSET_NAME_RE
from vppagent.drivers.iptables.runner import CommandError, Runner
from vppagent.state.ipset import IPSet, IPSetType

log = logging.getLogger(__name__)

KERNEL_TYPES = {IPSetType.IP: "hash:ip", IPSetType.NET: "hash:net", IPSetType.IP_AND_PORT: "hash:ip,port"}
MAX_ELEMENTS = 1048576  # Felix's MaxIpsetSize default
SMALL_DELTA = 256  # up to this many member changes are applied in place, not by swap


@dataclass(frozen=True)
class KernelSet:
    name: str
    type: IPSetType
    family: int
    members: frozenset[str]


@dataclass
class IPSetResult:
    calls: int = 0
    created: int = 0
    swapped: int = 0
    changed_in_place: int = 0
    destroyed: int = 0
    error: str | None = None
    failed_ids: dict[str, str] = field(default_factory=dict)


def kernel_members(ipset: IPSet, family: int) -> frozenset[str]:
    """The members of `ipset` that belong in its `family` kernel set, in the form ipset prints.

    IPSet members are canonical already (the state canonicalises them as they arrive, the way
    canonical_from_kernel reads them back), so only the family split and /0 are done here."""
    v6 = family == 6
    if ipset.type is IPSetType.IP_AND_PORT:
        mine = [m for m in ipset.members if (":" in m.split(",", 1)[0]) == v6]
    else:
        # An IPv4 member never contains ":" (not even "/n"); every IPv6 member does.
        mine = [m for m in ipset.members if (":" in m) == v6]
    if ipset.type is not IPSetType.NET or not any(m.endswith("/0") for m in mine):
        return frozenset(mine)
    out: set[str] = set()
    for member in mine:
        net = ipaddress.ip_network(member, strict=False)
        if net.prefixlen == 0:
            out.update(str(half) for half in net.subnets(prefixlen_diff=1))
        else:
            out.add(member)
    return frozenset(out)


def canonical_from_kernel(set_type: IPSetType, member: str) -> str:
    """ipset prints /32 and /128 net entries without the length, and protocols in lower case."""
    if set_type is IPSetType.NET:
        return str(ipaddress.ip_network(member, strict=False))
    if set_type is IPSetType.IP:
        return str(ipaddress.ip_address(member))
    addr, _, proto_port = member.partition(",")
    proto, _, port = proto_port.partition(":")
    return f"{ipaddress.ip_address(addr)},{proto.lower()}:{int(port)}"


def _create_line(name: str, kset: KernelSet) -> str:
    family = "inet6" if kset.family == 6 else "inet"
    return f"create {name} {KERNEL_TYPES[kset.type]} family {family} maxelem {MAX_ELEMENTS}"


class IPSetTable:
    """Desired kernel sets vs the kernel's (read back with `ipset save` when unknown)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.desired: dict[str, KernelSet] = {}
        self._actual: dict[str, KernelSet] | None = None

    def invalidate(self) -> None:
        self._actual = None

    def read_back(self) -> dict[str, KernelSet]:
        return self.runner.stream(["ipset", "save"], read_ipset_save, timeout=60)

    def drift(self) -> list[str]:
        self._actual = self.read_back()
        wrong = [n for n, s in self.desired.items() if self._actual.get(n) != s]
        return sorted(wrong + [n for n in self._actual if n not in self.desired])

    def apply_creates(self) -> IPSetResult:
        """Create and update sets (before iptables may reference them)."""
        result = IPSetResult()
        try:
            actual = self._actual if self._actual is not None else self.read_back()
        except CommandError as exc:
            result.error = f"cannot read IP sets: {exc}"
            return result
        self._actual = actual
        lines: list[str] = []
        touched: list[KernelSet] = []
        for name, want in sorted(self.desired.items()):
            have = actual.get(name)
            if have == want:
                continue
            touched.append(want)
            if have is None:
                lines.append(_create_line(name, want))
                lines.extend(f"add {name} {m}" for m in sorted(want.members))
                result.created += 1
                continue
            added, removed = want.members - have.members, have.members - want.members
            if len(added) + len(removed) <= SMALL_DELTA:
                lines.extend(f"add {name} {m}" for m in sorted(added))
                lines.extend(f"del {name} {m}" for m in sorted(removed))
                result.changed_in_place += 1
            else:
                temp = "vpt" + name[3:]
                lines.append(_create_line(temp, want))
                lines.append(f"flush {temp}")  # a temp set left by a crash may hold anything
                lines.extend(f"add {temp} {m}" for m in sorted(want.members))
                lines.append(f"swap {temp} {name}")
                lines.append(f"destroy {temp}")
                result.swapped += 1
        if not lines:
            return result
        result.calls = 1
        try:
            self.runner.run(["ipset", "-exist", "restore"], stdin="\n".join(lines) + "\n", timeout=120)
        except CommandError as exc:
            self._actual = None
            result.error = f"ipset restore failed: {exc}"
            return result
        for kset in touched:
            actual[kset.name] = kset
        return result

    def apply_deletes(self) -> IPSetResult:
        """Destroy our sets that are no longer desired (after iptables stopped using them)."""
        result = IPSetResult()
        actual = self._actual
        if actual is None:
            try:
                actual = self._actual = self.read_back()
            except CommandError as exc:
                result.error = f"cannot read IP sets: {exc}"
                return result
        stale = sorted(n for n in actual if n not in self.desired)
        if not stale:
            return result
        result.calls = 1
        try:
            self.runner.run(["ipset", "-exist", "restore"],
                            stdin="".join(f"flush {n}\ndestroy {n}\n" for n in stale), timeout=60)
        except CommandError as exc:
            self._actual = None
            result.error = f"cannot destroy IP sets {', '.join(stale)}: {exc}"
            return result
        for name in stale:
            actual.pop(name, None)
        result.destroyed = len(stale)
        return result


def read_ipset_save(lines: Iterable[str]) -> dict[str, KernelSet]:
    """Our sets (by name pattern) from `ipset save` output, read a line at a time; other sets
    are not ours to judge (their members are not kept)."""
    types = {v: k for k, v in KERNEL_TYPES.items()}
    meta: dict[str, tuple[IPSetType, int]] = {}
    members: dict[str, set[str]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "create" and IPSET_NAME_RE.match(parts[1]):
            set_type = types.get(parts[2])
            if set_type is None:
                set_type = IPSetType.IP  # not a type we create: it differs from any desired set
            family = 6 if "inet6" in parts else 4
            meta[parts[1]] = (set_type, family)
            members[parts[1]] = set()
        elif len(parts) >= 3 and parts[0] == "add" and parts[1] in meta:
            members[parts[1]].add(canonical_from_kernel(meta[parts[1]][0], parts[2]))
    return {n: KernelSet(n, t, f, frozenset(members[n])) for n, (t, f) in meta.items()}
