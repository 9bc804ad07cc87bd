"""Proxy ARP and ND proxy (``proxy_arp_*``, ``ip6nd_proxy_*``), as the driver uses them for the
Services' source-NAT address (vppagent/drivers/vpp/services/proxy.py).

After VPP ``src/vnet/arp/arp_proxy.c``, ``arp_api.c``, ``src/vnet/ip6-nd/ip6_nd_proxy.c`` and
``ip6_nd_api.c`` (26.06; the same in 25.10), checked against a running 26.06
(``tests/vppsim/fidelity_sequences.py``, ``seq_snat_proxy``):
- proxy ARP ranges are one global list of (FIB, low, high), in the order added: adding one already
  there changes nothing and answers 0, deleting one not there answers NO_SUCH_ENTRY, a table id with
  no IPv4 table NO_SUCH_FIB. Nothing checks that low <= high. The dump gives them in order, with
  the table id;
- proxy ARP per interface is a flag: enable and disable are idempotent (0), an interface that does not
  exist answers INVALID_SW_IF_INDEX; the dump lists the enabled interfaces by index. VPP keeps the
  flag of a deleted interface (no delete hook), and so does the emulator;
- an ND proxy entry is a /128 FIB entry of source "IPv6-proxy-nd" through the interface: add and delete
  are idempotent (0; a delete of what is not there too), a missing interface is INVALID_SW_IF_INDEX; the
  dump gives one entry per address, sorted, with its (first) interface. VPP itself sends these details
  under the module-relative message id (no client can read them; the driver does not dump ND
  entries); the emulator sends them as the definition says, for tests to inspect.
ARP and ND packets are not emulated.
"""

from __future__ import annotations

import ipaddress

from vppagent.drivers.vpp.api.errors import OK, ApiError
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceTable
from vppagent.vppsim.routes import Fib


class Proxies:
    def __init__(self, interfaces: InterfaceTable, fib: Fib) -> None:
        self._interfaces = interfaces
        self._fib = fib
        self.arp_ranges: list[tuple[int, bytes, bytes]] = []  # (table id, low, high), in order added
        self.arp_interfaces: set[int] = set()
        self.nd: dict[ipaddress.IPv6Address, list[int]] = {}  # address -> interfaces (paths), in order added

    def handlers(self) -> dict[str, Handler]:
        return {
            "proxy_arp_add_del": self.arp_add_del,
            "proxy_arp_dump": self.arp_dump,
            "proxy_arp_intfc_enable_disable": self.arp_interface,
            "proxy_arp_intfc_dump": self.arp_interface_dump,
            "ip6nd_proxy_add_del": self.nd_add_del,
            "ip6nd_proxy_dump": self.nd_dump,
        }

    def on_interface_deleted(self, sw_if_index: int) -> None:
        # The FIB entry's path through a deleted interface goes with it; the proxy ARP flag stays.
        for address in list(self.nd):
            paths = [i for i in self.nd[address] if i != sw_if_index]
            if paths:
                self.nd[address] = paths
            else:
                del self.nd[address]

    def arp_add_del(self, request: Request) -> list[Reply]:
        proxy = request.fields["proxy"]
        table_id = int(proxy["table_id"])
        if (False, table_id) not in self._fib.tables:
            return retval_reply("proxy_arp_add_del_reply", ApiError.NO_SUCH_FIB)
        entry = (table_id, bytes(proxy["low"]), bytes(proxy["hi"]))
        if entry in self.arp_ranges:
            if not request.fields["is_add"]:
                self.arp_ranges.remove(entry)
            return retval_reply("proxy_arp_add_del_reply", OK)
        if not request.fields["is_add"]:
            return retval_reply("proxy_arp_add_del_reply", ApiError.NO_SUCH_ENTRY)
        self.arp_ranges.append(entry)
        return retval_reply("proxy_arp_add_del_reply", OK)

    def arp_dump(self, request: Request) -> list[Reply]:
        return [("proxy_arp_details", {"proxy": {"table_id": table_id, "low": low, "hi": high}})
                for table_id, low, high in self.arp_ranges]

    def arp_interface(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("proxy_arp_intfc_enable_disable_reply", ApiError.INVALID_SW_IF_INDEX)
        if request.fields["enable"]:
            self.arp_interfaces.add(sw_if_index)
        else:
            self.arp_interfaces.discard(sw_if_index)
        return retval_reply("proxy_arp_intfc_enable_disable_reply", OK)

    def arp_interface_dump(self, request: Request) -> list[Reply]:
        return [("proxy_arp_intfc_details", {"sw_if_index": i}) for i in sorted(self.arp_interfaces)]

    def nd_add_del(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("ip6nd_proxy_add_del_reply", ApiError.INVALID_SW_IF_INDEX)
        address = ipaddress.IPv6Address(bytes(request.fields["ip"]))
        paths = self.nd.setdefault(address, [])
        if request.fields["is_add"] and sw_if_index not in paths:
            paths.append(sw_if_index)
        elif not request.fields["is_add"] and sw_if_index in paths:
            paths.remove(sw_if_index)
        if not paths:
            del self.nd[address]
        return retval_reply("ip6nd_proxy_add_del_reply", OK)

    def nd_dump(self, request: Request) -> list[Reply]:
        return [("ip6nd_proxy_details", {"sw_if_index": self.nd[address][0], "ip": address.packed})
                for address in sorted(self.nd)]
