"""The dry-run driver: programs nothing, records and logs what it would do."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.base import ApplyReport, Driver
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import Attachment
from vppagent.state.diff import StateDiff, diff_states
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)


@dataclass
class DryRunDriver(Driver):
    """Keeps the state it was given; a resync is a diff against that, as a real driver's would be."""

    name: str = "dry-run"
    held: DataplaneState = field(default_factory=DataplaneState)
    applies: int = 0
    resyncs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    history_limit: int = 100
    pods: dict[str, PodSpec] = field(default_factory=dict)

    def resync(self, state: DataplaneState) -> ApplyReport:
        self.resyncs += 1
        return self._record("resync", diff_states(self.held, state), state)

    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        self.applies += 1
        return self._record("apply", diff, state)

    def _record(self, what: str, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        self.held = state.copy()
        log.info("dry-run %s: %d changes %s", what, diff.count(), sorted(k.value for k in diff.kinds()))
        self.history.append({"what": what, **diff.summary()})
        del self.history[: -self.history_limit]
        return ApplyReport(ok=True, writes=diff.count())

    def attach_pod(self, spec: PodSpec) -> Attachment:
        """Record only: the dry-run driver changes nothing on the host."""
        log.info("dry-run CNI Add %s as %s", spec.workload, spec.host_ifname)
        self.pods[spec.host_ifname] = spec
        return Attachment(spec.host_ifname, "00:00:00:00:00:00")

    def detach_pod(self, request: PodDelete) -> str | None:
        for name, spec in list(self.pods.items()):
            if str(spec.netns) == request.netns and spec.container_ifname == request.container_ifname:
                del self.pods[name]
                return name
        return None

    def status(self) -> dict[str, Any]:
        return {"applies": self.applies, "resyncs": self.resyncs, "objects": self.held.counts()}
