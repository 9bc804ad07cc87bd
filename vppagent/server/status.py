"""Per-endpoint status as Felix knows it: "up", "down" (admin state not active) or "error".

The rule (issue 13): an endpoint is "up" only when the dataplane holds exactly what the agent
computed for it, as far as the driver knows. So a status is derived from three facts, never from
which keys an apply touched:
- the store held the endpoint back (it, or a policy, profile or IP set it uses, is invalid);
- the driver's latest report lists it, or a policy, profile or IP set it uses, as not programmed
  (`endpoint_faults`);
- the dataplane as a whole failed (unreachable, a refused transaction): every endpoint is "error".

The tracker queues only the changes as Workload/HostEndpointStatusUpdate (or ...Remove for
endpoints that went away), so Felix's status reporters see one message per transition, not one
per apply.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Set as AbstractSet
from typing import Any

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import ENDPOINT_KINDS, DataplaneState, Kind, WorkloadKey, endpoint_policy_keys, ip_set_ids

Status = tuple[str, str | None]  # (status, error)
Ref = tuple[Kind, Any]
WAITING = "waiting"  # in the state report only: no apply has decided this endpoint's status yet


def endpoint_faults(state: DataplaneState, failed: dict[Ref, str]) -> dict[Ref, str]:
    """The endpoints of `state` that a driver's `failed` objects leave not as computed: those
    listed, and those using a listed policy or profile, or a policy or profile using a listed IP
    set. Each gets the first reason found."""
    out = {ref: why for ref, why in failed.items() if ref[0] in ENDPOINT_KINDS}
    sets = {key: why for (kind, key), why in failed.items() if kind == Kind.IPSET}
    policies = {key: why for (kind, key), why in failed.items() if kind == Kind.POLICY}
    profiles = {key: why for (kind, key), why in failed.items() if kind == Kind.PROFILE}
    if sets:
        for pkey, policy in state.policies.items():
            if (set_id := _first_set_used(policy, sets)) is not None:
                policies.setdefault(pkey, f"IP set {set_id}: {sets[set_id]}")
        for name, profile in state.profiles.items():
            if (set_id := _first_set_used(profile, sets)) is not None:
                profiles.setdefault(name, f"IP set {set_id}: {sets[set_id]}")
    if not policies and not profiles:
        return out
    for kind in ENDPOINT_KINDS:
        for key, endpoint in state.tables[kind].items():
            if (kind, key) in out:
                continue
            reason = _first_fault(endpoint, policies, profiles)
            if reason is not None:
                out[(kind, key)] = reason
    return out


def _first_set_used(pb: felix.Policy | felix.Profile, sets: dict[str, str]) -> str | None:
    for rule in (*pb.inbound_rules, *pb.outbound_rules):
        for set_id in sorted(ip_set_ids(rule)):
            if set_id in sets:
                return set_id
    return None


def _first_fault(endpoint: felix.WorkloadEndpoint | felix.HostEndpoint, policies: dict[Any, str],
                 profiles: dict[str, str]) -> str | None:
    for key in sorted(endpoint_policy_keys(endpoint)):
        if key in policies:
            return f"policy {key}: {policies[key]}"
    for name in endpoint.profile_ids:
        if name in profiles:
            return f"profile {name}: {profiles[name]}"
    return None


class EndpointStatusTracker:
    def __init__(self) -> None:
        self.current: dict[Ref, Status] = {}
        self._reported: dict[Ref, Status] = {}

    def update(self, desired: DataplaneState, held: dict[Ref, str], failed: dict[Ref, str],
               outage: str | None = None, absent: AbstractSet[Ref] = frozenset()) -> None:
        """Statuses of every endpoint of `desired`: `held` by the store, `failed` by the driver
        (endpoints only, see `endpoint_faults`), or all in error with `outage`; endpoints whose
        interface the dataplane does not have (`absent`) are "down", as Felix reports them."""
        current: dict[Ref, Status] = {}
        for kind in ENDPOINT_KINDS:
            for key, endpoint in desired.tables[kind].items():
                ref = (kind, key)
                reason = held.get(ref) or outage or failed.get(ref)
                if reason is not None:
                    current[ref] = ("error", reason)
                elif kind == Kind.WORKLOAD_ENDPOINT and (endpoint.state != "active" or ref in absent):
                    current[ref] = ("down", None)
                else:
                    current[ref] = ("up", None)
        self.current = current

    def forget_reported(self) -> None:
        """A new Felix knows nothing: report every status again."""
        self._reported = {}

    def pending_messages(self) -> list[felix.FromDataplane]:
        out: list[felix.FromDataplane] = []
        for ref, status in sorted(self.current.items(), key=str):
            if self._reported.get(ref) != status:
                out.append(_update_message(ref, status[0]))
        for ref in sorted(self._reported.keys() - self.current.keys(), key=str):
            out.append(_remove_message(ref))
        self._reported = dict(self.current)
        return out

    def summary(self, desired: DataplaneState) -> dict[str, int]:
        """How many endpoints of `desired` are up, down, in error, or waiting for their first apply."""
        counts: Counter[str] = Counter({"up": 0, "down": 0, "error": 0, WAITING: 0})
        for kind in ENDPOINT_KINDS:
            for key in desired.tables[kind]:
                counts[self.current.get((kind, key), (WAITING, None))[0]] += 1
        return dict(counts)

    def workload_report(self, desired: DataplaneState) -> list[dict[str, Any]]:
        rows = []
        for key, endpoint in sorted(desired.workload_endpoints.items()):
            status, error = self.current.get((Kind.WORKLOAD_ENDPOINT, key), (WAITING, None))
            rows.append({"orchestrator_id": key.orchestrator_id, "workload_id": key.workload_id,
                         "endpoint_id": key.endpoint_id, "name": endpoint.name,
                         "status": status, "error": error})
        return rows

    def host_report(self, desired: DataplaneState) -> list[dict[str, Any]]:
        rows = []
        for key, endpoint in sorted(desired.host_endpoints.items()):
            status, error = self.current.get((Kind.HOST_ENDPOINT, key), (WAITING, None))
            rows.append({"endpoint_id": key, "name": endpoint.name, "status": status, "error": error})
        return rows


def _update_message(ref: Ref, status: str) -> felix.FromDataplane:
    kind, key = ref
    if kind == Kind.WORKLOAD_ENDPOINT:
        assert isinstance(key, WorkloadKey)
        return felix.FromDataplane(workload_endpoint_status_update=felix.WorkloadEndpointStatusUpdate(
            id=_wid(key), status=felix.EndpointStatus(status=status)))
    return felix.FromDataplane(host_endpoint_status_update=felix.HostEndpointStatusUpdate(
        id=felix.HostEndpointID(endpoint_id=key), status=felix.EndpointStatus(status=status)))


def _remove_message(ref: Ref) -> felix.FromDataplane:
    kind, key = ref
    if kind == Kind.WORKLOAD_ENDPOINT:
        return felix.FromDataplane(workload_endpoint_status_remove=felix.WorkloadEndpointStatusRemove(
            id=_wid(key)))
    return felix.FromDataplane(host_endpoint_status_remove=felix.HostEndpointStatusRemove(
        id=felix.HostEndpointID(endpoint_id=key)))


def _wid(key: WorkloadKey) -> felix.WorkloadEndpointID:
    return felix.WorkloadEndpointID(orchestrator_id=key.orchestrator_id, workload_id=key.workload_id,
                                    endpoint_id=key.endpoint_id)
