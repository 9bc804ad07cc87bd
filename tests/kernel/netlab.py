"""Network namespaces for kernel tests: a node with pods on veths (as Calico's CNI leaves them),
and probes that send real packets from inside a namespace.

Code runs "in" a namespace on a thread that called setns() (the network namespace is per thread),
so probes are plain sockets, fast and with exact timeouts. Only namespaces created here (with the
run's unique prefix) are ever deleted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
NODE_MAC = "ee:ee:ee:ee:ee:ee"  # Calico's host-side veth MAC; its link-local is the pods' v6 gateway
NODE_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"
# `ip netns add` and `del` wait for the kernel's RTNL lock, which a namespace being dismantled
# elsewhere holds while it unregisters its links: seconds per thousand veths, longer under load
# (docs/kernel-driver.md, "Tests under load"). A bound for a hung command, not an expected time.
NETNS_TIMEOUT = 300.0
READY_TIMEOUT = 60.0  # addresses and carriers of a new lab: normally milliseconds
# How long a probe waits for its answer. A packet the policy denies never arrives, so a denied
# probe costs its whole wait: DENIED_WAIT, as long as an allowed answer takes on a quiet machine
# many times over. An allowed probe returns the moment it is answered, so it may wait much longer:
# on a loaded machine the first packet to a pod waits for neighbour discovery and a busy CPU.
DENIED_WAIT = 0.6
ALLOWED_WAIT = 5.0


def sh(*argv: str, check: bool = True, timeout: float = 60) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run fn on a fresh thread inside namespace `ns` and return its result."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            from pyroute2 import netns as pyroute2_netns

            pyroute2_netns.setns(ns)
            box["result"] = fn()
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def netns_available() -> str | None:
    """None when we can create namespaces, else why not."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    probe = f"vpk-probe-{os.getpid()}"
    try:
        sh("ip", "netns", "add", probe, timeout=NETNS_TIMEOUT)
        sh("ip", "netns", "del", probe, timeout=NETNS_TIMEOUT)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"network namespaces unavailable: {exc}"
    for tool in ("iptables-nft-restore", "ipset", "conntrack"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
            return f"{tool} is not installed"
    return None


@dataclass
class Pod:
    ns: str
    iface: str  # host side, in the node namespace
    ipv4: str
    ipv6: str


@dataclass
class Lab:
    """node (forwarding, a default route into the client namespace) + pods + a client."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    def add_ns(self, name: str) -> str:
        sh("ip", "netns", "add", name, timeout=NETNS_TIMEOUT)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        # No DAD: addresses must work at once (the tests have no duplicate addresses).
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
           "net.ipv6.conf.default.accept_dad=0")
        return name

    def build(self, pods: int = 3) -> Lab:
        node, client = self.add_ns(self.node), self.add_ns(self.client)
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client)
        for ns, v4, v6 in ((node, "198.18.0.1/24", "fd18::1/64"), (client, "198.18.0.2/24", "fd18::2/64")):
            sh("ip", "-n", ns, "addr", "add", v4, "dev", "eth0")
            sh("ip", "-n", ns, "addr", "add", v6, "dev", "eth0", "nodad")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        # proxy_arp answers for the pods' gateway only with a route out of another device.
        sh("ip", "-n", node, "route", "add", "default", "via", "198.18.0.2", "dev", "eth0")
        sh("ip", "-n", node, "-6", "route", "add", "default", "via", "fd18::2", "dev", "eth0")
        sh("ip", "-n", client, "route", "add", "10.65.0.0/16", "via", "198.18.0.1")
        sh("ip", "-n", client, "-6", "route", "add", "fd65::/16", "via", "fd18::1")
        for i in range(1, pods + 1):
            self.add_pod(i)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every lab link has carrier and every IPv6 address is usable: the veths' link-local
        addresses (the pods' IPv6 gateway is the node's) appear only once the kernel has seen the
        carrier, and any address stays "tentative" until the kernel's address worker has run,
        even without DAD. A tentative address answers no neighbour solicitation, so a probe sent
        before then waits a whole retransmission (1 s) and, under load, times out as a "drop"."""
        links = [(self.node, "eth0"), (self.client, "eth0"), *((self.node, p.iface) for p in self.pods),
                 *((p.ns, "eth0") for p in self.pods)]
        deadline = time.monotonic() + timeout
        while True:
            waiting = [f"{ns} {dev}: {why}" for ns, dev in links if (why := _not_ready(ns, dev, self))]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"lab not ready after {timeout:.0f} s: {'; '.join(waiting)}")
            time.sleep(0.02)

    def add_pod(self, i: int) -> Pod:
        pod = Pod(self.add_ns(f"{self.prefix}-pod{i}"), f"cali{i}", f"10.65.0.{i + 1}", f"fd65::{i + 1:x}")
        sh("ip", "-n", self.node, "link", "add", pod.iface, "address", NODE_MAC, "type", "veth",
           "peer", "name", "eth0", "netns", pod.ns)
        sh("ip", "-n", self.node, "link", "set", pod.iface, "up")
        sh("ip", "-n", pod.ns, "addr", "add", f"{pod.ipv4}/32", "dev", "eth0")
        sh("ip", "-n", pod.ns, "addr", "add", f"{pod.ipv6}/128", "dev", "eth0", "nodad")
        sh("ip", "-n", pod.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", pod.ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        sh("ip", "-n", pod.ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        sh("ip", "-n", pod.ns, "-6", "route", "add", "default", "via", NODE_LINK_LOCAL, "dev", "eth0")
        self.pods.append(pod)
        return pod

    def spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        self.pids.append(proc.pid)
        return proc  # type: ignore[no-any-return]

    def cleanup(self) -> None:
        for pid in self.pids:  # processes first: they would outlive their namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False, timeout=NETNS_TIMEOUT)


def _not_ready(ns: str, dev: str, lab: Lab) -> str | None:
    """Why `dev` in `ns` cannot carry IPv6 yet, or None."""
    link = sh("ip", "-n", ns, "-o", "link", "show", "dev", dev)
    if "LOWER_UP" not in link:
        return "no carrier"
    addresses = sh("ip", "-n", ns, "-6", "-o", "addr", "show", "dev", dev)
    if "tentative" in addresses:
        return "tentative address"
    if "fe80::" not in addresses:
        return "no link-local address"
    if ns == lab.node and dev != "eth0" and NODE_LINK_LOCAL not in addresses:
        return f"no {NODE_LINK_LOCAL} (the pods' IPv6 gateway)"
    return None


# -- listeners and probes ---------------------------------------------------------------------


class Servers:
    """TCP and UDP echo servers on the given ports in one namespace, on daemon threads."""

    def __init__(self, ns: str, ports: tuple[int, ...], v6: bool = False) -> None:
        self.sockets: list[socket.socket] = []
        family = socket.AF_INET6 if v6 else socket.AF_INET
        for port in ports:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = in_netns(ns, functools.partial(socket.socket, family, kind))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("::" if v6 else "0.0.0.0", port))
                if kind == socket.SOCK_STREAM:
                    s.listen(64)
                    threading.Thread(target=self._accept, args=(s,), daemon=True).start()
                else:
                    threading.Thread(target=self._echo_udp, args=(s,), daemon=True).start()
                self.sockets.append(s)

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def _accept(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = s.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo_udp(s: socket.socket) -> None:
        with contextlib.suppress(OSError, TypeError):  # TypeError: recvfrom after shutdown
            while True:
                data, peer = s.recvfrom(4096)
                s.sendto(data, peer)

    def close(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_connect(ns: str, dst: str, port: int, timeout: float = 0.6) -> socket.socket | None:
    def attempt() -> socket.socket | None:
        s = socket.socket(_family(dst), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            s.sendall(b"ping")
            if s.recv(16) == b"ping":
                return s
        except OSError:
            pass
        s.close()
        return None

    return in_netns(ns, attempt)


def tcp_ok(ns: str, dst: str, port: int, timeout: float = 0.6) -> bool:
    s = tcp_connect(ns, dst, port, timeout)
    if s is None:
        return False
    s.close()
    return True


def udp_ok(ns: str, dst: str, port: int, timeout: float = 0.6) -> bool:
    def attempt() -> bool:
        with socket.socket(_family(dst), socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.sendto(b"hello", (dst, port))
                return s.recvfrom(64)[0] == b"hello"
            except OSError:
                return False

    return in_netns(ns, attempt)


def ping_ok(ns: str, dst: str, wait: float = 1.0) -> bool:
    """Real ping (echo request), one packet, waiting `wait` seconds for the reply."""
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", f"{wait:g}", dst],
                          capture_output=True, timeout=wait + 60, check=False).returncode == 0


def nc_ok(ns: str, dst: str, port: int, wait: int = 1) -> bool:
    """netcat's connect check (-z), waiting `wait` seconds (netcat takes whole seconds)."""
    return subprocess.run(["ip", "netns", "exec", ns, "nc", "-z", "-w", str(wait), dst, str(port)],
                          capture_output=True, timeout=wait + 60, check=False).returncode == 0


@contextlib.contextmanager
def servers(ns: str, ports: tuple[int, ...], v6: bool = False) -> Iterator[Servers]:
    s = Servers(ns, ports, v6)
    try:
        yield s
    finally:
        s.close()
