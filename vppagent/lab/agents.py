"""One agent per lab node: `vppagent run` inside the node's namespace, its BIRD, its CNI socket
and its Felix (the real felix-shim on fd 3/4, fed by `FelixStandIn`).

The agent runs BGP with `--bird-run`, so BIRD lives in the node namespace as the agent's child,
on the config the agent renders; fast session timers come from a `bgp:` section in its YAML.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml

from vppagent.gen.cni import cni_pb2, cni_pb2_grpc
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab.felix_standin import FelixStandIn
from vppagent.lab.record import LabRecord
from vppagent.server.client import try_get_state

T = TypeVar("T")
# BIRD's defaults (5 s connect delay) would dominate a lab run; these bring sessions up in ~1 s.
FAST_BGP: dict[str, Any] = {"connect_delay_time": 1, "connect_retry_time": 1, "error_wait_time": [1, 2]}


class LabError(RuntimeError):
    """The lab could not be set up; the message says which part and points at its log."""


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class NodeAgent:
    def __init__(self, node: str, namespace: str, workdir: Path, record: LabRecord, driver: str = "iptables",
                 bgp: dict[str, Any] | None = None, extra_args: list[str] | None = None) -> None:
        self.node, self.namespace, self.record, self.driver = node, namespace, record, driver
        self.dir = workdir / node
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "agent.sock"
        self.cni_socket = self.dir / "cni.sock"
        self.bird_config = self.dir / "bird.conf"
        self.bird_socket = self.dir / "bird.ctl"
        self.log = self.dir / "agent.log"
        self.bgp = {"hostname": node, **FAST_BGP, **(bgp or {})}
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.felix: FelixStandIn | None = None
        self.sent = 0  # messages written to Felix's pipe since the agent's stream opened

    # -- processes -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the agent (without waiting for it: nodes start in parallel)."""
        config = self.dir / "agent.yaml"
        config.write_text(yaml.safe_dump({"bgp": self.bgp}, sort_keys=False))
        argv = ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "vppagent.cli", "run",
                "--driver", self.driver, "--socket", str(self.socket), "--cni-socket", str(self.cni_socket),
                "--config", str(config), "--bird-config", str(self.bird_config),
                "--bird-socket", str(self.bird_socket), "--bird-run", "--batch-window-ms", "5",
                *self.extra_args]
        with open(self.log, "ab") as out:
            # Own session: a Ctrl-C in the terminal reaches the lab, which stops agents in order.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, env=self._env())
        self.record.add_process(self.proc.pid, "agent", f"agent {self.node}")

    @staticmethod
    def _env() -> dict[str, str]:
        env = dict(os.environ)
        # pyroute2's NetNS (CNI Add) forks the agent; with gRPC's fork handlers on, the child
        # of a process whose gRPC threads are busy can die with SIGSEGV.
        env.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
        return env

    def wait_ready(self, timeout: float = 20.0) -> None:
        def answering() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise LabError(f"agent on {self.node} exited with {self.proc.returncode}; {self.tail()}")
            return self.try_state() is not None

        wait_until(answering, timeout, f"the agent on {self.node} to answer; {self.tail()}")

    def start_felix(self, wait: bool = True) -> FelixStandIn:
        self.felix = FelixStandIn(self.socket, log_path=self.dir / "shim.log")
        self.record.add_process(self.felix.process.pid, "shim", f"felix-shim {self.node}")
        if wait:
            self.wait_felix_connected()
        return self.felix

    def wait_felix_connected(self, timeout: float = 15.0) -> None:
        # Until the shim's stream is open, messages would be folded into its replay snapshot
        # (compacted); once it is open, each message is counted by the agent as it arrives.
        wait_until(lambda: self.state()["counters"]["streams"] >= 1, timeout,
                   f"felix-shim to connect to the agent on {self.node}")

    def restart(self, bgp: dict[str, Any] | None = None, timeout: float = 20.0) -> None:
        """Stop the agent (it stops its BIRD), start it again with new BGP settings if given, and
        wait until felix-shim has reconnected and replayed its snapshot, as after an agent upgrade."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)
        if bgp is not None:
            self.bgp = {"hostname": self.node, **FAST_BGP, **bgp}
        self.start()
        self.wait_ready(timeout)
        if self.felix is not None:
            report = wait_until(lambda: (r := self.state())["in_sync"] and r["last_apply"]["ok"] and r, timeout,
                                f"felix-shim to replay its snapshot to the restarted agent on {self.node}")
            # The replay is the compacted state, not what was sent: count from here on.
            self.sent = report["counters"]["messages"]

    def stop(self, timeout: float = 5.0) -> None:
        if self.felix is not None:
            self.felix.close(timeout=2.0)
            self.felix = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def tail(self, chars: int = 1500) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"agent log {self.log}:\n{text[-chars:]}" if text else f"agent log {self.log} is empty"

    # -- the agent's APIs ---------------------------------------------------------------------------
    def try_state(self) -> dict[str, Any] | None:
        return try_get_state(self.socket)

    def state(self) -> dict[str, Any]:
        report = self.try_state()
        if report is None:
            raise LabError(f"the agent on {self.node} stopped answering; {self.tail()}")
        return report

    def cni_add(self, pod: str, namespace: str, netns: Path, address: str) -> cni_pb2.AddReply:
        request = cni_pb2.AddRequest(
            interface_name="eth0", netns=str(netns),
            container_ips=[cni_pb2.IPConfig(address=address)],
            workload=cni_pb2.WorkloadIDs(name=pod, pod=pod, namespace=namespace, endpoint="eth0",
                                         node=self.node, orchestrator="k8s"))
        with grpc.insecure_channel(f"unix:{self.cni_socket}") as channel:
            stub = cni_pb2_grpc.CniDataplaneStub(channel)  # type: ignore[no-untyped-call]
            reply: cni_pb2.AddReply = stub.Add(request, timeout=15)
        if not reply.successful:
            raise LabError(f"CNI Add of {pod} on {self.node} failed: {reply.error_message}")
        return reply

    # -- Felix -------------------------------------------------------------------------------------
    def send(self, messages: list[felix.ToDataplane]) -> None:
        assert self.felix is not None, "start_felix() first"
        self.sent += self.felix.send(messages)

    def wait_applied(self, timeout: float = 20.0) -> dict[str, Any]:
        """Until the agent has taken every message sent and applied them. The agent counts a
        message and applies its batch under one lock that GetState also takes, so a report that
        counts them all was made after they were applied."""
        def applied() -> dict[str, Any] | None:
            report = self.state()
            last = report["last_apply"]
            if report["counters"]["messages"] < self.sent or not report["in_sync"] or last["ok"] is None:
                return None
            if last["ok"] is False:
                raise LabError(f"the agent on {self.node} failed to apply: {last['error']}")
            return report

        report: dict[str, Any] = wait_until(applied, timeout, f"the agent on {self.node} to apply "
                                            f"{self.sent} messages")
        return report

    # -- BIRD ------------------------------------------------------------------------------------
    def bgp_sessions(self) -> dict[str, str]:
        """`birdc show protocols` through the agent's BIRD socket: BGP protocol name -> info."""
        try:
            proc = subprocess.run(["birdc", "-s", str(self.bird_socket), "show", "protocols"],
                                  capture_output=True, text=True, timeout=5, check=False)
        except subprocess.TimeoutExpired:
            return {}
        sessions = {}
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "BGP":
                sessions[fields[0]] = " ".join(fields[6:]) if len(fields) > 6 else fields[3]
        return sessions

    def kernel_route(self, prefix: str) -> str:
        proc = subprocess.run(["ip", "-n", self.namespace, "route", "show", "exact", prefix],
                              capture_output=True, text=True, timeout=5, check=False)
        return proc.stdout.strip()
