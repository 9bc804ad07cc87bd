"""CNI Add/Del on VPP, and bringing pods back after VPP restarts.

Connection errors propagate (the driver reconnects and retries once); VPP's refusals become
AttachError, which the CNI server answers with.

Add, in an order that never leaves a pod open: create the interface (tagged with the workload
id) → bind its ACLs (the endpoint's lists if Felix has sent it, else drop-everything) → IP on it
(unnumbered to the pod gateway, IPv6 enabled: ip.py) → admin up → routes to its addresses →
addresses, routes and gateway neighbours inside the pod → static neighbours for the pod in VPP. Any failure
undoes what was done and answers the CNI plugin with the reason.

Del: find the interface (from memory, else from VPP's dumps and the pod's veth), remove its
routes, the interface (VPP drops its ACL bindings and sessions with it) and the veth, then delete
ACLs nobody uses any more.

VPP restart: VPP forgets every interface. For pods this agent attached, `restore` re-creates the
VPP side (af_packet on the surviving veth; a new tap in the pod, re-addressed) before the resync
binds policy to it.

The attacher never calls the driver: what it needs from it (the programmed picture, read on
demand; the lists a new pod gets; forgetting an interface's classifier attachment) comes in as
callables.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path

from vppagent.drivers.vpp.acl.apply import apply_plan
from vppagent.drivers.vpp.acl.plan import Wanted, plan_some
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.types import RouteTarget
from vppagent.drivers.vpp.failures import Failures, Owner
from vppagent.drivers.vpp.pods.interfaces import FoundPod, PodInterfaces, PodKind, PodRecord
from vppagent.drivers.vpp.pods.ip import add_neighbors, disable_ip, enable_ip
from vppagent.drivers.vpp.pods.linux import Plumbing
from vppagent.drivers.vpp.pods.rxmode import settle_rx_modes
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.routes import sync_routes
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import AttachError, Attachment
from vppagent.state.model import Kind, WorkloadKey

log = logging.getLogger(__name__)


class PodAttacher:
    def __init__(self, calls: VppCalls, kind: PodKind, plumbing: Plumbing, *,
                 programmed: Callable[[], Programmed], lists_for: Callable[[WorkloadKey], Wanted],
                 interface_gone: Callable[[int], None]) -> None:
        """`programmed`: what VPP holds (reconnecting and reading it if needed); `lists_for`: the
        ACL contents a new pod of that workload gets; `interface_gone`: called with an interface
        about to be deleted."""
        self.calls = calls
        self.plumbing = plumbing
        self.interfaces = PodInterfaces(calls, kind, plumbing)
        self.records: dict[str, PodRecord] = {}
        self._programmed = programmed
        self._lists_for = lists_for
        self._interface_gone = interface_gone

    # -- CNI Add -----------------------------------------------------------------------------------
    def attach(self, spec: PodSpec) -> Attachment:
        try:
            programmed = self._programmed()
            stale = programmed.pod_interfaces().get(workload_tag(spec.workload))
            if stale is not None:  # a retried Add: start clean
                self._remove(programmed, self._found_for(programmed, stale, spec))
            sw_if_index = self.interfaces.create(spec)
            try:
                self._bring_up(programmed, spec, sw_if_index)
                mac = self.plumbing.configure_container(spec)
                add_neighbors(self.calls, spec, sw_if_index, mac)
            except BaseException:
                self._undo(programmed, spec, sw_if_index)
                raise
        except ApiRefused as exc:
            raise AttachError(f"pod {spec.workload}: {exc}") from None
        self.records[workload_tag(spec.workload)] = PodRecord(spec, self.interfaces.kind, sw_if_index, mac)
        return Attachment(spec.host_ifname, mac)

    def _bring_up(self, programmed: Programmed, spec: PodSpec, sw_if_index: int) -> None:
        details = self.calls.interfaces(sw_if_index)
        name, dev_type = (details[0].name, details[0].dev_type) if details else ("", "")
        programmed.interfaces[sw_if_index] = InterfaceInfo(sw_if_index, name, workload_tag(spec.workload), dev_type)
        owner: Owner = (Kind.WORKLOAD_ENDPOINT, spec.workload)
        failed = self.bind(programmed, {sw_if_index: self._lists_for(spec.workload)}, {sw_if_index: owner})
        if failed or programmed.binding(sw_if_index) == (None, None):
            raise AttachError(f"pod {spec.workload}: policy not bound: {failed.get(owner, 'unknown')}")
        enable_ip(self.calls, programmed, sw_if_index)
        self.interfaces.admin_up(sw_if_index)
        routes = {ipaddress.ip_network((a.ip, a.max_prefixlen)): RouteTarget(sw_if_index=sw_if_index)
                  for a in spec.addresses}
        failed = sync_routes(self.calls, programmed, routes, set(), {p: owner for p in routes})
        if failed:
            raise AttachError(f"pod {spec.workload}: {failed[owner]}")

    def bind(self, programmed: Programmed, wanted: dict[int, Wanted], owners: dict[int, Owner]) -> Failures:
        """Bind `wanted` (others pinned), then delete ACLs nobody uses."""
        return apply_plan(self.calls, programmed, owners, plan_some(programmed, wanted))

    def _undo(self, programmed: Programmed, spec: PodSpec, sw_if_index: int) -> None:
        try:
            self._remove(programmed, FoundPod(self.interfaces.kind, sw_if_index, spec.host_ifname))
        except Exception:  # the original error matters more; the next Add or Del cleans up
            log.exception("pod %s: rollback incomplete", spec.workload)

    # -- CNI Del -----------------------------------------------------------------------------------
    def detach(self, request: PodDelete) -> str | None:
        try:
            programmed = self._programmed()
            found = self._find(programmed, request)
            if found is None:
                return None
            self._remove(programmed, found)
        except ApiRefused as exc:
            raise AttachError(f"CNI Del {request.netns} {request.container_ifname}: {exc}") from None
        return found.host_ifname

    def _find(self, programmed: Programmed, request: PodDelete) -> FoundPod | None:
        for tag, record in list(self.records.items()):
            spec = record.spec
            if str(spec.netns) == request.netns and spec.container_ifname == request.container_ifname:
                current = programmed.pod_interfaces().get(tag)
                if current is not None:
                    return self._found_for(programmed, current, spec)
                del self.records[tag]
        return self.interfaces.find(request)

    def _found_for(self, programmed: Programmed, sw_if_index: int, spec: PodSpec) -> FoundPod:
        info = programmed.interfaces.get(sw_if_index)
        kind: PodKind = "tap" if info is not None and info.dev_type == "virtio" else "af_packet"
        return FoundPod(kind, sw_if_index, spec.host_ifname)

    def _remove(self, programmed: Programmed, found: FoundPod) -> None:
        if found.kind != "veth":
            routes = {p for p, t in programmed.routes.items() if t.sw_if_index == found.sw_if_index}
            sync_routes(self.calls, programmed, {}, routes, {})
            known = programmed.interfaces.get(found.sw_if_index)
            record = self.records.get(known.tag) if known is not None else None
            if known is not None:  # a pod interface we saw; without a record its neighbours go with it
                disable_ip(self.calls, programmed, found.sw_if_index,
                           list(record.spec.addresses) if record is not None else [],
                           record.container_mac if record is not None else "")
        self._interface_gone(found.sw_if_index)  # before: VPP refuses a detach from a deleted interface
        self.interfaces.delete(found)
        info = programmed.interfaces.pop(found.sw_if_index, None)
        if info is not None:
            self.records.pop(info.tag, None)
        self.bind(programmed, {}, {})  # ACLs only that pod used go now

    def settle_rx_modes(self, programmed: Programmed) -> int:
        """Interrupt rx-mode on af_packet pod interfaces found in another mode (rxmode.py)."""
        return settle_rx_modes(self.calls, programmed)

    # -- VPP restarted ----------------------------------------------------------------------------
    def restore(self, programmed: Programmed) -> bool:
        """Re-create missing interfaces of pods attached here; True if any was re-created."""
        present = programmed.pod_interfaces()
        changed = False
        for tag, record in list(self.records.items()):
            if tag in present:
                record.sw_if_index = present[tag]
                continue
            spec = record.spec
            if not _exists(spec.netns) or (record.kind == "af_packet"
                                           and not self.plumbing.host_link_exists(spec.host_ifname)):
                log.info("pod %s is gone; not restoring it", spec.workload)
                del self.records[tag]
                continue
            try:
                if record.kind == "tap":
                    record.sw_if_index = self.interfaces.create(spec, "tap")
                else:
                    record.sw_if_index = self.interfaces.create_on_existing_veth(spec)
                self._bring_up(programmed, spec, record.sw_if_index)
                if record.kind == "tap":  # a new tap device appeared in the pod, unconfigured
                    record.container_mac = self.plumbing.configure_container(spec)
                add_neighbors(self.calls, spec, record.sw_if_index, record.container_mac)
            except (AttachError, ApiRefused) as exc:
                log.error("pod %s: could not restore its VPP interface: %s", spec.workload, exc)
                continue
            log.info("pod %s: VPP interface re-created as %d", spec.workload, record.sw_if_index)
            changed = True
        return changed


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # not ours to look at: as good as gone
        return False
