"""What VPP holds that the driver cares about, read back with dumps (and kept current by the driver).

Read at connect, after every reconnect, and on each resync; between resyncs the driver updates it
after each successful write, so an apply needs no dumps. Only objects with our tags count as ours:
ACLs tagged `vpa1:acl:`, interfaces tagged `vpa1:wl` (pods). Routes carry no tags: a route is ours
when its path goes through one of our pod interfaces (or an interface that no longer exists), or
when the driver made it (remote blocks, also recognised after a restart inside an IPAM pool).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.vpp.aclplan import Binding
from vppagent.drivers.vpp.connection import VppConnection
from vppagent.drivers.vpp.render import AclContent, content_from_details
from vppagent.drivers.vpp.tags import is_our_acl, is_workload_tag
from vppagent.policy.model import IPAddress, IPNetwork

log = logging.getLogger(__name__)

NO_INDEX = 0xFFFFFFFF


@dataclass(frozen=True)
class RouteTarget:
    """A single-path route: through an interface (attached) or via a next hop."""

    sw_if_index: int | None = None
    next_hop: IPAddress | None = None

    def __str__(self) -> str:
        return f"dev {self.sw_if_index}" if self.sw_if_index is not None else f"via {self.next_hop}"


@dataclass
class InterfaceInfo:
    sw_if_index: int
    name: str
    tag: str
    dev_type: str
    acls_in: list[int] = field(default_factory=list)
    acls_out: list[int] = field(default_factory=list)

    @property
    def is_pod(self) -> bool:
        return is_workload_tag(self.tag)


@dataclass
class Programmed:
    acls: dict[int, AclContent] = field(default_factory=dict)  # our ACLs only
    foreign_acls: set[int] = field(default_factory=set)
    interfaces: dict[int, InterfaceInfo] = field(default_factory=dict)
    routes: dict[IPNetwork, RouteTarget] = field(default_factory=dict)  # table 0, single-path only
    interface_addresses: dict[int, list[IPAddress]] = field(default_factory=dict)  # non-pod interfaces

    def pod_interfaces(self) -> dict[str, int]:
        """Workload tag → sw_if_index."""
        return {i.tag: i.sw_if_index for i in self.interfaces.values() if i.is_pod}

    def binding(self, sw_if_index: int) -> Binding:
        """The interface's ACLs as the planner sees them: one ACL of ours per direction, or None."""
        info = self.interfaces.get(sw_if_index)
        if info is None:
            return (None, None)

        def single(vector: list[int]) -> int | None:
            return vector[0] if len(vector) == 1 and vector[0] in self.acls else None

        return (single(info.acls_in), single(info.acls_out))

    def set_binding(self, sw_if_index: int, acl_in: int | None, acl_out: int | None) -> None:
        info = self.interfaces.get(sw_if_index)
        if info is not None:
            info.acls_in = [] if acl_in is None else [acl_in]
            info.acls_out = [] if acl_out is None else [acl_out]

    def users_of_our_acls(self) -> set[int]:
        """Interfaces with any of our ACLs bound."""
        return {i.sw_if_index for i in self.interfaces.values()
                if any(a in self.acls for a in (*i.acls_in, *i.acls_out))}


def read_programmed(conn: VppConnection) -> Programmed:
    """Dump ACLs, interface ACL lists, interfaces and table-0 routes."""
    out = Programmed()
    for details in conn.dump("acl_dump", acl_index=NO_INDEX):
        if is_our_acl(str(details.tag)):
            out.acls[int(details.acl_index)] = content_from_details(details)
        else:
            out.foreign_acls.add(int(details.acl_index))
    refresh_interfaces(conn, out)
    for info in out.interfaces.values():
        if not info.is_pod and info.dev_type != "local":
            out.interface_addresses[info.sw_if_index] = [
                ipaddress.ip_interface(a.prefix).ip for is_ip6 in (False, True)
                for a in conn.dump("ip_address_dump", sw_if_index=info.sw_if_index, is_ipv6=is_ip6)]
    for is_ip6 in (False, True):
        for details in conn.dump("ip_route_dump", table={"table_id": 0, "is_ip6": is_ip6}):
            parsed = _route(details.route)
            if parsed is not None:
                out.routes[parsed[0]] = parsed[1]
    return out


def refresh_interfaces(conn: VppConnection, programmed: Programmed) -> None:
    """Re-read interfaces and their ACL lists (pods attached by someone else appear here)."""
    interfaces: dict[int, InterfaceInfo] = {}
    for details in conn.dump("sw_interface_dump", sw_if_index=NO_INDEX):
        index = int(details.sw_if_index)
        interfaces[index] = InterfaceInfo(index, str(details.interface_name), str(details.tag),
                                          str(details.interface_dev_type))
    for details in conn.dump("acl_interface_list_dump", sw_if_index=NO_INDEX):
        info = interfaces.get(int(details.sw_if_index))
        if info is not None:
            acls = [int(a) for a in details.acls]
            info.acls_in, info.acls_out = acls[:details.n_input], acls[details.n_input:]
    programmed.interfaces = interfaces


def _route(route: Any) -> tuple[IPNetwork, RouteTarget] | None:
    if route.n_paths != 1:
        return None
    path = route.paths[0]
    prefix = ipaddress.ip_network(route.prefix)
    if int(path.type) != 0:  # FIB_API_PATH_TYPE_NORMAL only; drop/local/receive are VPP's own
        return None
    family_nh = path.nh.address.ip6 if prefix.version == 6 else path.nh.address.ip4
    next_hop = ipaddress.ip_address(family_nh)
    if int(path.sw_if_index) != NO_INDEX and int(next_hop) == 0:
        return prefix, RouteTarget(sw_if_index=int(path.sw_if_index))
    if int(path.sw_if_index) == NO_INDEX and int(next_hop) != 0:
        return prefix, RouteTarget(next_hop=next_hop)
    return None
