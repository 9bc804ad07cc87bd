"""What every dataplane driver implements.

A driver turns the store's effective state into a dataplane. It gets either a full state to
converge to (`resync`: read what exists, keep what matches, fix what differs, delete only its own
stale objects) or a diff plus the state after it (`apply`: converge to `state`; the diff says what
changed since the last call, so a driver can skip the rest, and an empty diff means "try again
what is still failing"). Both return an `ApplyReport`; a driver never raises for a dataplane
error or a bad object it can describe, it reports it, naming the object.

A report describes the dataplane after the call, as far as the driver knows, not what the call
did: the agent derives every endpoint's status from the latest report alone (server/status.py).

Drivers own no threads that call back into the agent: a report's `next_run` says when the driver
wants `poll` called (keepalive, reconnect, periodic read-back), and the agent's worker calls it,
under the same lock as every other call. So a driver is only ever entered from one thread at a
time by the agent (CNI Add/Del come from the CNI server's threads; a driver guards those itself).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import Attachment, VethAttacher
from vppagent.services.model import ServiceEntry
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState, Kind


@dataclass
class ApplyReport:
    """What the dataplane holds after one resync/apply/poll, as far as the driver knows.

    ok=False: the dataplane as a whole is not known to hold the state given (a transaction was
    refused, the dataplane cannot be reached: `unreachable`): every endpoint it serves is "error"
    with `error`, and keeps whatever it had; the agent retries with backoff.
    `failed`: every object that is not programmed as computed right now, with the reason. It is
    complete, not limited to what this call touched: an object absent from it holds exactly what
    was computed for it. Endpoints among them, and endpoints using a failed policy, profile or IP
    set, report "error".
    `absent`: workload endpoints whose interface this dataplane does not have (a pod not attached
    here yet): nothing can hold their policy, so they report "down", as Felix reports an endpoint
    whose interface is missing; CNI Add attaches them.

    `next_run`: seconds after which the driver wants `poll` called; None: not before the state
    changes.
    """

    ok: bool = True
    error: str | None = None
    failed: dict[tuple[Kind, Any], str] = field(default_factory=dict)
    writes: int = 0  # dataplane write operations (restores, API calls) this call needed
    unreachable: bool = False  # with ok=False: the dataplane did not answer at all
    next_run: float | None = None
    absent: set[tuple[Kind, Any]] = field(default_factory=set)


class Driver(abc.ABC):
    """A dataplane driver (see module docstring)."""

    name: str = "abstract"
    # False for a driver that only shows what it would do (dry-run): a swap away from it has
    # nothing programmed to lose.
    programs_dataplane: bool = True
    # True for a driver that programs Kubernetes Services itself (`set_services`); False leaves
    # them to someone else (the kernel driver: kube-proxy; dry-run: nobody).
    programs_services: bool = False

    @abc.abstractmethod
    def resync(self, state: DataplaneState) -> ApplyReport:
        """Make the dataplane equal `state`, whatever it holds now."""

    @abc.abstractmethod
    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        """Converge to `state`, the whole effective state; `diff` is what changed since the last call."""

    def poll(self) -> ApplyReport | None:
        """The driver's own timed work on the last state it was given (keepalive, reconnect and
        re-program, periodic read-back and repair); the agent's worker calls it when the last
        report's `next_run` has passed, and once at start so that the first state report says
        whether the dataplane answers. None: nothing new, the last report stands."""
        return None

    def remove_all(self) -> ApplyReport:
        """Delete every object this driver created (used when swapping drivers)."""
        return self.resync(DataplaneState())

    def status(self) -> dict[str, Any]:
        """Driver-specific facts for the state report."""
        return {}

    def attach_pod(self, spec: PodSpec) -> Attachment:
        """CNI Add. Default: a kernel veth as Calico's CNI makes it (the VPP driver overrides)."""
        return VethAttacher().add(spec)

    def detach_pod(self, request: PodDelete) -> str | None:
        """CNI Del; returns the host interface name that was removed, if any."""
        return VethAttacher().delete(request)

    def set_services(self, services: Mapping[str, ServiceEntry]) -> None:  # noqa: B027 - optional hook
        """All the desired Services (docs/services.md), from the agent's worker like every other call.
        A driver that programs them keeps the last ones and programs them again on every resync
        and after the dataplane comes back. Default: Services are not programmed here."""

    def service_errors(self) -> dict[str, str]:
        """The Services (by name) of the last `set_services` the dataplane does not hold as desired
        right now, with why; every other one is programmed. Only meaningful with `programs_services`."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing to release
        """Release connections; programmed objects stay in place."""
