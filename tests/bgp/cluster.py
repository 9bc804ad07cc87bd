"""A small cluster of agents' BGP managers, each driving a supervised BIRD inside its node namespace.

Each node has its own DataplaneState fed with the messages Felix would send that node (its own
blocks as LOCAL_WORKLOAD, the others' as REMOTE_WORKLOAD), and its own BgpConfig.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bgp import states as msgs
from tests.bgp.netns import Fabric, block_v4, block_v6, node_ipv4, node_ipv6, pod_ipv4
from vppagent.bgp.apply import BgpApplyResult, BirdApplier
from vppagent.bgp.config import BgpConfig
from vppagent.bgp.manager import BgpManager
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState

# Fast test timers: BIRD's default 5 s connect delay would dominate every scenario.
FAST_TIMERS: dict[str, Any] = {"connect_delay_time": 1, "connect_retry_time": 1, "error_wait_time": (1, 2)}


def hostname(n: int) -> str:
    return f"node{n}"


@dataclass
class Cluster:
    fabric: Fabric
    workdir: Path
    labels: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    states: dict[int, DataplaneState] = field(default_factory=dict)
    managers: dict[int, BgpManager] = field(default_factory=dict)

    @property
    def nodes(self) -> range:
        return range(1, self.fabric.nodes + 1)

    def felix_snapshot(self, n: int) -> list[felix.ToDataplane]:
        messages = [msgs.config_msg(hostname(n)), msgs.pool_msg("10.244.0.0/16"), msgs.pool_msg("fd10::/48")]
        for m in self.nodes:
            messages.append(msgs.host_msg(hostname(m), node_ipv4(m), node_ipv6(m), labels=self.labels.get(m)))
            messages.append(msgs.block_msg(block_v4(m), hostname(m), node_ipv4(m), local=m == n))
            messages.append(msgs.block_msg(block_v6(m), hostname(m), node_ipv6(m), local=m == n))
        messages.append(msgs.workload_route_msg(f"{pod_ipv4(n)}/32", hostname(n)))
        return messages

    def start(self, config_for: Callable[[int], dict[str, Any]]) -> dict[int, BgpApplyResult]:
        results = {}
        for n in self.nodes:
            node_dir = self.workdir / hostname(n)
            node_dir.mkdir(parents=True, exist_ok=True)
            config = BgpConfig.model_validate(
                {"enabled": True, **FAST_TIMERS, "config_path": node_dir / "bird.conf",
                 "socket_path": node_dir / "bird.ctl", "run_bird": True, **config_for(n)}
            )
            applier = BirdApplier(
                config.config_path, config.socket_path, run=True,
                command_prefix=["ip", "netns", "exec", self.fabric.node(n)],
                restart_backoff=(0.2, 2.0),
            )
            self.managers[n] = BgpManager(config, applier)
            self.states[n] = msgs.state_of(self.felix_snapshot(n))
            results[n] = self.managers[n].update(self.states[n])
        for n in self.nodes:
            assert self.managers[n].applier.wait_ready(5.0), f"bird on node{n} never answered"
        return results

    def send(self, n: int, messages: Iterable[felix.ToDataplane]) -> BgpApplyResult:
        """Felix sends `messages` to node n's agent, which applies the batch and updates BGP."""
        msgs.state_of(messages, self.states[n])
        return self.managers[n].update(self.states[n])

    def sessions(self, n: int) -> dict[str, str]:
        peers, _ = self.managers[n].applier.protocols()
        return {p["name"]: p["info"] for p in peers}

    def established(self, n: int, names: Iterable[str]) -> Callable[[], bool]:
        wanted = set(names)

        def check() -> bool:
            sessions = self.sessions(n)
            return all(sessions.get(name, "").startswith("Established") for name in wanted)

        return check

    def route_via(self, n: int, prefix: str, via: str) -> Callable[[], bool]:
        return lambda: f"via {via} " in self.fabric.kernel_route(n, prefix) + " "

    def route_absent(self, n: int, prefix: str) -> Callable[[], bool]:
        return lambda: self.fabric.kernel_route(n, prefix) == ""

    def close(self) -> None:
        for manager in self.managers.values():
            manager.close()
        self.managers.clear()
