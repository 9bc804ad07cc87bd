"""IP set members in canonical form, and Felix's rules for updating them.

Felix compares members in canonical form (felix/ipsets CanonicaliseMember): an `IP` set keeps
only the address (a "/nn" suffix is dropped, never expanded), a `NET` set holds CIDRs with the
host bits masked (a bare address is a /32 or /128), an `IP_AND_PORT` set holds
"ip,proto:port" with proto one of tcp/udp/sctp. Deltas apply adds first, then removes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class IPSetType(IntEnum):
    """Values of felix.IPSetUpdate.IPSetType."""

    IP = 0
    IP_AND_PORT = 1
    NET = 2


PORT_PROTOCOLS = ("tcp", "udp", "sctp")


class MemberError(ValueError):
    """A member string that is not valid for its set type."""


def canonical_member(set_type: IPSetType, member: str) -> str:
    """The canonical string for a member, or MemberError naming what is wrong."""
    text = member.strip()
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


@dataclass(frozen=True)
class IPSet:
    """An IP set as the dataplane must hold it: canonical members, plus any it could not parse.

    Invalid members are kept (not silently dropped) so that validation can hold back the set
    and every policy that uses it: dropping a member could make a negated match more permissive.
    """

    id: str
    type: IPSetType
    members: frozenset[str]
    invalid: tuple[str, ...] = ()

    @staticmethod
    def build(set_id: str, set_type: int, members: Iterable[str]) -> IPSet:
        kind = IPSetType(set_type)
        good: set[str] = set()
        bad: list[str] = []
        for m in members:
            try:
                good.add(canonical_member(kind, m))
            except MemberError:
                bad.append(m)
        return IPSet(set_id, kind, frozenset(good), tuple(sorted(set(bad))))

    def with_delta(self, added: Iterable[str], removed: Iterable[str]) -> IPSet:
        """Felix's order: adds, then removes (a member both added and removed ends up absent)."""
        members = set(self.members)
        bad = set(self.invalid)
        for m in added:
            try:
                members.add(canonical_member(self.type, m))
            except MemberError:
                bad.add(m)
        for m in removed:
            try:
                members.discard(canonical_member(self.type, m))
            except MemberError:
                bad.discard(m)
        return IPSet(self.id, self.type, frozenset(members), tuple(sorted(bad)))

    def sorted_members(self) -> list[str]:
        return sorted(self.members)
