"""Kernel-test fixtures: per-test namespaces with a unique prefix; the agent on the iptables driver
running inside the node namespace, fed by the real felix-shim (FelixStandIn)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProcess, wait_for
from tests.kernel.netlab import Lab, netns_available
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab.felix_standin import FelixStandIn

_RUN = f"vpk{os.getpid() % 100000}"
_COUNTER = itertools.count()
_UNAVAILABLE = netns_available()
APPLY_TIMEOUT = 120.0  # a bound for a stuck agent; an apply here takes milliseconds when the machine is quiet


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


class KernelAgent(AgentProcess):
    """`vppagent run --driver iptables` inside the node namespace, and Felix (the shim) feeding it."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        super().__init__(workdir / "agent.sock", workdir / "agent.log", ["--driver", "iptables"],
                         prefix=["ip", "netns", "exec", lab.node], spawn=lab.spawn)
        self.lab, self.workdir = lab, workdir
        self.shim: FelixStandIn | None = None
        self.sent = 0

    def start_felix(self) -> FelixStandIn:
        self.shim = FelixStandIn(self.socket, log_path=self.workdir / "shim.log")
        self.lab.pids.append(self.shim.process.pid)
        return self.shim

    def send(self, *msgs: felix.ToDataplane) -> dict[str, Any]:
        """Send to Felix's pipe and wait until the agent has applied all of it."""
        assert self.shim is not None
        self.sent += self.shim.send(msgs)
        target = self.sent

        def applied() -> dict[str, Any] | None:
            # GetState waits for the worker's lock, which an apply holds: an apply slowed down
            # by a busy machine (another namespace being dismantled holds the kernel's RTNL lock,
            # which route and sysctl writes need) leaves a GetState unanswered for seconds. That
            # is a reason to ask again, not a failure; a dead agent is one.
            assert self.proc is not None and self.proc.poll() is None, f"agent exited; {self.tail()}"
            report = self.try_state()
            done = (report is not None and report["counters"]["messages"] >= target
                    and report["last_apply"]["ok"] is not None)
            return report if done else None

        report: dict[str, Any] = wait_for(applied, timeout=APPLY_TIMEOUT,
                                          what=f"{target} messages applied; log:\n{self.tail()}")
        return report

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = self.state()["driver_status"]["calls"]
        return calls

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.close()
        super().stop()


@pytest.fixture
def agent(lab: Lab, tmp_path: Path) -> Iterator[KernelAgent]:
    a = KernelAgent(lab, tmp_path)
    a.start()
    a.start_felix()
    try:
        yield a
    finally:
        a.stop()
