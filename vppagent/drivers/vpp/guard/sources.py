"""What a pod may send from, and how a guard table matches it (pure).

A pod sends from its own addresses (the endpoint's ipv4_nets / ipv6_nets), from the prefixes its
`allowed_spoofed_sources` names (Calico's cni.projectcalico.org/allowedSourcePrefixes), and in
IPv6 from link-local addresses (fe80::/10: neighbour discovery to VPP's link-local and the like).
Every other source is spoofed. The one home of that list is policy/reach.py's `egress_sources`,
which the egress lists are restricted to as well: the guard is what makes that restriction exact.

A guard table matches the source address under a prefix mask, one table per distinct prefix
length. Its masks cover only the vectors (16 bytes each) that hold the source, counted from the
IP header: one vector in IPv4 (source at byte 12), two in IPv6 (source at byte 8), so a lookup
hashes no more than it needs, and a guard table's mask never looks like a gate table's (those
span two or three vectors with the protocol or ports: classifier/layout.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping

from vppagent.policy.model import IPNetwork, WorkloadEndpoint
from vppagent.policy.reach import egress_sources

# The mark on every guard session ("vpag"); the gate's sessions carry another (classifier/layout.py),
# so neither reads the other's tables as its own.
GUARD_OPAQUE = 0x76706167
# But the head's drop session for the unspecified address: it carries the identity of the
# interface the chain was attached to ("g" and 24 bits of a digest of its tag and name), so a chain
# VPP still records for an index whose interface was deleted and re-created is not taken for the
# new interface's guard (guards.py says why that matters).
_IDENTITY_BYTE = 0x67
HOST_LENGTH = {4: 32, 6: 128}
# The head table of every guard chain is the host-length one and holds a drop session for the
# unspecified address: the chain then always has a session carrying the mark (a family with no
# address of its own still has a chain: it drops everything), and the head never has to move.
UNSPECIFIED = {4: ipaddress.ip_network("0.0.0.0/32"), 6: ipaddress.ip_network("::/128")}
_SOURCE_AT = {4: 12, 6: 8}  # the source address's offset in the IP header
_VECTORS = {4: 1, 6: 2}
_SIZE = {4: 4, 6: 16}

GuardSources = Mapping[int, frozenset[IPNetwork]]  # family -> the prefixes a pod may send from


def guard_sources(ep: WorkloadEndpoint) -> GuardSources:
    """Both families' permitted source prefixes (a family the pod has no address in: empty)."""
    nets: dict[int, set[IPNetwork]] = {4: set(), 6: set()}
    for net in egress_sources(ep):
        nets[net.version].add(net)
    return {family: frozenset(found) for family, found in nets.items()}


def identity_mark(tag: str, name: str) -> int:
    """The opaque the head's drop session carries on the interface with this tag and name."""
    digest = hashlib.sha256(f"{tag}\0{name}".encode()).digest()
    return _IDENTITY_BYTE << 24 | int.from_bytes(digest[:3], "big")


def is_identity_mark(opaque: int) -> bool:
    return opaque >> 24 == _IDENTITY_BYTE


def sources_key(ep: WorkloadEndpoint) -> Hashable:
    """What `guard_sources` depends on: endpoints with equal keys have equal guard sources."""
    return (ep.ipv4_nets, ep.ipv6_nets, ep.allowed_spoofed_sources)


def by_length(family: int, sources: Iterable[IPNetwork]) -> dict[int, set[IPNetwork]]:
    """Sources per prefix length; the host length is always there (the chain's head)."""
    out: dict[int, set[IPNetwork]] = defaultdict(set)
    out[HOST_LENGTH[family]] = set()
    for net in sources:
        out[net.prefixlen].add(net)
    return dict(out)


def mask_of(family: int, length: int) -> bytes:
    return _MASKS[family][length]


def _mask(family: int, length: int) -> bytes:
    out = bytearray(_VECTORS[family] * 16)
    if length:
        net = ipaddress.ip_network(("0.0.0.0" if family == 4 else "::", length))
        at = _SOURCE_AT[family]
        out[at:at + _SIZE[family]] = net.netmask.packed
    return bytes(out)


# Every guard mask, made once: reading 6,000 guard tables back asked for 346,000 masks (~3 s).
_MASKS = {family: [_mask(family, length) for length in range(host + 1)] for family, host in HOST_LENGTH.items()}
_LENGTHS = {family: {mask: length for length, mask in enumerate(masks)} for family, masks in _MASKS.items()}


def match_of(net: IPNetwork) -> bytes:
    family = net.version
    out = bytearray(_VECTORS[family] * 16)
    at = _SOURCE_AT[family]
    out[at:at + _SIZE[family]] = net.network_address.packed
    return bytes(out)


def length_of(family: int, mask: bytes) -> int | None:
    """The prefix length a guard mask of `family` matches, or None when `mask` is no such mask."""
    return _LENGTHS[family].get(bytes(mask))


def source_of(family: int, length: int, match: bytes) -> IPNetwork:
    at = _SOURCE_AT[family]
    address = ipaddress.ip_address(match[at:at + _SIZE[family]])
    return ipaddress.ip_network((address, length), strict=False)
