"""Anti-spoofing on the kernel driver with real packets: a workload sends only from its own
addresses and its allowed spoofed source prefixes (Felix's allow_spoofed_source_prefixes), and
from nothing else; the allowance holds on its own interface only and goes when Felix takes it back.

Each probe is a UDP datagram from a pod, with its source bound to an address added to the pod's
interface, to a sink in the client namespace (routed through the node); the sink records which
tokens arrived, so a probe is seen or not without any return path for a spoofed source."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.conftest import KernelAgent
from tests.kernel.netlab import ALLOWED_WAIT, DENIED_WAIT, Lab, in_netns, sh
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b

pytestmark = pytest.mark.root
SINK_PORT = 7007
RESEND = 0.1  # a first datagram can wait on neighbour discovery; a resend costs nothing
# Per family: the client's address, pod1's allowed prefix and an address in it for pod1 and pod2,
# and an address nobody is allowed (all inside the pod range the client routes to the node).
ADDRS = {
    4: {"client": "198.18.0.2", "allowed": "10.65.1.0/24", "in1": "10.65.1.5", "in2": "10.65.1.6",
        "stray": "10.65.2.7", "plen": "32"},
    6: {"client": "fd18::2", "allowed": "fd65:1::/64", "in1": "fd65:1::5", "in2": "fd65:1::6",
        "stray": "fd65:2::7", "plen": "128"},
}


class Sink:
    """A UDP socket in one namespace recording every token it receives."""

    def __init__(self, ns: str, family: int) -> None:
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.sock = in_netns(ns, functools.partial(socket.socket, af, socket.SOCK_DGRAM))
        self.sock.bind(("0.0.0.0" if family == 4 else "::", SINK_PORT))
        self.seen: set[str] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = self.sock.recv(256)
                if not data:
                    return
                with self._lock:
                    self.seen.add(data.decode())

    def has(self, token: str) -> bool:
        with self._lock:
            return token in self.seen

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.contextmanager
def sink(ns: str, family: int) -> Iterator[Sink]:
    s = Sink(ns, family)
    try:
        yield s
    finally:
        s.close()


def arrives(the_sink: Sink, ns: str, source: str, dst: str, token: str, wait: float) -> bool:
    """Send `token` from `source` (an address of the pod) in `ns` until the sink has it or `wait`
    passes; whether it arrived."""
    af = socket.AF_INET6 if ":" in dst else socket.AF_INET
    sender = in_netns(ns, functools.partial(socket.socket, af, socket.SOCK_DGRAM))
    try:
        sender.bind((source, 0))
        deadline = time.monotonic() + wait
        while True:
            sender.sendto(token.encode(), (dst, SINK_PORT))
            pause = min(RESEND, deadline - time.monotonic())
            if pause <= 0:
                return the_sink.has(token)
            time.sleep(pause)
            if the_sink.has(token):
                return True
    finally:
        sender.close()


def workload(lab: Lab, i: int, allowed: tuple[str, ...] = ()) -> felix.ToDataplane:
    pod = lab.pods[i - 1]
    msg = b.workload(f"default/pod{i}", pod.iface, ipv4=[f"{pod.ipv4}/32"], ipv6=[f"{pod.ipv6}/128"],
                     profiles=["open"])
    msg.workload_endpoint_update.endpoint.allow_spoofed_source_prefixes.extend(allowed)
    return msg


def rp_filter(lab: Lab, iface: str) -> str:
    return in_netns(lab.node, lambda: Path(f"/proc/sys/net/ipv4/conf/{iface}/rp_filter").read_text().strip())


@pytest.mark.parametrize("family", [4, 6])
def test_a_workload_sends_from_its_addresses_and_allowed_prefixes_only(lab: Lab, agent: KernelAgent,
                                                                        family: int) -> None:
    a = ADDRS[family]
    pod1, pod2 = lab.pods[0], lab.pods[1]
    own1, own2 = (pod1.ipv4, pod2.ipv4) if family == 4 else (pod1.ipv6, pod2.ipv6)
    for pod, extra in ((pod1, (a["in1"], a["stray"], own2)), (pod2, (a["in2"],))):
        for addr in extra:
            sh("ip", "-n", pod.ns, "addr", "add", f"{addr}/{a['plen']}", "dev", "eth0",
               *(("nodad",) if family == 6 else ()))
    agent.send(b.config({"IptablesRefreshInterval": "0"}),
               b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
               workload(lab, 1, (a["allowed"],)), workload(lab, 2), workload(lab, 3), b.in_sync())
    counter = iter(range(1000))

    def check(step: str, *cases: tuple[str, str, bool]) -> None:
        problems = []
        for ns, source, expect in cases:
            token = f"{step}-{next(counter)}"
            got = arrives(out, ns, source, a["client"], token, ALLOWED_WAIT if expect else DENIED_WAIT)
            if got != expect:
                problems.append(f"from {source}: {'arrived' if got else 'dropped'}, expected "
                                f"{'arrival' if expect else 'a drop'}")
        assert not problems, f"IPv{family} {step}:\n" + "\n".join(problems)

    with sink(lab.client, family) as out:
        check("allowed", (pod1.ns, own1, True), (pod1.ns, a["in1"], True),
              (pod1.ns, a["stray"], False),  # a source nobody may use
              (pod1.ns, own2, False),  # another pod's address
              (pod2.ns, a["in2"], False))  # pod1's prefix, from another interface
        if family == 4:
            assert (rp_filter(lab, pod1.iface), rp_filter(lab, pod2.iface)) == ("0", "1")
        # Felix takes the allowance back: the prefix is spoofed again, the own address still works.
        agent.send(workload(lab, 1))
        check("withdrawn", (pod1.ns, own1, True), (pod1.ns, a["in1"], False))
        if family == 4:
            assert rp_filter(lab, pod1.iface) == "1"
