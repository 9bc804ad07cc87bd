"""Network namespaces for real-BIRD tests: N node namespaces on one bridge, one pod per node.

Every name starts with a per-run prefix (`vab<pid><n>`), so parallel runs never touch each other's
namespaces, and teardown deletes only the namespaces this object created. Node N gets
198.18.0.N/24 and fd00::N/64 on eth0, and a pod namespace with 10.244.N.2 behind caliN
(Calico's proxy-ARP wiring), so pings between pods travel over the routes BIRD installed.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_counter = itertools.count()


def ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout, check=check)


def netns_usable() -> str | None:
    """None if namespaces can be created here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    name = f"vab{os.getpid()}probe"
    try:
        proc = ip("netns", "add", name, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` unavailable: {exc}"
    if proc.returncode != 0:
        return f"`ip netns add` failed: {proc.stderr.strip()}"
    ip("netns", "del", name, check=False)
    return None


def node_ipv4(n: int) -> str:
    return f"198.18.0.{n}"


def node_ipv6(n: int) -> str:
    return f"fd00::{n}"


def pod_ipv4(n: int) -> str:
    return f"10.244.{n}.2"


def block_v4(n: int) -> str:
    return f"10.244.{n}.0/24"


def block_v6(n: int) -> str:
    return f"fd10:0:0:{n}::/64"


@dataclass
class Fabric:
    nodes: int
    prefix: str = field(default_factory=lambda: f"vab{os.getpid()}{next(_counter)}")
    created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def node(self, n: int) -> str:
        return self.ns(f"node{n}")

    def pod(self, n: int) -> str:
        return self.ns(f"pod{n}")

    def _add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self.created.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _sysctl(self, ns: str, *settings: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], check=True, timeout=10)

    def build(self) -> Fabric:
        fabric = self.ns("fabric")
        self._add_ns(fabric)
        ip("-n", fabric, "link", "add", "br0", "type", "bridge")
        ip("-n", fabric, "link", "set", "br0", "up")
        for n in range(1, self.nodes + 1):
            node, pod = self.node(n), self.pod(n)
            self._add_ns(node)
            self._add_ns(pod)
            ip("-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", f"n{n}", "netns", fabric)
            ip("-n", fabric, "link", "set", f"n{n}", "master", "br0", "up")
            self._sysctl(node, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
            ip("-n", node, "addr", "add", f"{node_ipv4(n)}/24", "dev", "eth0")
            ip("-n", node, "addr", "add", f"{node_ipv6(n)}/64", "dev", "eth0", "nodad")
            ip("-n", node, "link", "set", "eth0", "up")
            # proxy_arp on caliN answers only when the node has a route to the target.
            ip("-n", node, "route", "add", "default", "via", "198.18.0.254", "dev", "eth0", "onlink")
            ip("-n", node, "link", "add", f"cali{n}", "type", "veth", "peer", "name", "eth0", "netns", pod)
            self._sysctl(node, f"net.ipv4.conf.cali{n}.proxy_arp=1", f"net.ipv4.neigh.cali{n}.proxy_delay=0")
            ip("-n", node, "link", "set", f"cali{n}", "up")
            ip("-n", node, "route", "add", f"{pod_ipv4(n)}/32", "dev", f"cali{n}", "scope", "link")
            ip("-n", pod, "addr", "add", f"{pod_ipv4(n)}/32", "dev", "eth0")
            ip("-n", pod, "link", "set", "eth0", "up")
            ip("-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            ip("-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        return self

    def destroy(self) -> None:
        for name in reversed(self.created):
            ip("netns", "del", name, check=False)
        self.created.clear()

    # -- observations ---------------------------------------------------------------------------
    def kernel_route(self, n: int, prefix: str) -> str:
        family = "-6" if ":" in prefix else "-4"
        return ip("-n", self.node(n), family, "route", "show", "exact", prefix).stdout.strip()

    def ping(self, from_pod: int, to_address: str, count: int = 1) -> bool:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.pod(from_pod), "ping", "-c", str(count), "-W", "1", to_address],
            capture_output=True, text=True, timeout=10, check=False,
        )
        return proc.returncode == 0


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `predicate()` held, or None if it never did within `timeout`."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)


def all_hold(checks: Sequence[Callable[[], bool]]) -> Callable[[], bool]:
    return lambda: all(check() for check in checks)
