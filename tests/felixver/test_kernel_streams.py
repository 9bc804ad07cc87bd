"""Each release's hand-written stream through felix-shim to the agent on the kernel (iptables)
driver, with real TCP connections between pod namespaces before and after the deltas.

Needs root and network namespaces (skipped with the reason otherwise): the lab and the agent are
the kernel tests' own fixtures (tests/kernel/conftest.py, through this folder's conftest.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from felix_shim.releases.differences import RELEASES
from tests.agentproc import wait_for
from tests.felixver.streams import stream
from tests.kernel.conftest import KernelAgent
from tests.kernel.netlab import Lab, netns_available, servers, tcp_ok

UNAVAILABLE = netns_available()
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(UNAVAILABLE is not None, reason=f"kernel tests skipped: {UNAVAILABLE}")]


def send_and_wait(agent: KernelAgent, messages: list[Any], done: Any) -> dict[str, Any]:
    """Felix's pipe, then the agent's report once `done(report)` holds and an apply finished.
    (Message counts would not do: felix-shim replays a compacted snapshot, in which v3.32's two
    host metadata messages for one node are one.)"""
    assert agent.shim is not None
    agent.shim.send(messages)

    def ready() -> dict[str, Any] | None:
        report = agent.state()
        return report if done(report) and report["last_apply"]["ok"] is not None else None

    return wait_for(ready, timeout=30, what=f"stream applied; {agent.tail()}")  # type: ignore[no-any-return]


def reachable(lab: Lab, src: int, port: int) -> bool:
    return tcp_ok(lab.pods[src - 1].ns, lab.pods[0].ipv4, port)


@pytest.mark.parametrize("release", RELEASES)
def test_release_stream_with_real_packets(release: str, lab: Lab, agent: KernelAgent) -> None:
    messages = stream(release, release)
    snapshot_end = [m.WhichOneof("payload") for m in messages].index("in_sync") + 1
    with servers(lab.pods[0].ns, (8080, 9090)):
        report = send_and_wait(agent, messages[:snapshot_end],
                               lambda r: r["in_sync"] and r["counts"]["workload_endpoints"] == 3)
        assert report["felix_version"] == release, report.get("felix_wire")
        assert report["last_apply"]["ok"], report["last_apply"]
        # pod2 is in s:client: 8080 only; pod3 is not; the profile lets nothing else in
        assert [reachable(lab, 2, 8080), reachable(lab, 2, 9090), reachable(lab, 3, 8080)] == [True, False, False]

        report = send_and_wait(agent, messages[snapshot_end:], lambda r: r["counts"]["routes"] == 1
                               and r["counts"]["host_metadata"] == 0)
        assert report["last_apply"]["ok"], report["last_apply"]
        # pod3 joined s:client and the policy moved to 9090
        assert [reachable(lab, 2, 9090), reachable(lab, 3, 9090), reachable(lab, 2, 8080)] == [True, True, False]
