"""IP tables and routes (``ip_table_add_del``, ``ip_route_add_del``, their dumps).

After VPP ``src/vnet/ip/ip_api.c`` and ``src/vnet/fib/fib_api.c``, checked against a running 26.06:
- a path through an interface that does not exist is refused with UNKNOWN_DESTINATION (-54), on
  a delete too, so a route whose interface has gone (it stays in the FIB) is removed by prefix
  alone (``n_paths`` 0);
- a host prefix (/32, /128) through an interface with no next hop is an attached host route: it
  reads back with the prefix's own address as next hop;
- a path's weight 0 reads back as 1;
- a delete with paths removes the whole entry unless ``is_multipath``.
Every table has its default route (``0.0.0.0/0`` or ``::/0``, a drop path) from creation, like
``fib_table_create``; interface-derived (attached/local) entries and the other special entries VPP
keeps are not emulated, so dumps list API routes plus the default.

Neighbours (iplink.py) add their adjacency entry: the neighbour's /32 or /128 in its interface's
table, one path through the interface with the address as next hop, FIB source "adjacency". An
entry with an API route too is the API's (its best source: API has the higher priority), so
``ip_route_dump`` shows a neighbour's entry exactly like an attached host route, before the API
route is added and after it is deleted. ``ip_route_v2_dump`` says each entry's best source
(``src``) and, with a non-zero ``src``, lists only entries whose best source it is (checked on
26.06: with ``src`` = adjacency an entry that also has an API route is not listed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.addresses import InvalidPrefix, IPAddress, IPNetwork, decode_prefix, encode_prefix
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceTable

FIB_API_PATH_TYPE_DROP = 2
FIB_API_PATH_NH_PROTO_IP4 = 0
FIB_API_PATH_NH_PROTO_IP6 = 1
# fib_source_t values as `show fib source` lists them in 26.06 (compile-time, not in the API JSON)
FIB_SOURCE_API = 8
FIB_SOURCE_ADJACENCY = 15
FIB_SOURCE_DEFAULT_ROUTE = 20


@dataclass
class IpTable:
    table_id: int
    is_ip6: bool
    name: str
    routes: dict[IPNetwork, list[dict[str, Any]]] = field(default_factory=dict)


def _path_identity(path: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two paths the same path for removal (next hop, interface, table)."""
    return (path["sw_if_index"], path["table_id"], path["type"], path["proto"],
            bytes(path["nh"]["address"]["ip6"]))


def _normalised_path(path: dict[str, Any], prefix: IPNetwork) -> dict[str, Any]:
    """A path as VPP hands it back: the next-hop union arm chosen by the path's protocol, an attached
    host route's next hop the prefix itself, weight at least 1."""
    normal = dict(path)
    nh = dict(path["nh"])
    arms = nh["address"]
    ip6 = path["proto"] == FIB_API_PATH_NH_PROTO_IP6
    address = arms["ip6"] if ip6 else arms["ip4"]
    host = prefix.prefixlen == prefix.max_prefixlen
    if host and path["sw_if_index"] != NO_INDEX and not any(address):
        address = prefix.network_address.packed
    nh["address"] = {"ip6": address} if ip6 else {"ip4": address}
    normal["nh"] = nh
    normal["weight"] = path["weight"] or 1
    return normal


class Fib:
    def __init__(self, interfaces: InterfaceTable,
                 neighbours: Callable[[], Iterable[tuple[int, IPAddress]]] = lambda: ()) -> None:
        """`neighbours`: the (interface, address) of every neighbour, for their adjacency entries."""
        self._interfaces = interfaces
        self._neighbours = neighbours
        self.tables: dict[tuple[bool, int], IpTable] = {}
        for is_ip6 in (False, True):
            self._create(0, is_ip6, "")

    def _create(self, table_id: int, is_ip6: bool, name: str) -> IpTable:
        default_name = name or f"ipv{6 if is_ip6 else 4}-VRF:{table_id}"
        table = IpTable(table_id, is_ip6, default_name)
        self.tables[(is_ip6, table_id)] = table
        return table

    def handlers(self) -> dict[str, Handler]:
        return {
            "ip_table_add_del": self.ip_table_add_del,
            "ip_table_dump": self.ip_table_dump,
            "ip_route_add_del": self.ip_route_add_del,
            "ip_route_dump": self.ip_route_dump,
            "ip_route_v2_dump": self.ip_route_v2_dump,
        }

    def ip_table_add_del(self, request: Request) -> list[Reply]:
        table = request.fields["table"]
        key = (bool(table["is_ip6"]), table["table_id"])
        if request.fields["is_add"]:
            if key not in self.tables:
                self._create(table["table_id"], key[0], table["name"])
        elif key[1] != 0:
            # Table 0 is never deleted; deleting an unknown table is a no-op.
            self.tables.pop(key, None)
        return retval_reply("ip_table_add_del_reply", OK)

    def ip_table_dump(self, request: Request) -> list[Reply]:
        return [("ip_table_details", {"table": {"table_id": t.table_id, "is_ip6": t.is_ip6, "name": t.name}})
                for t in sorted(self.tables.values(), key=lambda t: (t.is_ip6, t.table_id))]

    def ip_route_add_del(self, request: Request) -> list[Reply]:
        route = request.fields["route"]
        reply = "ip_route_add_del_reply"
        try:
            prefix = decode_prefix(route["prefix"], strict=False)
        except InvalidPrefix:
            return retval_reply(reply, ApiError.INVALID_VALUE)
        table = self.tables.get((prefix.version == 6, route["table_id"]))
        if table is None:
            return retval_reply(reply, ApiError.NO_SUCH_FIB)
        if any(p["sw_if_index"] != NO_INDEX and not self._interfaces.exists(p["sw_if_index"])
               for p in route["paths"]):
            return retval_reply(reply, ApiError.UNKNOWN_DESTINATION)
        paths = [_normalised_path(path, prefix) for path in route["paths"]]
        if request.fields["is_add"]:
            if not paths:
                return retval_reply(reply, ApiError.NO_PATHS_IN_ROUTE)
            if request.fields["is_multipath"]:
                existing = table.routes.setdefault(prefix, [])
                known = {_path_identity(_full(p)) for p in existing}
                existing.extend(p for p in paths if _path_identity(_full(p)) not in known)
            else:
                table.routes[prefix] = paths
        elif request.fields["is_multipath"] and paths:
            removed = {_path_identity(_full(p)) for p in paths}
            remaining = [p for p in table.routes.get(prefix, []) if _path_identity(_full(p)) not in removed]
            if remaining:
                table.routes[prefix] = remaining
            else:
                table.routes.pop(prefix, None)
        else:
            table.routes.pop(prefix, None)
        return retval_reply(reply, OK, stats_index=0)

    def ip_route_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["table"]
        table = self.tables.get((bool(wanted["is_ip6"]), wanted["table_id"]))
        if table is None:
            return []
        return [("ip_route_details", {"route": {
            "table_id": table.table_id, "prefix": encode_prefix(prefix.network_address, prefix.prefixlen),
            "n_paths": len(paths), "paths": paths}})
            for prefix, (_, paths) in self._entries(table)]

    def ip_route_v2_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["table"]
        table = self.tables.get((bool(wanted["is_ip6"]), wanted["table_id"]))
        if table is None:
            return []
        src = request.fields["src"]
        return [("ip_route_v2_details", {"route": {
            "table_id": table.table_id,
            "stats_index": NO_INDEX if source == FIB_SOURCE_ADJACENCY else 0,  # unresolved until used
            "prefix": encode_prefix(prefix.network_address, prefix.prefixlen),
            "n_paths": len(paths), "src": source, "paths": paths}})
            for prefix, (source, paths) in self._entries(table) if not src or src == source]

    def _entries(self, table: IpTable) -> list[tuple[IPNetwork, tuple[int, list[dict[str, Any]]]]]:
        """Every entry with its best source and that source's paths, in VPP's dump order."""
        default = ipaddress.ip_network("::/0" if table.is_ip6 else "0.0.0.0/0")
        proto = FIB_API_PATH_NH_PROTO_IP6 if table.is_ip6 else FIB_API_PATH_NH_PROTO_IP4
        entries: dict[IPNetwork, tuple[int, list[dict[str, Any]]]] = {default: (FIB_SOURCE_DEFAULT_ROUTE, [{
            "sw_if_index": 0xFFFFFFFF, "type": FIB_API_PATH_TYPE_DROP, "proto": proto}])}
        for sw_if_index, address in self._neighbours():
            interface = self._interfaces.get(sw_if_index)
            if interface is None or (address.version == 6) != table.is_ip6 \
                    or interface.table_id(table.is_ip6) != table.table_id:
                continue
            host = ipaddress.ip_network(address)
            entries[host] = (FIB_SOURCE_ADJACENCY, [{
                "sw_if_index": sw_if_index, "weight": 1, "proto": proto,
                "nh": {"address": {"ip6" if table.is_ip6 else "ip4": address.packed}}}])
        entries.update((prefix, (FIB_SOURCE_API, paths)) for prefix, paths in table.routes.items())
        return sorted(entries.items(), key=lambda item: (item[0].prefixlen, item[0]))


def _full(path: dict[str, Any]) -> dict[str, Any]:
    nh_address = path["nh"]["address"]
    ip6 = nh_address.get("ip6") or nh_address.get("ip4", b"").ljust(16, b"\x00")
    return {**path, "nh": {**path["nh"], "address": {"ip6": ip6}}}
