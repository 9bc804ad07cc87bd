"""How the driver's classifier tables match: byte offsets from the IP header, masks and matches,
the hit/miss actions, and the mark on every session the driver adds (read.py says why)."""

from __future__ import annotations

import ipaddress

from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.policy.model import IPNetwork

OUR_OPAQUE = 0x76706131  # "vpa1": the mark on every classifier session the driver adds
PERMIT = NO_INDEX  # hit/miss next index: continue (the packet passes this feature)
DROP = 0
# Offsets from the IP header: (protocol, source, destination, destination port), vectors to match.
LAYOUT = {4: (9, 12, 16, 22, 2), 6: (6, 8, 24, 42, 3)}


def match_bytes(family: int, *, proto: int = 0, src: IPNetwork | None = None, dst: IPNetwork | None = None,
                dport: int = 0, full: bool = False) -> bytes:
    """A match (values) or, with full=True, a mask (ones where the value matters)."""
    proto_at, src_at, dst_at, dport_at, vectors = LAYOUT[family]
    out = bytearray(vectors * 16)
    if proto:
        out[proto_at] = 0xFF if full else proto
    for net, at in ((src, src_at), (dst, dst_at)):
        if net is not None and net.prefixlen:
            raw = net.netmask.packed if full else net.network_address.packed
            out[at:at + len(raw)] = raw
    if dport:
        out[dport_at:dport_at + 2] = dport.to_bytes(2, "big")
    return bytes(out)


def mask_net(family: int, length: int) -> IPNetwork:
    return ipaddress.ip_network(("0.0.0.0" if family == 4 else "::", length))


def member_mask(family: int, length: int) -> bytes:
    """The mask of a member table: the source prefix of `length` bits only."""
    return match_bytes(family, src=mask_net(family, length), full=True)


def source_length(family: int, mask: bytes) -> int:
    """The source prefix length a mask holds."""
    src_at = LAYOUT[family][1]
    return sum(bin(byte).count("1") for byte in mask[src_at:src_at + (4 if family == 4 else 16)])


def member_address(family: int, match: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The source address a member table's session matches."""
    src_at = LAYOUT[family][1]
    size = 4 if family == 4 else 16
    return ipaddress.ip_address(match[src_at:src_at + size])
