"""Packet-space boxes: the algebra under the compiler.

A box is the set of packets of one family whose source is in one prefix, destination in one
prefix, IP protocol in a range, and whose two L4 fields are each in a range. The L4 fields are
read the way the VPP ACL plugin reads them (acl_fill_5tuple_l4_and_pkt_data): source and
destination port for TCP and UDP, type and code for the family's ICMP, and 0 for every other
protocol (SCTP included: VPP does not read SCTP ports). A box with a single protocol is exactly
one VPP ACL rule; anything else is split when it is emitted (see compile.emit_rules).

Prefixes are (address as int, length) so that the hot loops stay in plain integers.
"""

from __future__ import annotations

from typing import NamedTuple

from vppagent.policy.model import ICMP_FOR_FAMILY, MAX_PORT, TCP, UDP
from vppagent.policy.packet import Packet

ANY_PROTO = (1, 255)  # protocol 0 is not a packet protocol here: see Packet
FULL_L4 = (0, MAX_PORT)


class Box(NamedTuple):
    src: int
    src_len: int
    dst: int
    dst_len: int
    proto_lo: int
    proto_hi: int
    a_lo: int  # source port, or ICMP type
    a_hi: int
    b_lo: int  # destination port, or ICMP code
    b_hi: int


def width(family: int) -> int:
    return 32 if family == 4 else 128


def full_box() -> Box:
    return Box(0, 0, 0, 0, *ANY_PROTO, *FULL_L4, *FULL_L4)


def is_full(box: Box) -> bool:
    return box.src_len == 0 and box.dst_len == 0 and (box.proto_lo, box.proto_hi) == ANY_PROTO and \
        (box.a_lo, box.a_hi) == FULL_L4 and (box.b_lo, box.b_hi) == FULL_L4


def l4_fields(pkt: Packet) -> tuple[int, int]:
    """The two L4 values VPP matches for this packet."""
    if pkt.proto in (TCP, UDP):
        return pkt.src_port, pkt.dst_port
    if pkt.proto == ICMP_FOR_FAMILY[pkt.family]:
        return pkt.icmp_type, pkt.icmp_code
    return 0, 0


def _prefix_meet(a: int, alen: int, b: int, blen: int, w: int) -> tuple[int, int] | None:
    """Intersection of two prefixes: the longer one if one contains the other, else None."""
    if alen <= blen:
        return (b, blen) if (b >> (w - alen)) == (a >> (w - alen)) or alen == 0 else None
    return (a, alen) if (a >> (w - blen)) == (b >> (w - blen)) or blen == 0 else None


def intersect(x: Box, y: Box, w: int) -> Box | None:
    # Hot loop of the compiler: cheapest rejections first, no helper calls on the common path.
    xs, xl, ys, yl = x[0], x[1], y[0], y[1]
    if xl <= yl:
        if xl and (ys >> (w - xl)) != (xs >> (w - xl)):
            return None
        src, src_len = ys, yl
    else:
        if yl and (xs >> (w - yl)) != (ys >> (w - yl)):
            return None
        src, src_len = xs, xl
    plo = x[4] if x[4] > y[4] else y[4]
    phi = x[5] if x[5] < y[5] else y[5]
    if plo > phi:
        return None
    xd, xdl, yd, ydl = x[2], x[3], y[2], y[3]
    if xdl <= ydl:
        if xdl and (yd >> (w - xdl)) != (xd >> (w - xdl)):
            return None
        dst, dst_len = yd, ydl
    else:
        if ydl and (xd >> (w - ydl)) != (yd >> (w - ydl)):
            return None
        dst, dst_len = xd, xdl
    alo = x[6] if x[6] > y[6] else y[6]
    ahi = x[7] if x[7] < y[7] else y[7]
    blo = x[8] if x[8] > y[8] else y[8]
    bhi = x[9] if x[9] < y[9] else y[9]
    if alo > ahi or blo > bhi:
        return None
    return Box(src, src_len, dst, dst_len, plo, phi, alo, ahi, blo, bhi)


def covers(outer: Box, inner: Box, w: int) -> bool:
    return (outer.src_len <= inner.src_len and _prefix_meet(outer.src, outer.src_len, inner.src,
                                                             inner.src_len, w) is not None
            and outer.dst_len <= inner.dst_len
            and _prefix_meet(outer.dst, outer.dst_len, inner.dst, inner.dst_len, w) is not None
            and outer.proto_lo <= inner.proto_lo and inner.proto_hi <= outer.proto_hi
            and outer.a_lo <= inner.a_lo and inner.a_hi <= outer.a_hi
            and outer.b_lo <= inner.b_lo and inner.b_hi <= outer.b_hi)


def _prefix_minus(outer: int, olen: int, inner: int, ilen: int, w: int) -> list[tuple[int, int]]:
    """outer \\ inner for inner strictly inside outer: the sibling of each ancestor of inner
    below outer (ilen - olen prefixes, the prefix complement)."""
    pieces = []
    for length in range(olen + 1, ilen + 1):
        shift = w - length
        ancestor = (inner >> shift) << shift
        pieces.append((ancestor ^ (1 << shift), length))
    return pieces


def _range_minus(lo: int, hi: int, cut_lo: int, cut_hi: int) -> list[tuple[int, int]]:
    pieces = []
    if cut_lo > lo:
        pieces.append((lo, cut_lo - 1))
    if cut_hi < hi:
        pieces.append((cut_hi + 1, hi))
    return pieces


def subtract(box: Box, cut: Box, w: int) -> list[Box]:
    """box \\ cut as disjoint boxes (dimension by dimension, narrowing to the overlap).
    (Boxes made with tuple.__new__ rather than _replace: this is the compiler's hottest loop.)"""
    overlap = intersect(box, cut, w)
    if overlap is None:
        return [box]
    new = tuple.__new__
    out: list[Box] = []
    src, src_len, dst, dst_len, plo, phi, alo, ahi, blo, bhi = box
    if overlap[1] > src_len:
        out += [new(Box, (a, n, dst, dst_len, plo, phi, alo, ahi, blo, bhi))
                for a, n in _prefix_minus(src, src_len, overlap[0], overlap[1], w)]
        src, src_len = overlap[0], overlap[1]
    if overlap[3] > dst_len:
        out += [new(Box, (src, src_len, a, n, plo, phi, alo, ahi, blo, bhi))
                for a, n in _prefix_minus(dst, dst_len, overlap[2], overlap[3], w)]
        dst, dst_len = overlap[2], overlap[3]
    out += [new(Box, (src, src_len, dst, dst_len, lo, hi, alo, ahi, blo, bhi))
            for lo, hi in _range_minus(plo, phi, overlap[4], overlap[5])]
    plo, phi = overlap[4], overlap[5]
    out += [new(Box, (src, src_len, dst, dst_len, plo, phi, lo, hi, blo, bhi))
            for lo, hi in _range_minus(alo, ahi, overlap[6], overlap[7])]
    alo, ahi = overlap[6], overlap[7]
    out += [new(Box, (src, src_len, dst, dst_len, plo, phi, alo, ahi, lo, hi))
            for lo, hi in _range_minus(blo, bhi, overlap[8], overlap[9])]
    return out


def subtract_all(boxes: list[Box], cuts: list[Box], w: int, limit: int) -> list[Box] | None:
    """boxes minus the union of cuts; None once the result would exceed `limit` boxes."""
    result = boxes
    for cut in cuts:
        nxt: list[Box] = []
        cs, cl = cut[0], cut[1]
        for b in result:
            # (the source test of intersect, inline: most pieces of a ragged region miss a small cut)
            shift = w - (b[1] if b[1] < cl else cl)
            if shift < w and (b[0] >> shift) != (cs >> shift):
                nxt.append(b)
            else:
                nxt.extend(subtract(b, cut, w))
            if len(nxt) > limit:
                return None
        result = nxt
    return result
