"""What the driver said last, and when the agent's worker calls it next.

A driver's report is complete (drivers/base.py): the latest one alone says which objects are not
programmed as computed, whether the dataplane answers, and when the driver wants to be polled.
`DriverHealth` keeps it, derives the endpoints it leaves in error (status.py), schedules the
retry of failed work with backoff (doubling while the failure stays the same, from the first
delay again when it changes), and logs once per change of reason, not once per retry.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from vppagent.drivers.base import ApplyReport
from vppagent.server.status import endpoint_faults
from vppagent.state.diff import key_text
from vppagent.state.model import DataplaneState, Kind

log = logging.getLogger(__name__)

# Failed work is retried after RETRY_FIRST seconds, doubling while the failure stays the same.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
_ALL_WELL: tuple[Any, ...] = (True, None, ())


class DriverHealth:
    def __init__(self, retry_first: float = RETRY_FIRST, retry_max: float = RETRY_MAX) -> None:
        self.faults: dict[tuple[Kind, Any], str] = {}  # the driver's failed objects
        self.absent: set[tuple[Kind, Any]] = set()  # endpoints whose interface the dataplane lacks
        self.outage: str | None = None  # why every endpoint is in error (the whole apply failed)
        self.given = DataplaneState()  # the state the driver was last given
        self.dataplane: dict[str, Any] = {"reachable": None, "since": None, "reason": None}
        self.retry_at: float | None = None  # monotonic time of the next retry of failed work
        self.poll_at: float | None = None  # monotonic time the driver asked to be polled at
        self.retry_first, self.retry_max = retry_first, retry_max
        self.retry_delay = retry_first
        self._signature = _ALL_WELL

    def take(self, report: ApplyReport, given: DataplaneState, driver: str, *, attempt: bool) -> None:
        """`attempt`: the report answers an apply or resync (a retry that failed again backs off
        further); a poll's report only moves the retry when what fails changed."""
        now = time.monotonic()
        self.given = given
        reachable = report.ok or not report.unreachable
        if reachable != self.dataplane["reachable"]:
            self.dataplane = {"reachable": reachable, "since": _now_iso(), "reason": None}
        self.dataplane["reason"] = None if reachable else report.error
        self.faults = dict(report.failed)
        self.absent = set(report.absent)
        if report.ok:
            self.outage = None
        elif not reachable:
            self.outage = f"dataplane unreachable since {self.dataplane['since']} ({report.error})"
        else:
            self.outage = report.error or f"driver {driver} failed"
        self.poll_at = None if report.next_run is None else now + report.next_run
        signature = (report.ok, report.error, tuple(sorted((str(k), v) for k, v in report.failed.items())))
        changed = signature != self._signature
        if changed:
            self._signature = signature
            self.retry_delay = self.retry_first
            _log_change(driver, report)
        elif attempt:
            self.retry_delay = min(self.retry_delay * 2, self.retry_max)
        if not report.ok or report.failed:
            if attempt or changed or self.retry_at is None:
                self.retry_at = now + self.retry_delay
        else:
            self.retry_at = None

    def endpoint_failures(self) -> dict[tuple[Kind, Any], str]:
        return endpoint_faults(self.given, self.faults)

    def new_driver(self) -> None:
        """A swap: the next report is news, whatever it says."""
        self._signature = _ALL_WELL


def _log_change(driver: str, report: ApplyReport) -> None:
    if not report.ok:
        log.error("driver %s: %s (retrying with backoff)", driver, report.error)
    elif report.failed:
        log.warning("driver %s could not program %d object(s) (retrying with backoff): %s", driver,
                    len(report.failed), "; ".join(f"{key_text(k)}: {why}" for (_, k), why in
                                                  sorted(report.failed.items(), key=str)[:5]))
    else:
        log.info("driver %s: everything programmed", driver)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
