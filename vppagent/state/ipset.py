"""IP set members in canonical form, and Felix's rules for updating them.

Felix compares members in canonical form (felix/ipsets CanonicaliseMember): an `IP` set keeps
only the address (a "/nn" suffix is dropped, never expanded), a `NET` set holds CIDRs with the
host bits masked (a bare address is a /32 or /128), an `IP_AND_PORT` set holds
"ip,proto:port" with proto one of tcp/udp/sctp. Deltas apply adds first, then removes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from enum import IntEnum


class IPSetType(IntEnum):
    """Values of felix.IPSetUpdate.IPSetType."""

    IP = 0
    IP_AND_PORT = 1
    NET = 2


PORT_PROTOCOLS = ("tcp", "udp", "sctp")


class MemberError(ValueError):
    """A member string that is not valid for its set type."""


def _ipv4_int(text: str) -> int | None:
    """Dotted-quad IPv4 to int, or None to let ipaddress decide (and explain what is wrong).

    The fast path matters: IP set deltas are most of Felix's traffic, and ipaddress costs ~25 us
    a member. Leading zeros go to ipaddress, which refuses them as ambiguous.
    """
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdigit() or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _ipv4_text(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _fast_canonical(set_type: IPSetType, text: str) -> str | None:
    """IPv4 IP and NET members without ipaddress; None for anything else."""
    if set_type == IPSetType.IP_AND_PORT:
        return None
    addr, slash, length_text = text.partition("/")
    value = _ipv4_int(addr)
    if value is None:
        return None
    if set_type == IPSetType.IP:
        return _ipv4_text(value)
    if not slash:
        return f"{_ipv4_text(value)}/32"
    if not length_text.isdigit() or len(length_text) > 2 or int(length_text) > 32:
        return None
    length = int(length_text)
    mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    return f"{_ipv4_text(value & mask)}/{length}"


def canonical_member(set_type: IPSetType, member: str) -> str:
    """The canonical string for a member, or MemberError naming what is wrong."""
    text = member.strip()
    fast = _fast_canonical(set_type, text)
    if fast is not None:
        return fast
    try:
        if set_type == IPSetType.IP:
            return str(ipaddress.ip_address(text.split("/", 1)[0]))
        if set_type == IPSetType.NET:
            return str(ipaddress.ip_network(text, strict=False))
        addr, _, proto_port = text.partition(",")
        proto, _, port = proto_port.partition(":")
        proto = proto.lower()
        if proto not in PORT_PROTOCOLS:
            raise MemberError(f"member {member!r}: protocol must be one of {', '.join(PORT_PROTOCOLS)}")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise MemberError(f"member {member!r}: port must be 0-65535")
        return f"{ipaddress.ip_address(addr)},{proto}:{int(port)}"
    except ValueError as exc:
        if isinstance(exc, MemberError):
            raise
        raise MemberError(f"member {member!r} is not valid for a {set_type.name} set: {exc}") from None


@dataclass(eq=True)
class IPSet:
    """An IP set as the dataplane must hold it: canonical members, plus any it could not parse.

    Invalid members are kept (not silently dropped) so that validation can hold back the set
    and every policy that uses it: dropping a member could make a negated match more permissive.

    Treat it as immutable. The one exception is the fold (`DataplaneState`): a set created by
    the fold and not yet shared (its `owner` is the state's current token) takes further deltas
    in place, so a burst of deltas to a 10k-member set costs one copy, not one per delta.
    """

    id: str
    type: IPSetType
    members: Set[str]
    invalid: tuple[str, ...] = ()
    owner: object | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def build(set_id: str, set_type: int, members: Iterable[str], owner: object | None = None) -> IPSet:
        kind = IPSetType(set_type)
        good: set[str] = set()
        bad: set[str] = set()
        _apply(kind, good, bad, members, ())
        return IPSet(set_id, kind, good, tuple(sorted(bad)), owner)

    def with_delta(self, added: Iterable[str], removed: Iterable[str], owner: object | None = None) -> IPSet:
        """Felix's order: adds, then removes (a member both added and removed ends up absent).

        Mutates in place when `owner` owns this set; otherwise returns a new set owned by `owner`.
        """
        if owner is not None and self.owner is owner and isinstance(self.members, set):
            bad = set(self.invalid)
            _apply(self.type, self.members, bad, added, removed)
            self.invalid = tuple(sorted(bad))
            return self
        members = set(self.members)
        bad = set(self.invalid)
        _apply(self.type, members, bad, added, removed)
        return IPSet(self.id, self.type, members, tuple(sorted(bad)), owner)

    def sorted_members(self) -> list[str]:
        return sorted(self.members)


def _apply(kind: IPSetType, members: set[str], bad: set[str], added: Iterable[str], removed: Iterable[str]) -> None:
    for m in added:
        try:
            members.add(canonical_member(kind, m))
        except MemberError:
            bad.add(m)
    for m in removed:
        try:
            members.discard(canonical_member(kind, m))
        except MemberError:
            bad.discard(m)
