"""Per-endpoint status as Felix knows it: "up", "down" (admin state not active) or "error".

The tracker computes each endpoint's status after every apply and queues only the changes as
Workload/HostEndpointStatusUpdate (or ...Remove for endpoints that went away), so Felix's
status reporters see one message per transition, not one per apply.
"""

from __future__ import annotations

from typing import Any

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState, Kind, WorkloadKey

Status = tuple[str, str | None]  # (status, error)


class EndpointStatusTracker:
    def __init__(self) -> None:
        self.current: dict[tuple[Kind, Any], Status] = {}
        self._reported: dict[tuple[Kind, Any], Status] = {}

    def update(self, desired: DataplaneState, held: dict[tuple[Kind, Any], str],
               failed: dict[tuple[Kind, Any], str]) -> None:
        current: dict[tuple[Kind, Any], Status] = {}
        for kind in (Kind.WORKLOAD_ENDPOINT, Kind.HOST_ENDPOINT):
            for key, endpoint in desired.tables[kind].items():
                ref = (kind, key)
                reason = held.get(ref) or failed.get(ref)
                if reason is not None:
                    current[ref] = ("error", reason)
                elif kind == Kind.WORKLOAD_ENDPOINT and endpoint.state != "active":
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

    def workload_report(self, desired: DataplaneState) -> list[dict[str, Any]]:
        rows = []
        for key, endpoint in sorted(desired.workload_endpoints.items()):
            status, error = self.current.get((Kind.WORKLOAD_ENDPOINT, key), ("pending", None))
            rows.append({"orchestrator_id": key.orchestrator_id, "workload_id": key.workload_id,
                         "endpoint_id": key.endpoint_id, "name": endpoint.name,
                         "status": status, "error": error})
        return rows

    def host_report(self, desired: DataplaneState) -> list[dict[str, Any]]:
        rows = []
        for key, endpoint in sorted(desired.host_endpoints.items()):
            status, error = self.current.get((Kind.HOST_ENDPOINT, key), ("pending", None))
            rows.append({"endpoint_id": key, "name": endpoint.name, "status": status, "error": error})
        return rows


def _update_message(ref: tuple[Kind, Any], status: str) -> felix.FromDataplane:
    kind, key = ref
    if kind == Kind.WORKLOAD_ENDPOINT:
        assert isinstance(key, WorkloadKey)
        return felix.FromDataplane(workload_endpoint_status_update=felix.WorkloadEndpointStatusUpdate(
            id=_wid(key), status=felix.EndpointStatus(status=status)))
    return felix.FromDataplane(host_endpoint_status_update=felix.HostEndpointStatusUpdate(
        id=felix.HostEndpointID(endpoint_id=key), status=felix.EndpointStatus(status=status)))


def _remove_message(ref: tuple[Kind, Any]) -> felix.FromDataplane:
    kind, key = ref
    if kind == Kind.WORKLOAD_ENDPOINT:
        return felix.FromDataplane(workload_endpoint_status_remove=felix.WorkloadEndpointStatusRemove(
            id=_wid(key)))
    return felix.FromDataplane(host_endpoint_status_remove=felix.HostEndpointStatusRemove(
        id=felix.HostEndpointID(endpoint_id=key)))


def _wid(key: WorkloadKey) -> felix.WorkloadEndpointID:
    return felix.WorkloadEndpointID(orchestrator_id=key.orchestrator_id, workload_id=key.workload_id,
                                    endpoint_id=key.endpoint_id)
