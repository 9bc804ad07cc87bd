"""Send a reference-evaluator Packet as a real Ethernet frame, and watch for it on another link.

Frames are written with AF_PACKET (no ARP, routing or socket state in the sender's way), with
correct IP and L4 checksums, because conntrack drops bad checksums as INVALID. The receiver
recognises a packet by its addresses, protocol and ports (or ICMP type).
"""

from __future__ import annotations

import ipaddress
import json
import random
import select
import socket
import struct
import time
from collections.abc import Callable

from tests.kernel.netlab import in_netns, sh
from vppagent.policy.packet import Packet

ETH_P_ALL = 0x0003
Key = tuple[int, str, str, int, int]


def mac_of(ns: str, iface: str) -> bytes:
    info = json.loads(sh("ip", "-n", ns, "-j", "link", "show", iface))
    return bytes.fromhex(info[0]["address"].replace(":", ""))


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _l4(pkt: Packet) -> bytes:
    """Transport header and a little payload, checksum field zero (filled in by frame())."""
    if pkt.proto == 6:  # a SYN
        return struct.pack("!HHIIBBHHH", pkt.src_port, pkt.dst_port, random.getrandbits(32), 0, 5 << 4, 0x02,
                           65535, 0, 0)
    if pkt.proto == 17:
        return struct.pack("!HHHH", pkt.src_port, pkt.dst_port, 16, 0) + b"vppagent"
    if pkt.proto in (1, 58):
        return struct.pack("!BBHHH", pkt.icmp_type, pkt.icmp_code, 0, random.getrandbits(16), 1) + b"\0" * 12
    if pkt.proto == 47:
        return struct.pack("!HH", 0, 0x0800) + b"\0" * 8
    if pkt.proto == 4:  # an inner IPv4 header
        inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 64, 59, 0, bytes(4), bytes(4))
        return inner
    return b"\0" * 8


_CSUM_OFFSET = {6: 16, 17: 6, 1: 2, 58: 2}


def frame(pkt: Packet, dst_mac: bytes, src_mac: bytes) -> bytes:
    l4 = bytearray(_l4(pkt))
    src, dst = pkt.src.packed, pkt.dst.packed
    if pkt.proto in _CSUM_OFFSET:
        if pkt.proto == 1:
            pseudo = b""  # ICMPv4 has no pseudo-header
        elif pkt.family == 4:
            pseudo = src + dst + struct.pack("!BBH", 0, pkt.proto, len(l4))
        else:
            pseudo = src + dst + struct.pack("!IxxxB", len(l4), pkt.proto)
        struct.pack_into("!H", l4, _CSUM_OFFSET[pkt.proto], _csum(pseudo + bytes(l4)))
    if pkt.family == 4:
        v4 = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), random.getrandbits(16), 0x4000, 64,
                                       pkt.proto, 0, src, dst))
        struct.pack_into("!H", v4, 10, _csum(bytes(v4)))
        return dst_mac + src_mac + b"\x08\x00" + bytes(v4) + bytes(l4)
    header = struct.pack("!IHBB16s16s", 6 << 28, len(l4), pkt.proto, 64, src, dst)
    return dst_mac + src_mac + b"\x86\xdd" + header + bytes(l4)


def key_of(pkt: Packet) -> Key:
    if pkt.proto in (6, 17):
        return (pkt.proto, str(pkt.src), str(pkt.dst), pkt.src_port, pkt.dst_port)
    if pkt.is_icmp:
        return (pkt.proto, str(pkt.src), str(pkt.dst), pkt.icmp_type, pkt.icmp_code)
    return (pkt.proto, str(pkt.src), str(pkt.dst), 0, 0)


def parse(data: bytes) -> Key | None:
    ethertype = data[12:14]
    if ethertype == b"\x08\x00":
        ihl = (data[14] & 0x0F) * 4
        proto, src, dst, l4 = data[23], data[26:30], data[30:34], data[14 + ihl:]
    elif ethertype == b"\x86\xdd":
        proto, src, dst, l4 = data[20], data[22:38], data[38:54], data[54:]
    else:
        return None
    a, b = str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
    if proto in (6, 17) and len(l4) >= 4:
        return (proto, a, b, *struct.unpack("!HH", l4[:4]))
    if proto in (1, 58) and len(l4) >= 2:
        return (proto, a, b, l4[0], l4[1])
    return (proto, a, b, 0, 0)


def open_capture(ns: str, iface: str) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((iface, 0))
        s.setblocking(False)
        return s

    return in_netns(ns, make)


def sender(ns: str, iface: str) -> Callable[[bytes], None]:
    s = in_netns(ns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
    s.bind((iface, 0))
    def send(data: bytes) -> None:
        s.send(data)

    return send


def collect(capture: socket.socket, wanted: set[Key], timeout: float, expected: set[Key] | None = None,
            patience: float = 0.0) -> set[Key]:
    """The wanted keys seen on the capture socket within `timeout` (returns early when all are).
    While a key of `expected` (packets that should arrive) is still missing, it goes on watching,
    up to `patience` seconds in all: under load an allowed packet can be late (neighbour
    discovery, a busy CPU), and watching longer only gives a packet that must not arrive more time
    to be caught."""
    seen: set[Key] = set()
    start = time.monotonic()
    while seen != wanted:
        late = expected is not None and not expected <= seen
        left = start + (max(timeout, patience) if late else timeout) - time.monotonic()
        if left <= 0:
            break
        if not select.select([capture], [], [], left)[0]:
            continue  # the deadline is checked again: the expected packets may have come meanwhile
        while True:
            try:
                data, addr = capture.recvfrom(65535)
            except BlockingIOError:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            key = parse(data)
            if key in wanted:
                seen.add(key)
    return seen


def drain(capture: socket.socket) -> None:
    while True:
        try:
            capture.recv(65535)
        except BlockingIOError:
            return
