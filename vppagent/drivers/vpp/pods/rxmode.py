"""Pod af_packet interfaces in interrupt rx-mode.

A polled receive queue keeps VPP's loop busy whether packets come or not: on a VPP with only a main
thread (the small nodes this runs on) that is a core per node. In interrupt mode VPP sleeps until the
kernel signals a frame. The driver sets it on every af_packet pod interface before admin up (CNI Add,
re-creation after a VPP restart) and, on every read of VPP (resync, reconnect), sets it again on pod
interfaces whose queues are in another mode (someone changed it, or a VPP whose default is polling):
a read with nothing to change writes nothing. VPP 26.06 already gives af_packet queues interrupt mode
at creation (rx-placement dump, checked here), so on it the set at creation changes nothing; it makes
the mode the driver's decision rather than a release's default. A refusal is logged, not a failure: a
polled interface still forwards, only at a cost. Taps are left as VPP makes them (not checked here:
no /dev/vhost-net on these machines).
"""

from __future__ import annotations

import logging

from vppagent.drivers.vpp.api.calls import RX_MODE_INTERRUPT, VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.programmed import AF_PACKET_DEV_TYPE, Programmed

log = logging.getLogger(__name__)


def set_interrupt(calls: VppCalls, sw_if_index: int, what: str) -> bool:
    """Interrupt mode on the interface's queues; False (logged) when VPP refuses."""
    try:
        calls.set_rx_interrupt(sw_if_index, what)
    except ApiRefused as exc:
        log.warning("%s left in its rx-mode: %s", what, exc)
        return False
    return True


def settle_rx_modes(calls: VppCalls, programmed: Programmed) -> int:
    """Interrupt mode on af_packet pod interfaces with a queue in another mode; how many were set."""
    pods = set(programmed.pod_interfaces().values())
    modes = calls.rx_modes()
    changed = 0
    for sw_if_index in sorted(pods):
        info = programmed.interfaces.get(sw_if_index)
        if info is None or info.dev_type != AF_PACKET_DEV_TYPE:
            continue
        if any(mode != RX_MODE_INTERRUPT for mode in modes.get(sw_if_index, [])):
            changed += set_interrupt(calls, sw_if_index, f"pod interface {info.name}")
    return changed
