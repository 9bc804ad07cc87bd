"""Fault injection for the emulator (what a flaky or unusual VPP does to its clients).

All methods are thread-safe and take effect on the next matching message.  Restarting
VPP is :meth:`vppagent.vppsim.server.VppSim.restart`; the host without
``/dev/vhost-net`` is :attr:`Faults.no_vhost_net`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vppagent.vppsim.state import SimConfig


@dataclass
class _Rejection:
    retval: int
    remaining: int | None
    when: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass
class _Stall:
    seconds: float
    message: str | None
    remaining: int | None


@dataclass
class _MidDumpDrop:
    after_details: int
    remaining: int | None


class Faults:
    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._rejections: dict[str, _Rejection] = {}
        self._stalls: list[_Stall] = []
        self._mid_dump_drops: dict[str, _MidDumpDrop] = {}
        self._table_crcs: dict[str, str | None] = {}

    @property
    def no_vhost_net(self) -> bool:
        """True makes ``tap_create_v3`` fail with -11, as VPP does on hosts without ``/dev/vhost-net``."""
        return not self._config.vhost_net

    @no_vhost_net.setter
    def no_vhost_net(self, value: bool) -> None:
        self._config.vhost_net = not value

    def reject(self, message: str, retval: int, *, times: int | None = None,
               when: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
        """Answer ``message`` with ``retval`` (and zeros) without applying it; ``times=None`` = always;
        ``when``: only the requests whose decoded fields it accepts (e.g. one kind of table)."""
        with self._lock:
            self._rejections[message] = _Rejection(retval, times, when)

    def stall(self, seconds: float, *, message: str | None = None, times: int | None = 1) -> None:
        """Hold the replies to the next ``times`` requests (of ``message``, or any) for ``seconds``."""
        with self._lock:
            self._stalls.append(_Stall(seconds, message, times))

    def drop_mid_dump(self, message: str, *, after_details: int = 1, times: int | None = 1) -> None:
        """Close the client's connection after sending ``after_details`` details of dump ``message``."""
        with self._lock:
            self._mid_dump_drops[message] = _MidDumpDrop(after_details, times)

    def omit_from_message_table(self, message: str) -> None:
        """Leave ``message`` out of the table sent at connect (a VPP without that message)."""
        with self._lock:
            self._table_crcs[message] = None

    def alter_crc(self, message: str, crc: str) -> None:
        """Advertise ``message`` with a different CRC (8 hex digits), as a VPP of another release would."""
        with self._lock:
            self._table_crcs[message] = crc

    def clear(self) -> None:
        with self._lock:
            self._rejections.clear()
            self._stalls.clear()
            self._mid_dump_drops.clear()
            self._table_crcs.clear()
        self._config.vhost_net = True

    # -- used by the server -----------------------------------------------------------------------
    def table_crc_overrides(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._table_crcs)

    def take_rejection(self, message: str, fields: Mapping[str, Any] | None = None) -> int | None:
        with self._lock:
            rejection = self._rejections.get(message)
            if rejection is None or (rejection.when is not None and not rejection.when(fields or {})):
                return None
            if rejection.remaining is not None:
                rejection.remaining -= 1
                if rejection.remaining <= 0:
                    del self._rejections[message]
            return rejection.retval

    def take_stall(self, message: str) -> float:
        with self._lock:
            for stall in self._stalls:
                if stall.message in (None, message):
                    if stall.remaining is not None:
                        stall.remaining -= 1
                        if stall.remaining <= 0:
                            self._stalls.remove(stall)
                    return stall.seconds
            return 0.0

    def take_mid_dump_drop(self, message: str) -> int | None:
        with self._lock:
            drop = self._mid_dump_drops.get(message)
            if drop is None:
                return None
            if drop.remaining is not None:
                drop.remaining -= 1
                if drop.remaining <= 0:
                    del self._mid_dump_drops[message]
            return drop.after_details
