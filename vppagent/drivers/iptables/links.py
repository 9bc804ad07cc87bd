"""Interface name -> index for every link of the current network namespace, from one netlink dump.

Not if_nameindex(3): glibc collects the whole RTM_GETLINK dump in memory before it walks it,
and each link's message carries its statistics and attributes (~1.5 KB), so on a node with
20,000 links (10,000 workload veths and their peers in the benchmark) that is a transient
~30 MB in the agent, its peak after a resync. Here the dump is read a buffer at a time into one
reused buffer and only the index and the name are taken from each message; it is no slower
(measured 0.085 s against 0.116 s for 20,000 links). Not pyroute2: it decodes every attribute
in Python (docs/kernel-driver.md). Runs in whatever namespace the calling thread is in.
"""

from __future__ import annotations

import socket
import struct

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_GETLINK = 16, 18
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_IFLA_IFNAME = 3
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_BUFFER = 1 << 18  # the kernel fills a dump message up to 32 KB; room to spare
_ATTEMPTS = 5  # a dump interrupted by a link change is read again


def link_indexes() -> dict[str, int]:
    """{name: ifindex} of every link, like {n: i for i, n in socket.if_nameindex()}."""
    for _ in range(_ATTEMPTS):
        links, interrupted = _dump()
        if not interrupted:
            return links
    # Links keep changing (pods coming and going): glibc's answer is no more consistent than
    # ours, but it is one answer, and the next apply reads again.
    return {name: index for index, name in socket.if_nameindex()}


def _dump() -> tuple[dict[str, int], bool]:
    links: dict[str, int] = {}
    interrupted = False
    buffer = bytearray(_BUFFER)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        request = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(_HEADER.pack(_HEADER.size + len(request), _RTM_GETLINK, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
                  + request)
        while True:
            size = sock.recv_into(buffer, _BUFFER, socket.MSG_TRUNC)
            if size > _BUFFER:
                raise OSError(f"netlink link dump: a {size}-byte message does not fit the buffer")
            offset = 0
            while offset + _HEADER.size <= size:
                length, kind, flags, _seq, _pid = _HEADER.unpack_from(buffer, offset)
                if length < _HEADER.size:
                    raise OSError("netlink link dump: malformed message")
                interrupted = interrupted or bool(flags & _NLM_F_DUMP_INTR)
                if kind == _NLMSG_DONE:
                    return links, interrupted
                if kind == _NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", buffer, offset + _HEADER.size)[0]
                    raise OSError(errno, f"netlink link dump failed: {errno}")
                if kind == _RTM_NEWLINK:
                    _take_link(buffer, offset, length, links)
                offset += (length + 3) & ~3


def _take_link(buffer: bytearray, offset: int, length: int, links: dict[str, int]) -> None:
    index = _IFINFO.unpack_from(buffer, offset + _HEADER.size)[2]
    attr, end = offset + _HEADER.size + _IFINFO.size, offset + length
    while attr + _ATTR.size <= end:
        attr_length, attr_type = _ATTR.unpack_from(buffer, attr)
        if attr_length < _ATTR.size:
            return
        if attr_type == _IFLA_IFNAME:
            links[bytes(buffer[attr + _ATTR.size:attr + attr_length]).rstrip(b"\0").decode()] = index
            return
        attr += (attr_length + 3) & ~3
