"""Kernel-test fixtures: per-test namespaces with a unique prefix; the agent on the iptables driver
running inside the node namespace, fed by the real felix-shim (FelixStandIn)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.netlab import Lab, netns_available
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab.felix_standin import FelixStandIn
from vppagent.server.client import try_get_state

_RUN = f"vpk{os.getpid() % 100000}"
_COUNTER = itertools.count()
_UNAVAILABLE = netns_available()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _UNAVAILABLE is None:
        return
    # Only our own tests: other directories decide for themselves.
    skip = pytest.mark.skip(reason=f"kernel tests skipped: {_UNAVAILABLE}")
    here = Path(__file__).parent
    for item in items:
        if "root" in item.keywords and here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab(f"{_RUN}-{next(_COUNTER)}")
    try:
        yield lab.build()
    finally:
        lab.cleanup()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class KernelAgent:
    """`vppagent run --driver iptables` inside the node namespace, and Felix (the shim) feeding it."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.socket = workdir / "agent.sock"
        self.log = workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.shim: FelixStandIn | None = None
        self.sent = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = self.lab.spawn(
                ["ip", "netns", "exec", self.lab.node, sys.executable, "-m", "vppagent.cli", "run",
                 "--driver", "iptables", "--socket", str(self.socket), "--batch-window-ms", "5"],
                stdout=out, stderr=out)
        # Generous: on a loaded 2-core machine Python's imports alone can take seconds. A process
        # that died is reported at once, with its log read after the fact.
        try:
            wait_for(lambda: self.try_state() is not None or self.proc.poll() is not None,  # type: ignore[union-attr]
                     timeout=45, what="agent up")
        except AssertionError:
            raise AssertionError(f"agent did not come up within 45 s; log:\n{self.tail()}") from None
        assert self.proc.poll() is None, f"agent exited with {self.proc.returncode}; log:\n{self.tail()}"

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def start_felix(self) -> FelixStandIn:
        self.shim = FelixStandIn(self.socket, log_path=self.workdir / "shim.log")
        self.lab.pids.append(self.shim.process.pid)
        return self.shim

    def try_state(self) -> dict[str, Any] | None:
        return try_get_state(self.socket, timeout=5)

    def state(self) -> dict[str, Any]:
        report = self.try_state()
        assert report is not None, f"agent not answering; log:\n{self.tail()}"
        return report

    def send(self, *msgs: felix.ToDataplane) -> dict[str, Any]:
        """Send to Felix's pipe and wait until the agent has applied all of it."""
        assert self.shim is not None
        self.sent += self.shim.send(msgs)
        target = self.sent

        def applied() -> dict[str, Any] | None:
            report = self.state()
            done = report["counters"]["messages"] >= target and report["last_apply"]["ok"] is not None
            return report if done else None

        report: dict[str, Any] = wait_for(applied, what=f"{target} messages applied; log:\n{self.tail()}")
        return report

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = self.state()["driver_status"]["calls"]
        return calls

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def agent(lab: Lab, tmp_path: Path) -> Iterator[KernelAgent]:
    a = KernelAgent(lab, tmp_path)
    a.start()
    a.start_felix()
    try:
        yield a
    finally:
        a.stop()
