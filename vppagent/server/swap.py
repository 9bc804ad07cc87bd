"""Swapping the driver at runtime (DESIGN.md section 5): make before break.

The new driver programs the whole effective state first (failed objects included). The swap
stands only when it programs everything the old driver had programmed successfully: endpoints
(and objects) already failing may go on failing, nothing may newly fail. Partly programmed is not
programmed: on any failure the new driver removes what it wrote and the old one stays. When the
swap stands, the old driver removes its objects; what it cannot clean up is a warning (e.g. VPP
pods that stay isolated): the swap stands, and the operator must know.

The agent's core calls `swap_driver` under its lock and takes the new driver's report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vppagent.drivers.base import ApplyReport, Driver
from vppagent.server.health import DriverHealth
from vppagent.server.status import EndpointStatusTracker, endpoint_faults
from vppagent.state.diff import key_text
from vppagent.state.model import ENDPOINT_KINDS, DataplaneState

log = logging.getLogger(__name__)


@dataclass
class SwapOutcome:
    ok: bool
    message: str = ""  # why it failed; when it stood, a warning or ""
    report: ApplyReport | None = None  # the new driver's resync report, when it stood


def swap_driver(old: Driver, new: Driver, effective: DataplaneState, health: DriverHealth,
                statuses: EndpointStatusTracker) -> SwapOutcome:
    """Program `effective` into `new`; on success retire `old` (removed and closed), on failure
    `new`. `health` and `statuses` are the old driver's: what it had programmed."""
    try:
        report = new.resync(effective)
    except Exception as exc:
        log.exception("driver %s failed", new.name)
        report = ApplyReport(ok=False, error=f"driver {new.name} raised: {exc}")
    problem = report.error if not report.ok else _losses(old, effective, report, health, statuses)
    if problem:
        new.remove_all()
        new.close()
        return SwapOutcome(False, f"driver {new.name} failed to program the state: {problem}")
    cleanup = old.remove_all()
    warning = ""
    if cleanup.error:
        warning = f"warning: driver {old.name} cleanup: {cleanup.error}"
        log.warning("%s", warning)
    old.close()
    return SwapOutcome(True, warning, report)


def _losses(old: Driver, state: DataplaneState, report: ApplyReport, health: DriverHealth,
            statuses: EndpointStatusTracker) -> str:
    """What the new driver failed that the old one had programmed (empty: nothing)."""
    if health.outage is not None or not old.programs_dataplane:
        return ""  # the old driver held nothing (reliably): the new one can only do better
    now_failing = endpoint_faults(state, report.failed)
    lost = {ref: why for ref, why in now_failing.items()
            if statuses.current.get(ref, ("error", None))[0] != "error"}
    lost |= {ref: why for ref, why in report.failed.items()
             if ref[0] not in ENDPOINT_KINDS and ref not in health.faults}
    return "; ".join(f"{key_text(k)}: {why}" for (_, k), why in sorted(lost.items(), key=str)[:3])
