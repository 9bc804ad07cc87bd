"""Writing an ACL plan (plan.py) to VPP, keeping `Programmed` true: where ACLs get written,
bound to interfaces and deleted.

A refused request (ApiRefused) fails the endpoints it was for and the rest goes on; requests that
depend on it are skipped (an interface is not bound to an ACL that could not be created, an ACL
still in use is not deleted). A lost connection propagates: nothing after it can be trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from vppagent.drivers.vpp.acl.plan import AclPlan, AclRef
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import AclContent
from vppagent.drivers.vpp.failures import Failures, Owner
from vppagent.drivers.vpp.programmed import Programmed
from vppagent.drivers.vpp.tags import acl_tag

log = logging.getLogger(__name__)


def apply_plan(calls: VppCalls, programmed: Programmed, owners: Mapping[int, Owner], plan: AclPlan) -> Failures:
    """Carry out `plan` in make-before-break order; `owners`: interface → the endpoint it serves."""
    return _PlanRun(calls, programmed, owners).run(plan)


class _PlanRun:
    def __init__(self, calls: VppCalls, programmed: Programmed, owners: Mapping[int, Owner]) -> None:
        self.calls = calls
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
        in_use = self.programmed.acls_in_use()
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
        still_used = self.programmed.acls_in_use()
        for index in plan.deletes:
            if index in still_used or index not in self.programmed.acls:
                continue
            try:
                self.calls.acl_del(index)
                del self.programmed.acls[index]
            except ApiRefused as exc:
                log.warning("stale ACL %d not deleted: %s", index, exc)  # retried on the next pass
        return self.failed

    def _write_acl(self, ref: AclRef, index: int, content: AclContent) -> None:
        try:
            written = self.calls.acl_add_replace(index, acl_tag(content.digest), content)
        except ApiRefused as exc:
            self._broken[ref] = str(exc)
            for sw_if_index in self._interfaces_using(index):
                self._fail_interface(sw_if_index, str(exc))
            return
        self._resolved[ref] = written
        self.programmed.acls[written] = content

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
        try:
            self.calls.set_acl_list(sw_if_index, acl_in, acl_out)
        except ApiRefused as exc:
            self._fail_interface(sw_if_index, str(exc))
            return
        self.programmed.set_binding(sw_if_index, acl_in, acl_out)
