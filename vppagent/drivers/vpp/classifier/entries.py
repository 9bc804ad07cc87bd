"""Regions as classifier entries (gate.py): a box of TCP/UDP to service ports with any source
port is one match per destination-port block (source prefix, destination prefix, protocol,
port value under a 16-bit mask), and anything else does not fit the classifier (`Unfit`)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from vppagent.policy.boxes import Box
from vppagent.policy.model import TCP, UDP, IPNetwork

EPHEMERAL_START = 32768


@dataclass(frozen=True, order=True)
class GapEntry:
    """One classifier match: source (peer) prefix, destination (pod side) prefix, protocol, and a
    destination-port block (value under a 16-bit mask). Any source port."""

    family: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    dport: int
    dport_mask: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.family, self.src.prefixlen, self.dst.prefixlen, self.dport_mask)

    def key(self) -> tuple[int, int, int, int, int, int, int, int]:
        """The entry as integers, in GapEntry's order (computed once: comparing and hashing
        ipaddress objects costs more than the rest of a gate's set operations on entries)."""
        found: tuple[int, int, int, int, int, int, int, int] | None = self.__dict__.get("_key")
        if found is None:
            found = (self.family, int(self.src.network_address), self.src.prefixlen, int(self.dst.network_address),
                     self.dst.prefixlen, self.proto, self.dport, self.dport_mask)
            object.__setattr__(self, "_key", found)
        return found

    def __hash__(self) -> int:
        return hash(self.key())


class Unfit(Exception):
    """A region the classifier cannot hold exactly (too ragged, or not TCP/UDP to service ports)."""


def check_service_ports(boxes: list[Box]) -> None:
    """Only TCP/UDP, any source port, destination ports below EPHEMERAL_START (docs: "Scope")."""
    for box in boxes:  # (by index: this runs for every piece of every region)
        if box[4] != box[5] or box[4] not in (TCP, UDP) or box[6] != 0 or box[7] != 65535 \
                or box[9] >= EPHEMERAL_START:
            raise Unfit("not TCP/UDP to service ports")


def entries(family: int, boxes: list[Box]) -> list[GapEntry]:
    check_service_ports(boxes)
    out: list[GapEntry] = []
    for box in boxes:
        out += _box_entries(family, box)
    return out


@functools.lru_cache(maxsize=1 << 16)
def _box_entries(family: int, box: Box) -> tuple[GapEntry, ...]:
    """(Remembered: every set of a list asks for the same drop boxes, three times; the same
    entry objects also hash once.)"""
    src, dst = net(family, box.src, box.src_len), net(family, box.dst, box.dst_len)
    return tuple(GapEntry(family, src, dst, box.proto_lo, value, mask)
                 for value, mask in port_blocks(box.b_lo, box.b_hi))


@functools.lru_cache(maxsize=65536)
def net(family: int, address: int, length: int) -> IPNetwork:
    if family == 4:
        return ipaddress.IPv4Network((address, length))
    return ipaddress.IPv6Network((address, length))


def port_blocks(first: int, last: int) -> list[tuple[int, int]]:
    """[first, last] as aligned power-of-two blocks: (value, 16-bit mask) pairs."""
    out = []
    while first <= last:
        size = first & -first if first else 1 << 16
        while first + size - 1 > last:
            size >>= 1
        out.append((first, 0xFFFF & ~(size - 1)))
        first += size
    return out
