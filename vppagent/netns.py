"""Run code inside another network namespace, on a thread of its own.

setns(2) with CLONE_NEWNET moves only the calling thread, and sockets it opens (netlink, TCP) stay
in that namespace, as do /proc/sys/net paths and child processes it starts. So the work runs on a
fresh thread that enters the namespace, verifies it really did, and ends with the work. pyroute2's
`NetNS` forks a helper process instead, which can crash once gRPC's threads are running.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name_or_path: str | Path) -> Path:
    """A name means /run/netns/NAME (what `ip netns add` makes); a path is used as given."""
    text = str(name_or_path)
    return Path(text) if "/" in text else Path("/run/netns") / text


def enter_netns(name_or_path: str | Path) -> None:
    """Move the calling thread into the namespace; raise OSError if it did not happen."""
    path = netns_path(name_or_path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {path}: {os.strerror(code)}")
    finally:
        os.close(fd)
    if os.stat("/proc/thread-self/ns/net").st_ino != os.stat(path).st_ino:
        raise OSError(f"setns {path} did not take effect")


def call_in_netns(name_or_path: str | Path | None, fn: Callable[[], T]) -> T:
    """`fn()` run inside the namespace (None: right here) and its result or exception."""
    if name_or_path is None:
        return fn()
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            enter_netns(name_or_path)
            result.append(fn())
        except BaseException as exc:  # handed back to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=body, name="netns", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
