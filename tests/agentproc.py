"""The agent as a real process, for tests that go through its sockets (integration, kernel, VPP)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vppagent.server.client import try_get_state

Spawn = Callable[..., "subprocess.Popen[bytes]"]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy and return its value; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class AgentProcess:
    """`vppagent run` with its gRPC and CNI sockets beside `socket`, logging to `log`.

    `prefix` runs it under another command (`ip netns exec NODE`); `spawn` lets a fixture record
    the pid so that it is killed before its namespace is deleted.
    """

    def __init__(self, socket: Path, log: Path, args: Sequence[str], prefix: Sequence[str] = (),
                 spawn: Spawn = subprocess.Popen) -> None:
        self.socket, self.log = socket, log
        self.args, self.prefix, self.spawn = list(args), list(prefix), spawn
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def cni_socket(self) -> Path:
        return self.socket.with_name("cni.sock")

    def start(self, timeout: float = 45.0) -> None:
        """Start and wait until GetState answers. Generous by default: on a loaded 2-core machine
        Python's imports alone take seconds. A process that died is reported at once."""
        argv = [*self.prefix, sys.executable, "-m", "vppagent.cli", "run", "--socket", str(self.socket),
                "--cni-socket", str(self.cni_socket), "--batch-window-ms", "5", *self.args]
        with open(self.log, "ab") as out:
            self.proc = self.spawn(argv, stdout=out, stderr=out)
        proc = self.proc
        try:
            wait_for(lambda: self.try_state() is not None or proc.poll() is not None, timeout=timeout,
                     what="agent up")
        except AssertionError:
            raise AssertionError(f"agent did not come up within {timeout} s; {self.tail()}") from None
        assert proc.poll() is None, f"agent exited with {proc.returncode}; {self.tail()}"

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
        return f"log {self.log}:\n{text}"

    def try_state(self) -> dict[str, Any] | None:
        return try_get_state(self.socket, timeout=2)

    def state(self) -> dict[str, Any]:
        report = self.try_state()
        assert report is not None, f"agent not answering; {self.tail()}"
        return report

    def kill(self) -> None:
        """SIGKILL, as a crash: no cleanup runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
