"""Receive queues' rx-mode (``sw_interface_set_rx_mode``, ``sw_interface_rx_placement_dump``).

As a running 26.06 answers (``vnet/interface_api.c``, ``vnet/interface/rx_queue.c``), for the
interfaces the emulator gives a receive queue (af_packet: one queue, on the main thread):
- a new af_packet interface's queue is in interrupt mode already;
- setting a mode on an interface that does not exist answers INVALID_SW_IF_INDEX; on one without
  receive queues (a loopback) OK, changing nothing; naming a queue it does not have
  (``queue_id_valid``), or adaptive mode (af_packet cannot), UNIMPLEMENTED;
- "default" reads back as polling; any other mode as set, again and again (no error for "already").
Taps and memifs have receive queues in VPP too; the emulator keeps none for them.
"""

from __future__ import annotations

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import Interface, InterfaceKind, InterfaceTable

RX_MODE_POLLING = 1
RX_MODE_INTERRUPT = 2
RX_MODE_ADAPTIVE = 3
RX_MODE_DEFAULT = 4


class RxQueues:
    def __init__(self, interfaces: InterfaceTable) -> None:
        self._interfaces = interfaces
        self.modes: dict[int, int] = {}  # interface -> its queue's mode, once set

    def on_interface_deleted(self, sw_if_index: int) -> None:
        self.modes.pop(sw_if_index, None)

    def handlers(self) -> dict[str, Handler]:
        return {
            "sw_interface_set_rx_mode": self.sw_interface_set_rx_mode,
            "sw_interface_rx_placement_dump": self.sw_interface_rx_placement_dump,
        }

    @staticmethod
    def _has_queue(interface: Interface) -> bool:
        return interface.kind is InterfaceKind.AF_PACKET

    def mode(self, interface: Interface) -> int:
        return self.modes.get(interface.sw_if_index, RX_MODE_INTERRUPT)

    def sw_interface_set_rx_mode(self, request: Request) -> list[Reply]:
        reply = "sw_interface_set_rx_mode_reply"
        interface = self._interfaces.get(request.fields["sw_if_index"])
        if interface is None:
            return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX)
        if not self._has_queue(interface):
            return retval_reply(reply, OK)
        mode = request.fields["mode"]
        if (request.fields["queue_id_valid"] and request.fields["queue_id"] != 0) or mode == RX_MODE_ADAPTIVE:
            return retval_reply(reply, ApiError.UNIMPLEMENTED)
        self.modes[interface.sw_if_index] = RX_MODE_POLLING if mode == RX_MODE_DEFAULT else mode
        return retval_reply(reply, OK)

    def sw_interface_rx_placement_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["sw_if_index"]
        return [("sw_interface_rx_placement_details", {
            "sw_if_index": i.sw_if_index, "queue_id": 0, "worker_id": 0, "mode": self.mode(i)})
            for i in self._interfaces.all() if self._has_queue(i) and wanted in (NO_INDEX, i.sw_if_index)]
