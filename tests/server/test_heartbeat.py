"""Heartbeats (server/heartbeat.py): the interval from Felix's config, and updates sent only
while it is positive."""

from __future__ import annotations

import threading
import time

from tests.agentproc import wait_for
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.server.heartbeat import DEFAULT_INTERVAL, Heartbeat, reporting_interval


def test_the_interval_is_felixs_parameter_in_any_case_else_the_default() -> None:
    assert reporting_interval({"reportingIntervalSecs": "2.5"}) == 2.5
    assert reporting_interval({"ReportingIntervalSecs": "0"}) == 0.0
    assert reporting_interval({"ReportingIntervalSecs": "soon"}) == DEFAULT_INTERVAL
    assert reporting_interval({}) == DEFAULT_INTERVAL


def test_heartbeats_carry_the_uptime_and_stop_when_the_interval_is_zero() -> None:
    sent: list[felix.FromDataplane] = []
    interval = ["0.01"]
    reads: list[str] = []  # each wake-up reads the config once: the thread's clock, observable

    def config() -> dict[str, str]:
        reads.append(interval[0])
        return {"ReportingIntervalSecs": interval[0]}

    stop = threading.Event()
    started = time.monotonic()
    beat = threading.Thread(target=Heartbeat(sent.append, config, started, stop).run, daemon=True)
    beat.start()
    try:
        # 30 s: a bound for a stuck thread, not an expected time
        wait_for(lambda: len(sent) >= 2, timeout=30, what="two heartbeats")
        update = sent[-1].process_status_update
        assert update.iso_timestamp and 0 < update.uptime <= time.monotonic() - started
        interval[0] = "0"
        wait_for(lambda: "0" in reads, timeout=30, what="a wake-up with the new interval")
        count = len(sent)
        wait_for(lambda: reads.count("0") >= 3, timeout=30, what="three wake-ups with the new interval")
        assert len(sent) == count, "no heartbeat while the interval is 0"
    finally:
        stop.set()
        beat.join(5)
    assert not beat.is_alive()
