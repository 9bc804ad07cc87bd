"""The agent's engine: one worker thread folds Felix's messages into the store and applies batches.

Threads: gRPC handler threads only enqueue (`submit`) and read reports; the worker owns the
store and the driver (under `lock`, which GetState and SetDriver also take): it applies batches,
retries failed work and polls the driver when its last report asked (health.py), so no driver
needs a thread that calls back into the agent. A heartbeat thread sends ProcessStatusUpdates
(heartbeat.py). Status updates go to the active stream's outbound queue. Kubernetes Services (from
the service source's threads, `set_services`) are handed to the driver by the worker too, and to a
driver swapped in (the swap itself: swap.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vppagent.config import AgentConfig
from vppagent.drivers.base import ApplyReport, Driver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.server.health import RETRY_FIRST, RETRY_MAX, DriverHealth
from vppagent.server.heartbeat import Heartbeat
from vppagent.server.metrics import AgentMetrics
from vppagent.server.status import EndpointStatusTracker
from vppagent.server.store import Store
from vppagent.server.swap import swap_driver
from vppagent.services.model import ServiceEntry
from vppagent.state.diff import key_text
from vppagent.state.model import DataplaneState, Kind

log = logging.getLogger(__name__)

DriverFactory = Callable[[str], Driver]


@dataclass
class StreamHandle:
    """One Sync stream: its generation number and the queue of messages to send to Felix."""

    generation: int
    outbound: queue.SimpleQueue[felix.FromDataplane | None] = field(default_factory=queue.SimpleQueue)
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outbound.put(None)


_NEW_STREAM = object()
_WAKE = -2  # an inbox item of no stream: the worker wakes up and hands over the Services


class AgentCore:
    def __init__(self, config: AgentConfig, driver: Driver, driver_reason: str = "",
                 driver_factory: DriverFactory | None = None, *, retry_first: float = RETRY_FIRST,
                 retry_max: float = RETRY_MAX) -> None:
        self.config = config
        self.driver = driver
        self.driver_reason = driver_reason
        self._driver_factory = driver_factory
        self.store = Store()
        self.lock = threading.RLock()
        self.started = time.monotonic()
        self.last_apply: dict[str, Any] = {"seconds": None, "ok": None, "error": None}
        self.last_resync: dict[str, Any] | None = None
        self.counters = {"messages": 0, "applies": 0, "resyncs": 0, "unknown_payloads": 0, "streams": 0}
        self.statuses = EndpointStatusTracker()
        self.health = DriverHealth(retry_first, retry_max)  # the driver's last report, the next retry
        self.metrics = AgentMetrics()
        self.metrics.driver_in_use(driver.name)
        self._inbox: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._generation = 0
        self._stream: StreamHandle | None = None
        self._stream_lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0
        self._threads = [
            threading.Thread(target=self._work, name="agent-worker", daemon=True),
            threading.Thread(target=Heartbeat(self.send, lambda: self.store.desired.config, self.started,
                                              self._stop).run, name="agent-heartbeat", daemon=True),
        ]
        self.on_applied: list[Callable[[AgentCore], object]] = []  # e.g. BGP
        self.report_sections: dict[str, Callable[[], Any]] = {}  # extra keys of the state report
        self._services_lock = threading.Lock()
        self._services_pending: dict[str, ServiceEntry] | None = None
        self.services: dict[str, ServiceEntry] | None = None  # the last handed to the driver

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put((-1, None))
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
        for t in self._threads:
            if t.ident is not None:  # started (a core driven by run_once has no threads)
                t.join(timeout=2)
        with self.lock:
            self.driver.close()

    # -- streams ------------------------------------------------------------------------------
    def open_stream(self) -> StreamHandle:
        """A new Felix stream replaces the old one (which is closed)."""
        with self._stream_lock:
            self._generation += 1
            if self._stream is not None:
                log.info("new Sync stream replaces the active one")
                self._stream.close()
            self._stream = StreamHandle(self._generation)
            self._inbox.put((self._generation, _NEW_STREAM))
            self.counters["streams"] += 1
            return self._stream

    def submit(self, generation: int, msg: felix.ToDataplane) -> None:
        self._inbox.put((generation, msg))

    def set_services(self, services: Mapping[str, ServiceEntry]) -> None:
        """The desired Services, from any thread; the worker gives them to the driver."""
        with self._services_lock:
            self._services_pending = dict(services)
        self._inbox.put((_WAKE, None))

    def _hand_services(self) -> None:
        """Under `lock`, on the worker: the latest Services to the driver, if new ones came."""
        with self._services_lock:
            pending, self._services_pending = self._services_pending, None
        if pending is None:
            return
        self.services = pending
        _give_services(self.driver, pending)

    def send(self, msg: felix.FromDataplane) -> None:
        with self._stream_lock:
            stream = self._stream
            if stream is None or stream.closed:
                return
            self._seq += 1
            msg.sequence_number = self._seq
            stream.outbound.put(msg)

    # -- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        with self.lock:
            self._poll_driver()  # the first report says whether the dataplane answers
        while not self._stop.is_set():
            due = [t for t in (self.health.retry_at, self.health.poll_at) if t is not None]
            timeout = None if not due else max(0.0, min(due) - time.monotonic())
            try:
                first = self._inbox.get(timeout=timeout)
            except queue.Empty:
                first = None
            with self.lock:
                if first is not None:
                    self._take(first)
                    self._drain()
                if self._stop.is_set():
                    return
                self._hand_services()
                now = time.monotonic()
                retry = self.health.retry_at is not None and now >= self.health.retry_at
                if retry or (first is not None and self.store.has_work):
                    self._flush(retry=retry)
                elif self.health.poll_at is not None and now >= self.health.poll_at:
                    self._poll_driver()

    def run_once(self) -> None:
        """One step of the worker, synchronously: fold everything queued, then apply it (or the
        retry that is due). For tests and tools that drive an AgentCore without `start`."""
        with self.lock:
            took = False
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                self._take(item)
                took = True
            self._hand_services()
            if self.store.has_work or took or self.health.retry_at is not None:
                self._flush(retry=self.health.retry_at is not None)

    def _drain(self) -> None:
        """Keep folding while messages keep coming: a burst becomes one batch (bounded delay)."""
        window = self.config.batch_window_ms / 1000
        deadline = time.monotonic() + self.config.max_batch_delay_ms / 1000
        while time.monotonic() < deadline:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                if window <= 0:
                    return
                try:
                    item = self._inbox.get(timeout=window)
                except queue.Empty:
                    return
            self._take(item)

    def _take(self, item: tuple[int, Any]) -> None:
        generation, msg = item
        if generation != self._generation or msg is None:
            return  # from a replaced stream, or the stop sentinel
        if msg is _NEW_STREAM:
            self.store.new_stream()
            self.statuses.forget_reported()
            return
        self.counters["messages"] += 1
        payload = msg.WhichOneof("payload")
        self.metrics.message(payload)
        if not self.store.apply(msg):
            self.counters["unknown_payloads"] += 1
        if payload == "in_sync":
            log.info("InSync received: resyncing the dataplane from the new snapshot")

    def _flush(self, retry: bool = False) -> None:
        """Hand the store's change to the driver. A retry calls the driver even when nothing
        changed: only the driver can say whether what failed is programmed now."""
        if not self.store.in_sync:
            self.health.retry_at = None
            return
        diff, effective = self.store.prepare()
        full = diff is None
        if diff is not None and diff.is_empty() and not retry:
            self._update_statuses()  # what the store holds back may have changed
            return
        start = time.monotonic()
        try:
            report = self.driver.resync(effective) if diff is None else self.driver.apply(diff, effective)
        except Exception as exc:  # a driver bug must not kill the agent; report and retry
            log.exception("driver %s failed", self.driver.name)
            report = ApplyReport(ok=False, error=f"driver {self.driver.name} raised: {exc}")
        elapsed = time.monotonic() - start
        self.last_apply = {"seconds": round(elapsed, 6), "ok": report.ok, "error": report.error,
                           "writes": report.writes, "changes": 0 if diff is None else diff.count(),
                           "full_resync": full, "failed": len(report.failed), "retry": retry}
        self.metrics.applied(elapsed, report.ok, resync=full or self.store.resync_pending)
        given = effective.copy() if report.failed else effective  # commit reverts the failed in place
        if report.ok:
            if diff is not None and self.store.resync_pending:
                self.last_resync = {"seconds": round(elapsed, 6), **diff.summary()}
            elif diff is None:
                self.last_resync = {"seconds": round(elapsed, 6), "full": True}
            self.store.commit(effective, report.failed.keys())
            self.counters["resyncs" if diff is None else "applies"] += 1
        self._take_report(report, given)
        if report.ok:
            self.metrics.in_sync.set(1)
            self.metrics.programmed(effective, [s for s, _ in self.statuses.current.values()])
            for hook in self.on_applied:
                try:
                    hook(self)
                except Exception:
                    log.exception("post-apply hook failed")

    def _poll_driver(self) -> None:
        self.health.poll_at = None
        try:
            report = self.driver.poll()
        except Exception as exc:
            log.exception("driver %s poll failed", self.driver.name)
            report = ApplyReport(ok=False, error=f"driver {self.driver.name} raised: {exc}",
                                 next_run=self.health.retry_delay)
        if report is None:
            return
        was_out = self.health.outage is not None
        self._take_report(report, self.health.given, attempt=False)
        if was_out and report.ok and self.store.has_work and self.store.in_sync:
            self.health.retry_at = time.monotonic()  # the dataplane is back: program what is still dirty

    def _take_report(self, report: ApplyReport, given: DataplaneState, *, attempt: bool = True) -> None:
        """Statuses, reachability and the next retry and poll follow the driver's latest report
        alone (health.py)."""
        self.health.take(report, given, self.driver.name, attempt=attempt)
        self._update_statuses()

    def _update_statuses(self) -> None:
        self.statuses.update(self.store.desired, self.store.held, self.health.endpoint_failures(),
                             self.health.outage, absent=self.health.absent)
        self._publish_statuses()

    def _publish_statuses(self) -> None:
        for msg in self.statuses.pending_messages():
            self.send(msg)

    # -- driver swap (DESIGN.md section 5; swap.py) ---------------------------------------------
    def set_driver(self, name: str) -> tuple[bool, str, str, float]:
        """Program everything into the new driver, then remove the old driver's objects (swap.py).

        Returns (ok, error, previous, seconds). On any failure the old driver stays active; with
        ok=True, `error` may carry a warning about what the old driver could not clean up.
        """
        if self._driver_factory is None:
            return False, "driver swap is not available in this agent", self.driver.name, 0.0
        start = time.monotonic()
        with self.lock:
            previous = self.driver.name
            if name == previous:
                return True, "", previous, 0.0
            try:
                new = self._driver_factory(name)
            except Exception as exc:
                return False, f"cannot start driver {name}: {exc}", previous, time.monotonic() - start
            effective = self.health.given  # the whole effective state, failed objects included
            outcome = swap_driver(self.driver, new, effective, self.health, self.statuses)
            if not outcome.ok or outcome.report is None:
                return False, outcome.message, previous, time.monotonic() - start
            if self.services is not None:
                _give_services(new, self.services)
            self.driver = new
            self.driver_reason = f"set at runtime (was {previous})"
            self.metrics.driver_in_use(new.name)
            self.health.new_driver()
            self._take_report(outcome.report, effective)
            return True, outcome.message, previous, time.monotonic() - start

    # -- reports ------------------------------------------------------------------------------
    def state_report(self) -> dict[str, Any]:
        with self.lock:
            desired = self.store.desired
            counts = desired.counts()
            return {
                "dataplane": dict(self.health.dataplane),
                "endpoints": self.statuses.summary(desired),
                "driver": self.driver.name,
                "driver_reason": self.driver_reason,
                "in_sync": self.store.in_sync,
                "counts": {k: counts[k.value] for k in (
                    Kind.IPSET, Kind.POLICY, Kind.PROFILE, Kind.WORKLOAD_ENDPOINT,
                    Kind.HOST_ENDPOINT, Kind.ROUTE)} | {k: v for k, v in counts.items()},
                "workload_endpoints": self.statuses.workload_report(desired),
                "host_endpoints": self.statuses.host_report(desired),
                "held_back": [{"kind": k.value, "key": key_text(key), "reason": reason}
                              for (k, key), reason in sorted(self.store.held.items(), key=str)],
                "last_apply": self.last_apply,
                "last_resync": self.last_resync,
                "counters": dict(self.counters),
                "uptime_seconds": round(time.monotonic() - self.started, 3),
                "driver_status": self.driver.status(),
            } | {name: section() for name, section in self.report_sections.items()}


def _give_services(driver: Driver, services: Mapping[str, ServiceEntry]) -> None:
    """`driver.set_services`, on the worker or in a swap: a driver bug must kill neither, and the
    driver's service_errors say the rest."""
    try:
        driver.set_services(services)
    except Exception:
        log.exception("driver %s failed to take the services", driver.name)
