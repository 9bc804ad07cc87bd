"""Prometheus metrics, named after Felix's (`felix_…`) as `vppagent_…`.

Each AgentCore owns a registry (tests run several agents in one process); `serve_metrics` exposes
it over HTTP on --metrics-port.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from vppagent.state.model import DataplaneState


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter("vppagent_messages_received", "Felix messages received, by payload type",
                                ["type"], registry=r)
        self.apply_seconds = Histogram(
            "vppagent_apply_seconds", "Time to apply a batch (or resync) to the dataplane driver",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.applies = Counter("vppagent_applies", "Driver applies, by outcome", ["outcome"], registry=r)
        self.resyncs = Counter("vppagent_resyncs", "Full or diff resyncs after InSync or a swap", registry=r)
        self.errors = Counter("vppagent_errors", "Errors, by kind", ["kind"], registry=r)
        self.objects = Gauge("vppagent_objects_programmed", "Objects programmed, by kind", ["kind"], registry=r)
        self.endpoints = Gauge("vppagent_endpoints", "Endpoints, by status", ["status"], registry=r)
        self.driver = Gauge("vppagent_driver", "1 for the dataplane driver in use", ["driver"], registry=r)
        self.in_sync = Gauge("vppagent_in_sync", "1 once the Felix snapshot has been applied", registry=r)
        self._message_children: dict[str, Counter] = {}

    def message(self, payload: str | None) -> None:
        label = payload or "unknown"
        child = self._message_children.get(label)
        if child is None:
            child = self._message_children[label] = self.messages.labels(label)
        child.inc()

    def applied(self, seconds: float, ok: bool, resync: bool) -> None:
        self.apply_seconds.observe(seconds)
        self.applies.labels("ok" if ok else "failed").inc()
        if resync:
            self.resyncs.inc()
        if not ok:
            self.errors.labels("apply").inc()

    def programmed(self, state: DataplaneState, statuses: list[str]) -> None:
        for kind, count in state.counts().items():
            self.objects.labels(kind).set(count)
        tally = Tally(statuses)
        for status in ("up", "down", "error"):
            self.endpoints.labels(status).set(tally.get(status, 0))

    def driver_in_use(self, name: str) -> None:
        self.driver.clear()
        self.driver.labels(name).set(1)


def serve_metrics(metrics: AgentMetrics, port: int, address: str = "127.0.0.1") -> None:
    start_http_server(port, addr=address, registry=metrics.registry)
