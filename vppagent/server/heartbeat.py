"""ProcessStatusUpdate heartbeats to Felix: its liveness report of the dataplane.

Sent every `ReportingIntervalSecs` (Felix's parameter, from the current config; default 30 s,
0 turns them off) on a thread of their own, which wakes four times a second so that a new
interval takes effect promptly. Each carries the time and the agent's uptime.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Mapping

from vppagent.gen.felix import felixbackend_pb2 as felix

DEFAULT_INTERVAL = 30.0  # Felix's default ReportingIntervalSecs
WAKE_EVERY = 0.25


def reporting_interval(config: Mapping[str, str]) -> float:
    """Felix's ReportingIntervalSecs (its parameter names are case-insensitive); the default
    when unset or not a number."""
    raw = next((value for key, value in config.items() if key.lower() == "reportingintervalsecs"), None)
    try:
        return float(raw) if raw is not None else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


class Heartbeat:
    """`run` is the thread's body: until `stop` is set, `send` a ProcessStatusUpdate whenever the
    interval `config()` asks for has passed."""

    def __init__(self, send: Callable[[felix.FromDataplane], None], config: Callable[[], Mapping[str, str]],
                 started: float, stop: threading.Event) -> None:
        self.send, self.config, self.started, self.stop = send, config, started, stop

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(WAKE_EVERY):
            interval = reporting_interval(self.config())
            if interval <= 0 or time.monotonic() - last < interval:
                continue  # Felix's convention: 0 disables status reporting
            last = time.monotonic()
            now = datetime.datetime.now(datetime.UTC).isoformat()
            self.send(felix.FromDataplane(process_status_update=felix.ProcessStatusUpdate(
                iso_timestamp=now, uptime=last - self.started)))
