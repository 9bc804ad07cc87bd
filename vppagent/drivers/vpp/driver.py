"""The VPP driver (the `Driver` contract): when to converge, on which connection, under which lock.

It orchestrates and decides nothing about VPP objects: every resync and apply is one pass of
converge.py against `Programmed` (read with dumps on resync and after reconnecting, kept current
by the writes in between); CNI Add/Del go to the pod attacher (pods/attach.py). Kubernetes Services
(`set_services`) are cnat translations, kept by services/sync.py across passes: converged after
every pass and on their own when they change; a Service is "up" only once VPP holds its translations.

Connection: the driver owns no thread. Every report asks to be polled again (`next_run`): after
`keepalive` seconds while VPP answers, `poll` then pings it; when the connection is lost (VPP
restarted, socket gone, a reply timed out) `poll` reconnects with exponential backoff and
resyncs the last state it was given, re-creating the interfaces of pods it attached if VPP lost
them. An apply that finds the connection down tries once to reconnect itself. While VPP cannot be
reached every report says so (`unreachable`), and the agent puts every endpoint in "error".

Sessions: every connection first sets the ACL plugin's `reclassify-sessions` (a CLI setting, no
binary API; VPP forgets it when it restarts) as `reclassify_sessions` says, before anything is read
or written. On (the default), an ACL change re-judges a flow's next packet in the direction that
made its session; off keeps established flows (docs/vpp-driver.md, "The session rule"). A VPP that
refuses it is logged once and named in `status()["reclassify_sessions"]`; the rebinds that clear
sessions stay.

Locking: every VPP conversation happens under `_lock`: the agent's worker calls in (apply,
resync, poll) and so do the CNI server's threads (attach, detach); nothing here calls out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from vppagent.drivers.base import ApplyReport, Driver
from vppagent.drivers.vpp.acl.lists import ListCompiler, lists_for_new_pod
from vppagent.drivers.vpp.acl.plan import Wanted
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import VppConnection, VppConnectionLost, VppUnavailable
from vppagent.drivers.vpp.api.messages import release_of
from vppagent.drivers.vpp.api.types import DENY_ALL
from vppagent.drivers.vpp.classifier.chains import ClassifierChains
from vppagent.drivers.vpp.converge import converge
from vppagent.drivers.vpp.failures import Failures, Owner
from vppagent.drivers.vpp.guard.guards import SourceGuards
from vppagent.drivers.vpp.pods.attach import PodAttacher
from vppagent.drivers.vpp.pods.interfaces import PodKind
from vppagent.drivers.vpp.pods.linux import NetnsPlumbing, Plumbing
from vppagent.drivers.vpp.programmed import Programmed, read_programmed, refresh_interfaces
from vppagent.drivers.vpp.readback import ClassifierTables
from vppagent.drivers.vpp.services.settings import ServiceSettings
from vppagent.drivers.vpp.services.sync import ServicesSync
from vppagent.drivers.vpp.sessions import judge_again, set_reclassify
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import AttachError, Attachment
from vppagent.policy.compile import DEFAULT_RULE_LIMIT
from vppagent.policy.model import IPNetwork, WorkloadEndpoint
from vppagent.services.model import ServiceEntry
from vppagent.state.diff import StateDiff, diff_states
from vppagent.state.model import DataplaneState, Kind, WorkloadKey

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# IP sets this large in an ingress list go to the classifier when the list allows it (gate.py),
# smaller ones when they pay (classifier/source.pays); 0 keeps every set in the ACL.
# docs/vpp-driver.md ("Large IP sets") has the measurements behind the number.
DEFAULT_CLASSIFIER_MIN_MEMBERS = 500


class VppDriver(Driver):
    name = "vpp"
    programs_services = True

    def __init__(self, conn: VppConnection, *, pod_interface: PodKind = "af_packet",
                 plumbing: Plumbing | None = None, rule_limit: int = DEFAULT_RULE_LIMIT,
                 classifier_min_members: int = DEFAULT_CLASSIFIER_MIN_MEMBERS,
                 keepalive: float = 1.0, max_backoff: float = 5.0,
                 service_settings: ServiceSettings | None = None, reclassify_sessions: bool = True) -> None:
        self.conn = conn
        self.service_settings = service_settings or ServiceSettings()
        self.calls = VppCalls(conn)
        self.pod_interface: PodKind = pod_interface
        self.keepalive = keepalive
        self.max_backoff = max_backoff
        self._lock = threading.RLock()
        self._state: DataplaneState | None = None
        self._programmed: Programmed | None = None
        self._compiler = ListCompiler(rule_limit, classifier_min_members)
        self.classifier = ClassifierChains(self.calls)
        self.guards = SourceGuards(self.calls)
        self._made_routes: set[IPNetwork] = set()
        self._unmatched_endpoints: list[str] = []  # tags of endpoints an apply upserts
        self.pods = PodAttacher(self.calls, pod_interface, plumbing or NetnsPlumbing(), programmed=self.programmed,
                                lists_for=self.guarded_lists_for, interface_gone=self._interface_gone)
        self.stats: dict[str, Any] = {"resyncs": 0, "applies": 0, "polls": 0, "reconnects": 0, "last_error": None,
                                      "last_converge": None, "unsupported_routes": 0}
        self._failed: Failures = {}  # what the last convergence could not program (reports are complete)
        self._had_connection = conn.connected  # a later connect is a reconnect
        self._backoff = keepalive  # seconds until the next poll while VPP does not answer
        self._logged_error: str | None = None
        self.services = ServicesSync(conn, self.calls, self.service_settings)
        self.reclassify_sessions = reclassify_sessions
        self._sessions_set = False  # on this connection: the session setting sent (and read back)
        self._judge_again = False  # on this connection: sessions made with the setting off still held
        # "on", "off", or why VPP did not take the setting; None until a connection sets it
        self._reclassify_state: str | None = None
        self._logged_reclassify: str | None = None

    # -- Driver API ------------------------------------------------------------------------------
    def resync(self, state: DataplaneState) -> ApplyReport:
        with self._lock:
            # The compiled lists are a function of the state alone: those the change since the
            # last state given leaves alone are kept (as an apply keeps them); VPP is read anew.
            previous, self._state = self._state, state.copy()
            if previous is None:
                self._compiler.clear()
            else:
                self._compiler.invalidate(diff_states(previous, state), state)
            self.stats["resyncs"] += 1
            return self._converge(reread=True)

    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        with self._lock:
            self._state = state.copy()
            self._compiler.invalidate(diff, state)
            self.stats["applies"] += 1
            self._unmatched_endpoints = [workload_tag(k) for k in diff.upserts.get(Kind.WORKLOAD_ENDPOINT, {})]
            return self._converge(reread=False)

    def remove_all(self) -> ApplyReport:
        """Delete our ACLs, bindings and routes but those to pods. Pod interfaces stay (they belong to their pods,
        whose CNI Del removes them) and keep a drop-everything ACL, so they never become open.

        A swap to a kernel driver cannot move them: a VPP pod's only link is its VPP interface,
        which the kernel driver cannot police or route. They stay isolated (never silently open)
        until re-attached by CNI (pod restart) or a swap back; `status()["stranded_pods"]` lists
        them, and the report's error says so."""
        with self._lock:
            self._state = DataplaneState()
            report = self._converge(reread=True, removing=True)
            self._state = None
            stranded = [] if self._programmed is None else sorted(self._programmed.pod_interfaces().values())
            self.stats["stranded_pods"] = stranded
            if stranded and report.ok:
                report.error = (f"{len(stranded)} pod interface(s) stay in VPP isolated (drop everything): "
                                "the new driver cannot attach them; re-create those pods or swap back")
                log.warning("VPP driver removed: %s (sw_if_index %s)", report.error, stranded)
            return report

    def attach_pod(self, spec: PodSpec) -> Attachment:
        with self._lock:
            return self._retrying(lambda: self.pods.attach(spec), f"CNI Add {spec.workload}")

    def detach_pod(self, request: PodDelete) -> str | None:
        with self._lock:
            return self._retrying(lambda: self.pods.detach(request),
                                  f"CNI Del {request.netns} {request.container_ifname}")

    def set_services(self, services: Mapping[str, ServiceEntry]) -> None:
        with self._lock:
            self.services.give(services)

            def program() -> None:
                self.services.converge(self.programmed(), reread=False)  # connected, VPP's picture known

            try:
                self._twice(program)
                self.services.down = None
            except (VppConnectionLost, VppUnavailable) as exc:
                self.services.down = f"VPP: {exc}"

    def service_errors(self) -> dict[str, str]:
        with self._lock:
            return self.services.errors()

    def _twice(self, action: Callable[[], _T]) -> _T:
        """Run `action`; once more (on a fresh connection) if the first finds the connection dead.
        VppUnavailable (VPP cannot be reached at all) is not retried; what VPP holds is forgotten
        after either error, so the next conversation reads it again."""
        try:
            return action()
        except VppConnectionLost:
            self._programmed = None
        except VppUnavailable:
            self._programmed = None
            raise
        try:
            return action()
        except (VppConnectionLost, VppUnavailable):
            self._programmed = None
            raise

    def _retrying(self, action: Callable[[], _T], what: str) -> _T:
        """A pod operation (`_twice`); a failure becomes AttachError naming the operation."""
        try:
            return self._twice(action)
        except VppConnectionLost as exc:
            raise AttachError(f"{what}: VPP connection lost: {exc}") from None
        except VppUnavailable as exc:
            raise AttachError(f"{what}: {exc}") from None

    def status(self) -> dict[str, Any]:
        with self._lock:
            programmed = self._programmed
            return {
                "vpp_version": self.conn.version, "vpp_release": release_of(self.conn.version),
                "api_layout": None if self.conn.layout is None else self.conn.layout.name,
                "socket": self.conn.socket_path,
                "connected": self.conn.connected, "definitions": self.conn.definitions,
                "pod_interface": self.pod_interface,
                "acls": None if programmed is None else len(programmed.acls),
                "pod_interfaces": None if programmed is None else len(programmed.pod_interfaces()),
                "bound_interfaces": None if programmed is None else len(programmed.users_of_our_acls()),
                "routes": len(self._made_routes) + (0 if programmed is None else sum(
                    1 for t in programmed.routes.values() if t.sw_if_index in programmed.pod_interfaces().values())),
                "pods_attached_here": len(self.pods.records),
                "api_requests": sum(self.conn.requests.values()), "api_writes": self.conn.writes,
                "compiles": self._compiler.compiles, "gated_lists": self._compiler.gated,
                "classifier_chains": len(self.classifier.chains),
                "source_guards": len({sw_if_index for sw_if_index, _ in self.guards.chains}),
                **self.services.status(), "reclassify_sessions": self._reclassify_state, **self.stats,
                **({} if self.services.stats is None else {"services": self.services.stats}),
            }

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def poll(self) -> ApplyReport:
        """Keepalive while VPP answers; reconnect and resync the last state when it does not."""
        with self._lock:
            self.stats["polls"] += 1
            if self.conn.connected:
                try:
                    self.conn.ping()
                    if self.services.failures and self._programmed is not None:
                        self.services.converge(self._programmed, reread=False)  # what VPP refused, again
                    return self._report(ApplyReport(failed=dict(self._failed), absent=self._absent()))
                except VppConnectionLost as exc:
                    log.warning("VPP connection lost (%s); reconnecting", exc)
                    self._programmed = None
                    self._backoff = min(0.1, self.keepalive)
            if self._state is None:  # no state yet: find out whether VPP answers (and program Services)
                try:
                    self._connect()
                    if self.services.given is not None:
                        self.services.converge(self.programmed(), reread=True)
                except (VppUnavailable, VppConnectionLost) as exc:
                    self._programmed = None
                    return self._unreachable(exc, 0)
                return self._report(ApplyReport())
            report = self._converge(reread=True)
            if report.ok:
                log.info("reconnected to VPP %s and resynced (%d writes)", self.conn.version, report.writes)
            return report

    # -- convergence -----------------------------------------------------------------------------
    def _connect(self) -> None:
        self.conn.connect()
        self._programmed = None
        self.services.connected()
        self.classifier.connected()
        self._sessions_set = False
        if self._had_connection:
            self.stats["reconnects"] += 1
        self._had_connection = True

    def programmed(self) -> Programmed:
        """What VPP holds, reconnecting and reading it first if needed (under `_lock`)."""
        if not self.conn.connected:
            self._connect()
        if not self._sessions_set:
            self._set_session_rule()
        if self._programmed is None:
            self._programmed = read_programmed(self.calls)
            if self._judge_again:
                problem = judge_again(self.calls, self._programmed)
                if problem is None:
                    self._judge_again, self.classifier.sessions_rejudged = False, True
                else:  # (until it is done, gate changes rebind to clear: classifier/chains.py `clears`)
                    log.warning("VPP driver: sessions made before reclassify-sessions was on not judged "
                                "again (%s)", problem)
            tables = ClassifierTables(self.calls)  # read once if either side reads back (readback.py)
            self.classifier.reread(tables.tables)  # our chains, read back when this driver does not know them
            self.guards.reread({i.sw_if_index: (i.tag, i.name) for i in self._programmed.interfaces.values()
                                if i.is_pod}, tables)
            if self.pods.restore(self._programmed):
                self._programmed = read_programmed(self.calls)
            self.pods.settle_rx_modes(self._programmed)
        return self._programmed

    def _set_session_rule(self) -> None:
        """Set `reclassify-sessions` as wanted on this connection, before any ACL is written, and
        read it back; a refusal is logged once per reason and kept for `status()`."""
        self._sessions_set = True
        wanted = "on" if self.reclassify_sessions else "off"
        rule = set_reclassify(self.calls, self.reclassify_sessions)
        self.classifier.sessions_rejudged = rule.rejudged
        # found off holding sessions: judged again once the ACLs are read (`programmed`)
        self._judge_again = rule.problem is None and self.reclassify_sessions and not rule.rejudged
        problem = rule.problem
        self._reclassify_state = wanted if problem is None else f"refused: {problem}"
        if problem is not None and problem != self._logged_reclassify:
            self._logged_reclassify = problem
            log.warning("VPP driver: reclassify-sessions %s not set (%s); stale reflect sessions are cleared "
                        "by rebinding only", wanted, problem)

    def _converge(self, *, reread: bool, removing: bool = False) -> ApplyReport:
        start, writes = time.monotonic(), self.conn.writes
        failed: Failures = {}
        # A connection found dead (VPP restarted since the last request) is retried once, on a
        # fresh connection and a fresh read: that is the resync after a reconnect.
        for attempt in (1, 2):
            try:
                if reread:
                    self._programmed = None
                failed = self._program(self.programmed(), self._state or DataplaneState(), removing=removing)
                self.services.converge(self._programmed, reread=reread, removing=removing)
                break
            except (VppConnectionLost, VppUnavailable) as exc:
                self._programmed = None
                reread = True
                if attempt == 1 and isinstance(exc, VppConnectionLost):
                    log.info("VPP connection lost (%s); reconnecting", exc)
                    continue
                return self._unreachable(exc, self.conn.writes - writes)
        self._failed = dict(failed)
        self.stats["last_converge"] = {"seconds": round(time.monotonic() - start, 6),
                                       "writes": self.conn.writes - writes, "failed": len(failed)}
        return self._report(ApplyReport(ok=True, failed=dict(failed), writes=self.conn.writes - writes,
                                        absent=self._absent()))

    def _absent(self) -> set[Owner]:
        """Workload endpoints with no pod interface in VPP (not attached here, or not yet)."""
        if self._state is None or self._programmed is None:
            return set()
        pods = self._programmed.pod_interfaces()
        return {(Kind.WORKLOAD_ENDPOINT, key) for key in self._state.workload_endpoints
                if workload_tag(key) not in pods}

    def _report(self, report: ApplyReport) -> ApplyReport:
        """VPP answered: poll again after `keepalive`."""
        self._backoff = self.keepalive
        self._logged_error = None
        self.services.down = None
        report.next_run = self.keepalive
        return report

    def _unreachable(self, exc: Exception, writes: int) -> ApplyReport:
        """VPP did not answer: every endpoint is in error until a poll (at growing intervals)
        finds it back. Logged once per reason, not once per attempt."""
        error = f"VPP: {exc}"
        self.stats["last_error"] = str(exc)
        self.services.down = error
        if error != self._logged_error:
            self._logged_error = error
            log.warning("VPP driver: %s", exc)
        next_run = self._backoff
        self._backoff = min(max(self._backoff * 2, 0.1), self.max_backoff)
        return ApplyReport(ok=False, unreachable=True, error=error, writes=writes, next_run=next_run)

    def _program(self, programmed: Programmed, state: DataplaneState, *, removing: bool = False) -> Failures:
        pods = programmed.pod_interfaces()
        if any(tag not in pods for tag in self._unmatched_endpoints):
            refresh_interfaces(self.calls, programmed)  # an endpoint for a pod attached by someone else?
        self._unmatched_endpoints = []
        result = converge(self.calls, programmed, state, self._compiler, self.classifier, self.guards,
                          self._made_routes, removing=removing)
        self.stats["unsupported_routes"] = result.unsupported_routes
        self._made_routes = result.made_routes
        return result.failed

    def wanted_for(self, workload: WorkloadKey) -> Wanted:
        """The lists a newly attached pod gets (acl/lists.py)."""
        return lists_for_new_pod(self._state, self._compiler, workload)

    def guarded_lists_for(self, workload: WorkloadKey) -> Wanted:
        """What a CNI Add binds to the pod's new interface (tagged, in `Programmed` already): its
        lists, once its source guard is attached (guard/guards.py `attach_new`); drop-everything
        egress when that failed, until a convergence makes the guard."""
        egress, ingress = wanted = self.wanted_for(workload)
        programmed = self.programmed()
        sw_if_index = programmed.pod_interfaces().get(workload_tag(workload))
        pb = None if self._state is None else self._state.workload_endpoints.get(workload)
        if sw_if_index is None:  # no interface to guard: its egress list is restricted, so closed
            return (DENY_ALL, ingress)
        info = programmed.interfaces[sw_if_index]
        ep = None
        if pb is not None and egress is not DENY_ALL:  # Felix sent it, and it parsed (wanted_for)
            ep = WorkloadEndpoint.from_proto(workload, pb)
        return wanted if self.guards.attach_new(sw_if_index, (info.tag, info.name), ep) else (DENY_ALL, ingress)

    def _interface_gone(self, sw_if_index: int) -> None:
        """A pod interface is about to be deleted (pods/attach.py): its chain comes off, then its
        guard goes. A refused chain detach raises before the guard is touched: the pod stays whole."""
        self.classifier.interface_gone(sw_if_index)
        self.guards.remove(sw_if_index)

