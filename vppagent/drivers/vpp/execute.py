"""Carry out ACL plans and route changes through the connection, keeping `Programmed` true.

A refused request (ApiRefused) fails the endpoints it was for and the rest goes on; requests that
depend on it are skipped (an interface is not bound to an ACL that could not be created, an ACL
still in use is not deleted). A lost connection propagates: nothing after it can be trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vppagent.drivers.vpp.aclplan import AclPlan, AclRef
from vppagent.drivers.vpp.connection import ApiRefused, VppConnection
from vppagent.drivers.vpp.programmed import NO_INDEX, Programmed, RouteTarget
from vppagent.drivers.vpp.render import AclContent
from vppagent.drivers.vpp.tags import acl_tag
from vppagent.policy.model import IPNetwork
from vppagent.state.model import Kind

log = logging.getLogger(__name__)

Owner = tuple[Kind, Any]
Failures = dict[Owner, str]


class AclExecutor:
    def __init__(self, conn: VppConnection, programmed: Programmed, owners: Mapping[int, Owner]) -> None:
        self.conn = conn
        self.programmed = programmed
        self.owners = owners
        self.failed: Failures = {}
        self._resolved: dict[AclRef, int] = {}
        self._broken: dict[AclRef, str] = {}

    def _fail_interface(self, sw_if_index: int, reason: str) -> None:
        owner = self.owners.get(sw_if_index)
        if owner is not None:
            self.failed.setdefault(owner, reason)
        else:
            log.warning("interface %d: %s", sw_if_index, reason)

    def run(self, plan: AclPlan) -> Failures:
        users = self.programmed.users_of_our_acls()
        in_use = {a for ifx in users for a in (*self.programmed.interfaces[ifx].acls_in,
                                                 *self.programmed.interfaces[ifx].acls_out)}
        # Unused ACLs taking new content and new ACLs first: movers bind to them next.
        for index, content in plan.replaces.items():
            if index not in in_use:
                self._write_acl(index, index, content)
        for ref, content in plan.creates.items():
            self._write_acl(ref, NO_INDEX, content)
        for sw_if_index, refs in plan.early_binds.items():
            self._bind(sw_if_index, refs)
        for index, content in plan.replaces.items():
            if index in in_use:
                self._write_acl(index, index, content)
        for sw_if_index, refs in plan.late_binds.items():
            self._bind(sw_if_index, refs)
        still_used = {a for ifx in self.programmed.users_of_our_acls()
                      for a in (*self.programmed.interfaces[ifx].acls_in,
                                *self.programmed.interfaces[ifx].acls_out)}
        for index in plan.deletes:
            if index in still_used or index not in self.programmed.acls:
                continue
            try:
                self.conn.call("acl_del", acl_index=index, what=f"ACL {index}")
                del self.programmed.acls[index]
            except ApiRefused as exc:
                log.warning("stale ACL %d not deleted: %s", index, exc)  # retried on the next pass
        return self.failed

    def _write_acl(self, ref: AclRef, index: int, content: AclContent) -> None:
        try:
            reply = self.conn.call("acl_add_replace", acl_index=index, tag=acl_tag(content.digest),
                                   count=len(content), r=content.wire(),
                                   what=f"ACL {acl_tag(content.digest)}, {len(content)} rules")
        except ApiRefused as exc:
            self._broken[ref] = str(exc)
            for sw_if_index in self._interfaces_using(index):
                self._fail_interface(sw_if_index, str(exc))
            return
        self._resolved[ref] = int(reply.acl_index)
        self.programmed.acls[int(reply.acl_index)] = content

    def _interfaces_using(self, index: int) -> list[int]:
        if index == NO_INDEX:
            return []
        return [i.sw_if_index for i in self.programmed.interfaces.values() if index in (*i.acls_in, *i.acls_out)]

    def _resolve(self, ref: AclRef | None) -> int | None:
        if ref is None:
            return None
        if ref in self._broken:
            raise KeyError(self._broken[ref])
        return self._resolved.get(ref, ref)

    def _bind(self, sw_if_index: int, refs: tuple[AclRef | None, AclRef | None]) -> None:
        try:
            acl_in, acl_out = self._resolve(refs[0]), self._resolve(refs[1])
        except KeyError as exc:
            self._fail_interface(sw_if_index, f"not bound: {exc.args[0]}")
            return
        acls = [a for a in (acl_in, acl_out) if a is not None]
        try:
            self.conn.call("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=len(acls),
                           n_input=0 if acl_in is None else 1, acls=acls,
                           what=f"interface {sw_if_index}")
        except ApiRefused as exc:
            self._fail_interface(sw_if_index, str(exc))
            return
        self.programmed.set_binding(sw_if_index, acl_in, acl_out)


def route_message(prefix: IPNetwork, target: RouteTarget | None) -> dict[str, Any]:
    """`vl_api_ip_route_t` for table 0; no target = delete the prefix."""
    route: dict[str, Any] = {"table_id": 0, "prefix": str(prefix), "n_paths": 0, "paths": []}
    if target is not None:
        family = "ip6" if prefix.version == 6 else "ip4"
        next_hop = str(target.next_hop) if target.next_hop is not None else ("::" if family == "ip6" else "0.0.0.0")
        route["n_paths"] = 1
        route["paths"] = [{
            "sw_if_index": NO_INDEX if target.sw_if_index is None else target.sw_if_index,
            "table_id": 0, "weight": 1, "preference": 0, "type": 0, "flags": 0,
            "proto": 1 if prefix.version == 6 else 0, "nh": {"address": {family: next_hop}},
            "n_labels": 0, "label_stack": [{}] * 16,  # vpp_papi needs the fixed array spelled out
        }]
    return route


def sync_routes(conn: VppConnection, programmed: Programmed, wanted: Mapping[IPNetwork, RouteTarget],
                ours: set[IPNetwork], owners: Mapping[IPNetwork, Owner]) -> Failures:
    """Add what is missing (an add replaces a different path for the prefix), delete our stale."""
    failed: Failures = {}
    for prefix, target in sorted(wanted.items(), key=lambda item: (item[0].version, item[0])):
        if programmed.routes.get(prefix) == target:
            continue
        try:
            conn.call("ip_route_add_del", is_add=True, is_multipath=False, route=route_message(prefix, target),
                      what=f"route {prefix} {target}")
        except ApiRefused as exc:
            owner = owners.get(prefix)
            if owner is not None:
                failed.setdefault(owner, str(exc))
            continue
        programmed.routes[prefix] = target
    for prefix in sorted(ours - wanted.keys(), key=lambda p: (p.version, p)):
        if prefix not in programmed.routes:
            continue
        try:
            conn.call("ip_route_add_del", is_add=False, is_multipath=False, route=route_message(prefix, None),
                      what=f"route {prefix}")
        except ApiRefused as exc:
            log.warning("stale route %s not deleted: %s", prefix, exc)
            continue
        del programmed.routes[prefix]
    return failed
