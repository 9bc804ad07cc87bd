"""What every dataplane driver implements.

A driver turns the store's effective state into a dataplane. It gets either a full state to
converge to (`resync`: read what exists, keep what matches, fix what differs, delete only its own
stale objects) or a diff plus the state after it (`apply`). Both return an `ApplyReport`; a driver
never raises for a dataplane error it can describe, it reports it, naming the object.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import Attachment, VethAttacher
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState, Kind


@dataclass
class ApplyReport:
    """Outcome of one resync/apply.

    ok=False means nothing (or nothing reliable) was programmed: the store keeps its previous
    idea of what is programmed and retries. `failed` objects were not programmed although the
    rest was; each has a reason, and endpoints among them report status "error".
    """

    ok: bool = True
    error: str | None = None
    failed: dict[tuple[Kind, Any], str] = field(default_factory=dict)
    writes: int = 0  # dataplane write operations (restores, API calls) this apply needed


ReportListener = Callable[[ApplyReport], None]


class Driver(abc.ABC):
    """A dataplane driver (see module docstring)."""

    name: str = "abstract"
    # Set by the agent: a driver that re-programs on its own (after a dataplane restart, a
    # periodic repair) reports the outcome here, so endpoint statuses follow.
    report_listener: ReportListener | None = None

    @abc.abstractmethod
    def resync(self, state: DataplaneState) -> ApplyReport:
        """Make the dataplane equal `state`, whatever it holds now."""

    @abc.abstractmethod
    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        """Apply `diff`; `state` is the whole effective state after it (for cross-references)."""

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

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing to release
        """Release connections and threads; programmed objects stay in place."""
