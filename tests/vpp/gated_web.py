"""One pod (ns/web0) whose ingress list gates an IP set on tcp/80, probed write by write on the
emulator: the set-up the admit-block tests share (test_admit_blocks.py, test_review_blocks.py).

`Probe.now` asks the emulator which addresses of 10.66.0.0/24 reach the pod's tcp/80; `watched`
runs a convergence with the probe taking that picture before every write the driver sends (and
refusing one, when asked), then checks every picture and the last against the old and new members."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState
from vppagent.vppsim import Direction, Packet, VppSim

BASE = int(ipaddress.ip_address("10.66.0.0"))
SPACE = 256  # members are drawn from 10.66.0.0/24
POD = "10.65.0.2"
WRITES = ("classify_add_del_table", "classify_add_del_session", "output_acl_set_interface", "acl_add_replace",
          "acl_del", "acl_interface_set_acl_list")
_T = TypeVar("_T")


def web_messages(rules: list[Any], sets: Mapping[str, tuple[Sequence[str], str]]) -> list[Any]:
    """The IP sets (name -> members, kind), policy "web" with `rules` inbound, and ns/web0 in its tier."""
    return [
        b.config({}),
        *(b.ipset(name, list(members), kind=kind) for name, (members, kind) in sets.items()),
        b.policy("web", namespace="ns", inbound=rules),
        b.workload("ns/web0", "cali0", ipv4=[f"{POD}/32"], tiers=[b.tier("default", ingress=["web"], namespace="ns")]),
    ]


def messages(members: Sequence[str], two: bool, t: Sequence[str] = ("10.67.0.1",)) -> list[Any]:
    """Set s allowed on tcp/80 (alone: P_s is the whole drop region, sessions on the source alone);
    with `two`, set t also on tcp/80 and tcp/443, so P_s is a part of it (sessions with the port)."""
    rules = [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s"])]
    if two:
        rules.append(b.rule("allow", protocol="tcp", dst_ports=[80, 443], src_ip_set_ids=["t"]))
    return web_messages(rules, {"s": (members, "net"), "t": (t, "ip")})


def hosts_of(members: Sequence[str]) -> frozenset[int]:
    """The addresses of the space the members cover (IPv4 ones: an IPv6 member covers none)."""
    out: set[int] = set()
    for m in members:
        net = ipaddress.ip_network(m, strict=False)
        if net.version == 4:
            out |= {int(a) for a in net if BASE <= int(a) < BASE + SPACE}
    return frozenset(out)


@dataclass
class Probe:
    """From inside the emulator, before each write: which addresses of the space reach tcp/80;
    `refuse` (optional) says which write to refuse, by message name and its count so far."""

    sim: VppSim
    interface: int
    seen: list[frozenset[int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    refuse: tuple[str, int] | None = None
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> frozenset[int]:
        with self.sim.state.lock:
            self.sim.state.acl.clear_sessions()
            return frozenset(a for a in range(BASE, BASE + SPACE) if self.sim.evaluate(
                self.interface, Direction.OUTPUT,
                Packet.make(ipaddress.ip_address(a), ipaddress.ip_address(POD), 6, 40000, 80)).permitted)

    def before(self, message: str) -> Callable[[Mapping[str, Any]], bool]:
        def when(fields: Mapping[str, Any]) -> bool:
            with self.lock:
                self.seen.append(self.now())
                kinds = [message] if fields.get("is_add", True) else [message, f"{message}:delete"]
                for kind in kinds:
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    if self.refuse == (kind, self.counts[kind]):
                        self.refused += 1
                        return True
            return False
        return when

    def watching(self, target: Target) -> None:
        self.seen, self.counts = [], {}
        for message in WRITES:
            target.emulator.faults.reject(message, -1, when=self.before(message))


def check_writes(probe: Probe, old: frozenset[int], new: frozenset[int], what: str) -> None:
    for i, at in enumerate([*probe.seen, probe.now()]):
        assert old & new <= at, f"{what}, write {i}: members of both unadmitted: {sorted(old & new - at)[:8]}"
        assert at <= old or at <= new, (
            f"{what}, write {i}: admitted a mix: not new {sorted(at - new)[:8]}, not old {sorted(at - old)[:8]}")


def watched(target: Target, probe: Probe, new: frozenset[int], what: str, action: Callable[[], _T]) -> _T:
    """`action` (a convergence) with the probe watching every write; then every picture holds only
    members of the state before it or only of `new`, and every member of both. Its result."""
    old = probe.now()
    probe.watching(target)
    try:
        result = action()
    finally:
        target.emulator.faults.clear()
    check_writes(probe, old, new, what)
    return result


def applied(target: Target, driver: VppDriver, probe: Probe, state: DataplaneState, new: DataplaneState,
            wanted: frozenset[int], what: str) -> bool:
    """An apply from `state` to `new`, `watched` (`wanted`: the addresses `new` admits); whether
    the driver answered ok."""
    return watched(target, probe, wanted, what, lambda: driver.apply(diff_states(state, new), new).ok)


@contextlib.contextmanager
def gated(target: Target, msgs: list[Any]) -> Iterator[tuple[VppDriver, Probe, DataplaneState]]:
    """ns/web0 attached and a driver (every set gated) that resynced `msgs`, its list gated: the
    driver, a probe of the pod's interface, and the state."""
    interface = target.pod("ns/web0")
    driver = make_driver(target, classifier_min_members=1)
    try:
        state = state_of(msgs)
        assert driver.resync(state).ok
        assert driver.status()["gated_lists"] == 1, "the list is gated, or this tests no chain"
        yield driver, Probe(target.emulator, interface), state
    finally:
        driver.close()


def programmed_by_an_earlier_agent(target: Target, msgs: list[Any]) -> None:
    """A driver programs `msgs` and goes (an agent that stops): what it wrote stays in VPP."""
    first = make_driver(target, classifier_min_members=1)
    try:
        assert first.resync(state_of(msgs)).ok
    finally:
        first.close()
