"""IP on an interface: unnumbered, IPv6 enable, static neighbours (what makes a pod interface route).

After VPP 25.10:
- ``sw_interface_set_unnumbered`` (``vnet/interface_api.c``): the field names are backwards —
  ``unnumbered_sw_if_index`` is the interface that borrows, ``sw_if_index`` the one lending its
  addresses.  An invalid borrower answers INVALID_SW_IF_INDEX; an invalid lender only on add
  (INVALID_SW_IF_INDEX_2); removing is unconditional.
- ``sw_interface_ip6_enable_disable`` (``vnet/ip/ip_api.c`` → ``ip6_link_enable``/``ip6_link_disable``
  in ``vnet/ip/ip6_link.c``): in 25.10 enabling needs an Ethernet interface (local0 → UNSUPPORTED; a
  running 26.06 enables local0 too, see ``release.py``); enabling
  again answers VALUE_EXIST *and still takes a lock*, so each enable needs its disable; disabling a
  link that is not enabled answers IP6_NOT_ENABLED.  The link-local address comes from the MAC
  (EUI-64, u bit flipped).  Deleting the interface drops the link whatever its locks.
- ``ip_neighbor_add_del`` (``vnet/ip-neighbor/ip_neighbor_api.c``): the neighbour's interface is
  validated (INVALID_SW_IF_INDEX); add creates or updates (flags without STATIC mean dynamic);
  deleting an absent entry answers NO_SUCH_ENTRY (``ip_neighbor_del``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.addresses import IPAddress, decode_address
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceKind, InterfaceTable

IP_NEIGHBOR_FLAG_STATIC = 1


@dataclass(frozen=True)
class Neighbor:
    mac: bytes
    static: bool
    stats_index: int


def link_local_from_mac(mac: bytes) -> ipaddress.IPv6Address:
    """``ip6_link_local_address_from_mac``: fe80::/64 + EUI-64 of the MAC with the u bit inverted."""
    interface_id = bytes([mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]])
    return ipaddress.IPv6Address(bytes([0xFE, 0x80]) + bytes(6) + interface_id)


class IpLinks:
    def __init__(self, interfaces: InterfaceTable, *, ip6_needs_ethernet: bool) -> None:
        self._interfaces = interfaces
        self._ip6_needs_ethernet = ip6_needs_ethernet
        self.unnumbered: dict[int, int] = {}  # borrowing interface -> interface lending addresses
        self.ip6_locks: dict[int, int] = {}  # interface -> ip6 link locks (enabled while > 0)
        self.neighbors: dict[tuple[int, IPAddress], Neighbor] = {}
        self._next_stats_index = 0

    def on_interface_deleted(self, sw_if_index: int) -> None:
        self.unnumbered.pop(sw_if_index, None)
        self.ip6_locks.pop(sw_if_index, None)  # ip6_link_interface_add_del: forced clean-up
        for key in [k for k in self.neighbors if k[0] == sw_if_index]:
            del self.neighbors[key]

    def ip6_enabled(self, sw_if_index: int) -> bool:
        return self.ip6_locks.get(sw_if_index, 0) > 0

    def link_local(self, sw_if_index: int) -> ipaddress.IPv6Address | None:
        interface = self._interfaces.get(sw_if_index)
        if interface is None or not self.ip6_enabled(sw_if_index):
            return None
        return link_local_from_mac(interface.mac)

    def handlers(self) -> dict[str, Handler]:
        return {
            "sw_interface_set_unnumbered": self.sw_interface_set_unnumbered,
            "sw_interface_ip6_enable_disable": self.sw_interface_ip6_enable_disable,
            "ip_neighbor_add_del": self.ip_neighbor_add_del,
        }

    def sw_interface_set_unnumbered(self, request: Request) -> list[Reply]:
        reply = "sw_interface_set_unnumbered_reply"
        borrower = request.fields["unnumbered_sw_if_index"]
        lender = request.fields["sw_if_index"]
        if not self._interfaces.exists(borrower):
            return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX)
        if request.fields["is_add"]:
            if not self._interfaces.exists(lender):
                return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX_2)
            self.unnumbered[borrower] = lender
        else:
            self.unnumbered.pop(borrower, None)
        return retval_reply(reply, OK)

    def sw_interface_ip6_enable_disable(self, request: Request) -> list[Reply]:
        reply = "sw_interface_ip6_enable_disable_reply"
        sw_if_index = request.fields["sw_if_index"]
        interface = self._interfaces.get(sw_if_index)
        if interface is None:
            return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX)
        locks = self.ip6_locks.get(sw_if_index, 0)
        if request.fields["enable"]:
            if self._ip6_needs_ethernet and interface.kind is InterfaceKind.LOCAL:  # not an Ethernet interface
                return retval_reply(reply, ApiError.UNSUPPORTED)
            self.ip6_locks[sw_if_index] = locks + 1
            return retval_reply(reply, ApiError.VALUE_EXIST if locks else OK)
        if not locks:
            return retval_reply(reply, ApiError.IP6_NOT_ENABLED)
        if locks == 1:
            del self.ip6_locks[sw_if_index]
        else:
            self.ip6_locks[sw_if_index] = locks - 1
        return retval_reply(reply, OK)

    def ip_neighbor_add_del(self, request: Request) -> list[Reply]:
        reply = "ip_neighbor_add_del_reply"
        neighbor = request.fields["neighbor"]
        sw_if_index = neighbor["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX, stats_index=NO_INDEX)
        address = decode_address(neighbor["ip_address"])
        key = (sw_if_index, address)
        if not request.fields["is_add"]:
            if self.neighbors.pop(key, None) is None:
                return retval_reply(reply, ApiError.NO_SUCH_ENTRY, stats_index=NO_INDEX)
            return retval_reply(reply, OK, stats_index=NO_INDEX)
        existing = self.neighbors.get(key)
        stats_index = existing.stats_index if existing is not None else self._take_stats_index()
        self.neighbors[key] = Neighbor(bytes(neighbor["mac_address"]),
                                       bool(neighbor["flags"] & IP_NEIGHBOR_FLAG_STATIC), stats_index)
        return retval_reply(reply, OK, stats_index=stats_index)

    def _take_stats_index(self) -> int:
        index = self._next_stats_index
        self._next_stats_index += 1
        return index

