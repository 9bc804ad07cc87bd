"""What VPP holds that the driver cares about: read back with dumps, kept current by the writes.

Read at connect, after every reconnect, and on each resync; between resyncs the writers update it
after each successful write, so an apply needs no dumps. Only objects with our tags count as ours:
ACLs tagged `vpa1:acl:`, interfaces tagged `vpa1:wl` (pods). Routes carry no tags: which routes
are ours is decided in routes.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.types import AclContent, InterfaceDetails, RouteTarget
from vppagent.drivers.vpp.tags import is_our_acl, is_workload_tag
from vppagent.policy.model import IPAddress, IPNetwork

Binding = tuple[int | None, int | None]  # (input ACL, output ACL); None: no ACL of ours
AF_PACKET_DEV_TYPE = "af-packet"  # interface_dev_type of an af_packet interface, as VPP reports it
LOCAL_DEV_TYPE = "local"  # interface_dev_type of local0


@dataclass
class InterfaceInfo:
    sw_if_index: int
    name: str
    tag: str
    dev_type: str
    acls_in: list[int] = field(default_factory=list)
    acls_out: list[int] = field(default_factory=list)

    @staticmethod
    def of(details: InterfaceDetails) -> InterfaceInfo:
        return InterfaceInfo(details.sw_if_index, details.name, details.tag, details.dev_type)

    @property
    def is_pod(self) -> bool:
        return is_workload_tag(self.tag)

    @property
    def is_local(self) -> bool:
        return self.dev_type == LOCAL_DEV_TYPE


@dataclass
class Programmed:
    acls: dict[int, AclContent] = field(default_factory=dict)  # our ACLs only
    foreign_acls: set[int] = field(default_factory=set)
    interfaces: dict[int, InterfaceInfo] = field(default_factory=dict)
    routes: dict[IPNetwork, RouteTarget] = field(default_factory=dict)  # table 0, single-path only
    # non-pod interfaces: their addresses with the subnets on them
    interface_prefixes: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = field(default_factory=dict)

    def interface_addresses(self, sw_if_index: int) -> list[IPAddress]:
        """The (non-pod) interface's own addresses, IPv4 first."""
        return [prefix.ip for prefix in self.interface_prefixes.get(sw_if_index, ())]

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

    def share_contents(self, contents: Iterable[AclContent]) -> None:
        """Each ACL whose content equals one of `contents` holds that very object from now on (same
        value): the plan and the converge then compare contents by identity, not rule by rule
        (read back, or compiled anew, equal lists are distinct objects; each is compared once here)."""
        by_digest = {c.digest: c for c in contents}
        for index, held in self.acls.items():
            found = by_digest.get(held.digest)
            if found is not None and found is not held and found == held:
                self.acls[index] = found

    def users_of_our_acls(self) -> set[int]:
        """Interfaces with any of our ACLs bound."""
        return {i.sw_if_index for i in self.interfaces.values()
                if any(a in self.acls for a in (*i.acls_in, *i.acls_out))}

    def acls_in_use(self) -> set[int]:
        """Every ACL index bound to an interface that uses one of ours."""
        return {a for ifx in self.users_of_our_acls()
                for a in (*self.interfaces[ifx].acls_in, *self.interfaces[ifx].acls_out)}


def read_programmed(calls: VppCalls) -> Programmed:
    """Dump ACLs, interface ACL lists, interfaces (with addresses of non-pod ones) and table-0 routes."""
    out = Programmed()
    for acl in calls.acl_dump():
        if is_our_acl(acl.tag):
            out.acls[acl.index] = acl.content
        else:
            out.foreign_acls.add(acl.index)
    refresh_interfaces(calls, out)
    uplinks = [info.sw_if_index for info in out.interfaces.values() if not info.is_pod and not info.is_local]
    out.interface_prefixes = dict(zip(uplinks, calls.batches.interface_prefixes_of(uplinks), strict=True))
    out.routes = calls.routes()
    return out


def refresh_interfaces(calls: VppCalls, programmed: Programmed) -> None:
    """Re-read interfaces and their ACL lists (pods attached by someone else appear here)."""
    interfaces = {d.sw_if_index: InterfaceInfo.of(d) for d in calls.interfaces()}
    for sw_if_index, (acls_in, acls_out) in calls.interface_acls().items():
        info = interfaces.get(sw_if_index)
        if info is not None:
            info.acls_in, info.acls_out = acls_in, acls_out
    programmed.interfaces = interfaces
