"""Real BIRD 2 in network namespaces, driven only through BgpManager.update(state).

Three node namespaces on one bridge, each with a supervised bird on the agent-rendered config:
sessions come up, every node's blocks reach the other kernels, pods ping across nodes over those
routes, and changes in Felix's state (new block, removed block, removed node) propagate by reload.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.bgp import states as msgs
from tests.bgp.cluster import Cluster, hostname
from tests.bgp.netns import all_hold, block_v4, block_v6, node_ipv4, node_ipv6, pod_ipv4, wait_for
from tests.bgp.scenarios import RR_LABEL

pytestmark = pytest.mark.root

TIMEOUT = 10.0


def v4_name(kind: str, n: int) -> str:
    return f"{kind}_{node_ipv4(n).replace('.', '_')}"


def v6_name(kind: str, n: int) -> str:
    return f"{kind}_{node_ipv6(n).replace(':', '_')}"


def mesh_sessions(cluster: Cluster, n: int) -> list[str]:
    others = [m for m in cluster.nodes if m != n]
    return [v4_name("Mesh", m) for m in others] + [v6_name("Mesh", m) for m in others]


def settle(predicate: Callable[[], bool], what: str) -> float:
    took = wait_for(predicate, TIMEOUT)
    assert took is not None, f"not within {TIMEOUT} s: {what}"
    print(f"{what}: {took:.3f} s")
    return took


def test_mesh_routes_pings_and_changes(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    started = time.monotonic()
    results = cluster.start(lambda n: {})
    assert all(r.ok and r.changed for r in results.values()), results
    settle(all_hold([cluster.established(n, mesh_sessions(cluster, n)) for n in cluster.nodes]),
           "all 12 sessions Established")
    settle(all_hold([cluster.route_via(n, block(m), address(m))
                     for n in cluster.nodes for m in cluster.nodes if m != n
                     for block, address in ((block_v4, node_ipv4), (block_v6, node_ipv6))]),
           "every block in every other kernel")
    print(f"start to converged: {time.monotonic() - started:.3f} s")
    for n in cluster.nodes:
        assert cluster.fabric.kernel_route(n, block_v4(n)).startswith("blackhole")
    for a, b in ((1, 2), (2, 3), (3, 1)):
        assert cluster.fabric.ping(a, pod_ipv4(b)), f"pod{a} -> pod{b}"

    # Nothing changed: no new file, no reload.
    again = cluster.managers[1].update(cluster.states[1])
    assert (again.ok, again.changed, again.reloaded) == (True, False, False)

    new_block = "10.244.11.0/24"
    result = cluster.send(1, [msgs.block_msg(new_block, hostname(1), local=True)])
    assert result.ok and result.changed and result.reloaded
    settle(all_hold([cluster.route_via(n, new_block, node_ipv4(1)) for n in (2, 3)]), "new block propagated")

    cluster.send(1, [msgs.route_remove_msg(new_block)])
    settle(all_hold([cluster.route_absent(n, new_block) for n in (2, 3)]), "removed block withdrawn")
    assert cluster.fabric.kernel_route(1, new_block) == ""

    for n in (1, 2):
        cluster.send(n, [msgs.host_remove_msg(hostname(3))])
    settle(all_hold([cluster.route_absent(n, block_v4(3)) for n in (1, 2)]
                    + [lambda n=n: v4_name("Mesh", 3) not in cluster.sessions(n) for n in (1, 2)]),
           "removed node's sessions and routes gone")
    assert cluster.established(1, [v4_name("Mesh", 2), v6_name("Mesh", 2)])()
    assert cluster.fabric.ping(1, pod_ipv4(2))


def test_route_reflector(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, labels={1: RR_LABEL})

    def config(n: int) -> dict[str, Any]:
        rr: dict[str, Any] = {"node_mesh": False, "route_reflector_label": "route-reflector=true"}
        return {**rr, "route_reflector_cluster_id": "224.0.0.1"} if n == 1 else rr

    cluster.start(config)
    settle(all_hold([cluster.established(1, [v4_name("RrClient", 2), v4_name("RrClient", 3)]),
                     cluster.established(2, [v4_name("Rr", 1)]), cluster.established(3, [v4_name("Rr", 1)])]),
           "reflector sessions Established")
    # Clients only talk to the reflector, yet learn each other's blocks with the original next hop.
    assert set(cluster.sessions(2)) == {v4_name("Rr", 1), v6_name("Rr", 1)}
    settle(all_hold([cluster.route_via(2, block_v4(3), node_ipv4(3)),
                     cluster.route_via(3, block_v4(2), node_ipv4(2)),
                     cluster.route_via(2, block_v6(3), node_ipv6(3))]), "reflected routes in client kernels")
    assert cluster.fabric.ping(2, pod_ipv4(3))


def test_wrong_password_keeps_only_that_session_down(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    cluster.start(lambda n: {"node_mesh_password": "wrong-secret" if n == 3 else "mesh-secret"})
    settle(all_hold([cluster.established(1, [v4_name("Mesh", 2)]), cluster.established(2, [v4_name("Mesh", 1)])]),
           "sessions with matching passwords Established")
    # Several connect retries (1 s) later, node3's sessions are still not up.
    time.sleep(2.5)
    assert not cluster.sessions(1)[v4_name("Mesh", 3)].startswith("Established")
    assert not any(info.startswith("Established") for info in cluster.sessions(3).values())
    assert cluster.fabric.kernel_route(1, block_v4(3)) == ""
    assert cluster.established(1, [v4_name("Mesh", 2), v6_name("Mesh", 2)])()


def test_sigkilled_bird_is_restarted_and_sessions_return(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(2)
    cluster.start(lambda n: {})
    settle(all_hold([cluster.established(n, mesh_sessions(cluster, n)) for n in cluster.nodes]), "mesh up")
    supervisor = cluster.managers[2].applier.supervisor
    assert supervisor is not None
    pid = supervisor.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    settle(lambda: supervisor.pid not in (None, pid), "bird restarted after SIGKILL")
    settle(all_hold([cluster.established(n, mesh_sessions(cluster, n)) for n in cluster.nodes]),
           "sessions re-established after SIGKILL")
    assert supervisor.restarts == 1
    status = cluster.managers[2].status()
    assert status["bird_process"]["restarts"] == 1
    assert {p["info"] for p in status["peers"]} == {"Established"}
    # A config change after the restart still reaches the new process.
    cluster.send(2, [msgs.block_msg("10.244.22.0/24", hostname(2), local=True)])
    settle(cluster.route_via(1, "10.244.22.0/24", node_ipv4(2)), "change after restart propagated")
    assert cluster.fabric.ping(1, pod_ipv4(2))
