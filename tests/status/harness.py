"""An AgentCore in-process (no gRPC) with a scriptable driver: feed Felix messages, read the
statuses it sends and its state report."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vppagent.config import AgentConfig
from vppagent.drivers.base import ApplyReport, Driver
from vppagent.drivers.dryrun import DryRunDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.server.core import AgentCore, StreamHandle
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState


@dataclass
class Feed:
    """One Felix stream into `core`: every status message it was sent, in order."""

    core: AgentCore
    stream: StreamHandle
    sent: list[tuple[str, str]] = field(default_factory=list)  # (workload id, status)

    def send(self, *msgs: felix.ToDataplane) -> None:
        for m in msgs:
            self.core.submit(self.stream.generation, m)

    def collect(self) -> list[tuple[str, str]]:
        while not self.stream.outbound.empty():
            msg = self.stream.outbound.get()
            if msg is not None and msg.HasField("workload_endpoint_status_update"):
                u = msg.workload_endpoint_status_update
                self.sent.append((u.id.workload_id, u.status.status))
        return self.sent

    def statuses(self) -> dict[str, str]:
        return dict(self.collect())


def start_core(driver: Driver, factory: Callable[[str], Driver] | None = None, **kwargs: Any) -> tuple[AgentCore, Feed]:
    core = AgentCore(AgentConfig(driver="dry-run", batch_window_ms=5), driver, "test", factory, **kwargs)
    core.start()
    return core, Feed(core, core.open_stream())


class ScriptedDriver(DryRunDriver):
    """A dry-run whose next reports can be forced: `outage` makes every call fail as an
    unreachable dataplane would; `extra_failed` adds failures; calls are counted with their time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outage: str | None = None
        self.extra_failed: dict[Any, str] = {}
        self.calls: list[tuple[str, float]] = []
        self.next_run: float | None = None
        self.polls = 0
        self.lock = threading.Lock()

    def _result(self, what: str, report: ApplyReport) -> ApplyReport:
        import time

        self.calls.append((what, time.monotonic()))
        if self.outage is not None:
            return ApplyReport(ok=False, unreachable=True, error=self.outage, next_run=self.next_run)
        report.failed.update(self.extra_failed)
        report.next_run = self.next_run
        return report

    def resync(self, state: DataplaneState) -> ApplyReport:
        return self._result("resync", super().resync(state))

    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        return self._result("apply", super().apply(diff, state))

    def poll(self) -> ApplyReport:
        self.polls += 1
        return self._result("poll", super().poll())
