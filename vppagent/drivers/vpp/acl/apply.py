"""Writing an ACL plan (plan.py) to VPP, keeping `Programmed` true: where ACLs get written,
bound to interfaces and deleted.

The plan's steps run in make-before-break order, each step one pipeline (api/batches.py `*_write`:
VPP applies one client's requests in order, and every reply of a step is read before the next
step is sent, so an interface is bound only to an ACL whose content VPP has acknowledged, and an
ACL is replaced only after its departing users' binds were answered). Within a step no request
depends on another: each writes its own ACL or binds its own interface.

A refused request (ApiRefused) fails the endpoints it was for and the rest goes on; requests that
depend on it are skipped (an interface is not bound to an ACL that could not be created, an ACL
still in use is not deleted, and a shared ACL is not replaced in place while an interface that
was to leave it first is still bound to it: that interface would get a list that is neither its
old nor its new one). A lost connection propagates: nothing after it can be trusted.
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

Bind = tuple[AclRef | None, AclRef | None]


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
        self._write_acls([(index, index, content) for index, content in plan.replaces.items() if index not in in_use]
                         + [(ref, NO_INDEX, content) for ref, content in plan.creates.items()])
        self._bind(plan.early_binds)
        stuck = self._stuck_leavers(plan.early_binds)
        for index in sorted(stuck.keys() & plan.replaces.keys()):
            self._hold(index, stuck[index])
        self._write_acls([(index, index, content) for index, content in plan.replaces.items()
                          if index in in_use and index not in stuck])
        self._bind(plan.late_binds)
        still_used = self.programmed.acls_in_use()
        deletes = [index for index in plan.deletes if index not in still_used and index in self.programmed.acls]
        for index, refused in zip(deletes, self.calls.batches.acls_del(deletes) if deletes else [], strict=True):
            if refused is None:
                del self.programmed.acls[index]
            else:
                log.warning("stale ACL %d not deleted: %s", index, refused)  # retried on the next pass
        return self.failed

    def _write_acls(self, writes: list[tuple[AclRef, int, AclContent]]) -> None:
        """Each (ref, index to write, content): one pipeline, every reply read before returning."""
        if not writes:
            return
        results = self.calls.batches.acls_write([(index, acl_tag(content.digest), content)
                                                 for _, index, content in writes])
        users = self._users() if any(isinstance(r, ApiRefused) for r in results) else {}
        for (ref, index, content), written in zip(writes, results, strict=True):
            if isinstance(written, ApiRefused):
                self._broken[ref] = str(written)
                for sw_if_index in users.get(index, ()):
                    self._fail_interface(sw_if_index, str(written))
                continue
            self._resolved[ref] = written
            self.programmed.acls[written] = content

    def _stuck_leavers(self, early: Mapping[int, Bind]) -> dict[int, list[int]]:
        """ACL index → the interfaces that were to leave it before it is replaced in place but are
        still bound to it (their new ACL or their bind was refused)."""
        stuck: dict[int, list[int]] = {}
        for sw_if_index, refs in early.items():
            info = self.programmed.interfaces.get(sw_if_index)
            if info is None:
                continue
            wanted = {self._resolved.get(ref, ref) for ref in refs if ref is not None}
            for index in dict.fromkeys((*info.acls_in, *info.acls_out)):
                if index not in wanted:
                    stuck.setdefault(index, []).append(sw_if_index)
        return stuck

    def _hold(self, index: int, leavers: list[int]) -> None:
        """Keep ACL `index` as it is: replacing it would give the interfaces that could not leave it
        a list that is neither their old nor their new one (fail open). Its users fail (retried on
        the next pass) and nothing is bound to it in this pass."""
        reason = (f"ACL {index} kept as it was: interface(s) {', '.join(map(str, sorted(leavers)))} "
                  "could not leave it")
        self._broken[index] = reason
        for sw_if_index in self._users().get(index, ()):
            self._fail_interface(sw_if_index, reason)

    def _users(self) -> dict[int, list[int]]:
        """ACL index → the interfaces it is bound to (either direction)."""
        out: dict[int, list[int]] = {}
        for info in self.programmed.interfaces.values():
            for index in dict.fromkeys((*info.acls_in, *info.acls_out)):
                out.setdefault(index, []).append(info.sw_if_index)
        return out

    def _resolve(self, ref: AclRef | None) -> int | None:
        if ref is None:
            return None
        if ref in self._broken:
            raise KeyError(self._broken[ref])
        return self._resolved.get(ref, ref)

    def _bind(self, binds: Mapping[int, Bind]) -> None:
        """Each interface's new (input, output) ACLs: one pipeline; those naming an ACL VPP refused
        to write are not sent (they keep what they have and fail)."""
        sendable: list[tuple[int, int | None, int | None]] = []
        for sw_if_index, refs in binds.items():
            try:
                sendable.append((sw_if_index, self._resolve(refs[0]), self._resolve(refs[1])))
            except KeyError as exc:
                self._fail_interface(sw_if_index, f"not bound: {exc.args[0]}")
        if not sendable:
            return
        outcomes = self.calls.batches.acl_lists_write(sendable)
        for (sw_if_index, acl_in, acl_out), refused in zip(sendable, outcomes, strict=True):
            if refused is not None:
                self._fail_interface(sw_if_index, str(refused))
                continue
            self.programmed.set_binding(sw_if_index, acl_in, acl_out)
