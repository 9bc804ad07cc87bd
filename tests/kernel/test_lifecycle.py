"""Churn, tampering and restarts, with real traffic flowing while they happen."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.kernel.conftest import KernelAgent, wait_for
from tests.kernel.netlab import ALLOWED_WAIT, Lab, in_netns, servers, sh, tcp_connect, tcp_ok
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b

pytestmark = pytest.mark.root


def snapshot(config: dict[str, str] | None = None, noise_port: int = 10000) -> list[felix.ToDataplane]:
    """pod1 → pod2:80 allowed; pod3 → pod2:9090 denied; pod3 exists with its own policy and set."""
    return [
        b.config(config or {}),
        b.ipset("s:clients", ["10.65.0.2/32"]),
        b.ipset("s:pod3-peers", ["10.65.0.3/32"]),
        b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:clients"])]),
        b.policy("noise", inbound=[b.rule("allow", protocol="tcp", dst_ports=[noise_port])]),
        b.policy("pod3-in", inbound=[b.rule("allow", src_ip_set_ids=["s:pod3-peers"])]),
        b.profile("kns.default", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        b.workload("default/pod1", "cali1", ipv4=["10.65.0.2/32"], profiles=["kns.default"]),
        b.workload("default/pod2", "cali2", ipv4=["10.65.0.3/32"], profiles=["kns.default"],
                   tiers=[b.tier("default", ingress=["web", "noise"])]),
        b.workload("default/pod3", "cali3", ipv4=["10.65.0.4/32"], profiles=["kns.default"],
                   tiers=[b.tier("default", ingress=["pod3-in"])]),
    ]


class Echo(threading.Thread):
    """Keeps an established TCP connection busy; records every failure."""

    def __init__(self, conn: socket.socket) -> None:
        super().__init__(daemon=True)
        self.conn, self.rounds = conn, 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        conn.settimeout(2)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.conn.sendall(b"12345678")
                if self.conn.recv(64) != b"12345678":
                    self.errors.append("short echo")
                self.rounds += 1
            except OSError as exc:
                self.errors.append(str(exc))
                return
            time.sleep(0.01)


class DeniedProbe(threading.Thread):
    """From inside a namespace, keeps trying a denied TCP port; counts any success."""

    def __init__(self, ns: str, dst: str, port: int) -> None:
        super().__init__(daemon=True)
        self.ns, self.dst, self.port = ns, dst, port
        self.attempts, self.leaks = 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                with socket.socket() as s:
                    s.settimeout(0.05)
                    self.attempts += 1
                    if s.connect_ex((self.dst, self.port)) == 0:
                        self.leaks += 1

        in_netns(self.ns, loop)


@contextmanager
def echo(lab: Lab) -> Iterator[Echo]:
    conn = tcp_connect(lab.pods[0].ns, "10.65.0.3", 80, ALLOWED_WAIT)
    assert conn is not None, "pod1 → pod2:80 must be allowed"
    worker = Echo(conn)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        worker.join(5)
        conn.close()


def test_established_flow_survives_and_denied_flow_never_leaks_during_100_updates(lab: Lab,
                                                                                 agent: KernelAgent) -> None:
    with servers(lab.pods[1].ns, (80, 9090)):
        agent.send(*snapshot(), b.in_sync())
        assert not tcp_ok(lab.pods[2].ns, "10.65.0.3", 9090)
        probe = DeniedProbe(lab.pods[2].ns, "10.65.0.3", 9090)
        with echo(lab) as flow:
            probe.start()
            restores_before = agent.state()["driver_status"]["counters"].get("restores", 0)
            for i in range(100):
                msgs = [b.policy("noise", inbound=[b.rule("allow", protocol="tcp", dst_ports=[10001 + i])])]
                if i % 10 == 0:  # now and then pod2's own chains are rewritten too
                    extra = [b.tier("audit", ingress=["noise"], default_action="Pass")] if i % 20 else []
                    msgs.append(b.workload("default/pod2", "cali2", ipv4=["10.65.0.3/32"], profiles=["kns.default"],
                                           tiers=[*extra, b.tier("default", ingress=["web", "noise"])]))
                agent.send(*msgs)
            probe.stop.set()
            probe.join(5)
            time.sleep(0.1)
            assert flow.errors == [], flow.errors
            assert flow.rounds > 20
        restores = agent.state()["driver_status"]["counters"]["restores"] - restores_before
        assert restores >= 100, "every update must really have been written"
        assert probe.attempts > 50 and probe.leaks == 0, \
            f"{probe.leaks} of {probe.attempts} denied connects got through"


def _save(lab: Lab) -> str:
    return sh("ip", "netns", "exec", lab.node, "iptables-nft-save", "-c", "-t", "filter")


def _our_rules(save: str, chain: str) -> list[str]:
    return [re.sub(r"^\[\d+:\d+\] ", "", line) for line in save.splitlines() if f"-A {chain} " in line]


def test_tampering_is_repaired_by_the_next_refresh(lab: Lab, agent: KernelAgent) -> None:
    with servers(lab.pods[1].ns, (80, 9090)):
        agent.send(*snapshot({"IptablesRefreshInterval": "1"}), b.in_sync())
        before = _save(lab)
        policy_chain = next(c for c in re.findall(r"^:(vpa-pi-\S+)", before, re.MULTILINE)
                            if _our_rules(before, c))
        sh("ip", "netns", "exec", lab.node, "iptables-nft", "-I", "vpa-tw-cali2", "1", "-j", "ACCEPT")
        sh("ip", "netns", "exec", lab.node, "iptables-nft", "-D", policy_chain, "1")
        assert tcp_ok(lab.pods[2].ns, "10.65.0.3", 9090, ALLOWED_WAIT), "the hand-inserted ACCEPT opened pod2"
        wait_for(lambda: _our_rules(_save(lab), "vpa-tw-cali2") == _our_rules(before, "vpa-tw-cali2")
                 and _our_rules(_save(lab), policy_chain) == _our_rules(before, policy_chain),
                 timeout=10, what="refresh repairing both chains")
        assert not tcp_ok(lab.pods[2].ns, "10.65.0.3", 9090)
        assert tcp_ok(lab.pods[0].ns, "10.65.0.3", 80, ALLOWED_WAIT)
        assert agent.state()["driver_status"]["counters"]["repairs"] >= 1


def _counter(save: str, chain: str) -> int:
    """Packets counted by the chain's first rule (conntrack ESTABLISHED accept)."""
    line = next(line for line in save.splitlines() if f"-A {chain} " in line)
    return int(re.match(r"^\[(\d+):", line).group(1))  # type: ignore[union-attr]


def test_restart_adopts_rules_without_flushing_and_removes_stale_objects(lab: Lab, agent: KernelAgent) -> None:
    with servers(lab.pods[1].ns, (80,)):
        agent.send(*snapshot(), b.in_sync())
        with echo(lab) as flow:
            wait_for(lambda: flow.rounds > 10, what="traffic on the established flow")
            agent.kill()
            counted = _counter(_save(lab), "vpa-tw-cali2")
            # Felix goes on while the agent is down; the shim replays the compacted state later.
            assert agent.shim is not None
            agent.shim.send([b.workload_remove("default/pod3"), b.policy_remove("pod3-in"),
                             b.ipset_remove("s:pod3-peers")])
            agent.sent += 3
            agent.start()
            wait_for(lambda: agent.state()["in_sync"] and agent.state()["counters"]["resyncs"] >= 1,
                     what="resync after restart")
            time.sleep(0.3)
            assert flow.errors == [], flow.errors
            rounds = flow.rounds
            wait_for(lambda: flow.rounds > rounds + 5, what="traffic after the restart")
        after = _save(lab)
        assert _counter(after, "vpa-tw-cali2") >= counted, "pod2's chain was rewritten (its counters reset)"
        assert "vpa-tw-cali3" not in after and "vpa-fw-cali3" not in after, "stale endpoint chains removed"
        assert "cali3" not in sh("ip", "-n", lab.node, "route", "show", "proto", "81")
        sets = sh("ip", "netns", "exec", lab.node, "ipset", "list", "-n")
        assert len(sets.split()) == 2, f"only s:clients (v4 and v6) should remain: {sets}"
        status = agent.state()["driver_status"]
        assert status["counters"]["resyncs"] == 1
