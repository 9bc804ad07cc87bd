"""Review of admit sessions per block (classifier/aggregate.py, admits.py, chains.py's
make-before-break): hand-made member changes at the edges, probed write by write on the emulator.

Before every write the driver sends and after its last one, the addresses of 10.66.0.0/24 that reach
the gated port must be only members of the old state or only members of the new one, and always
every member of both; once the change is done (or, after a refused write, once the next
convergence is done), exactly the new members. Edges: members that are prefixes (/30, /29, /25),
prefixes overlapping hosts and each other, IPv4-mapped IPv6 members, members at the /25 group
boundary, an add that merges blocks up to /25, a remove that splits a /25, a set shrinking to
empty, a session write refused mid-change, a new driver adopting chains that hold blocks (with and
without a refused write), blocks cut by an earlier deny of part of them, two gated sets sharing
members; and IPv6 blocks as integers (a set with an IPv6 member is never gated: source.py)."""

from __future__ import annotations

import ipaddress
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.classifier.aggregate import Aggregated, blocks, ladder
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState
from vppagent.vppsim import Direction, Packet, VppSim

BASE = int(ipaddress.ip_address("10.66.0.0"))
SPACE = 256
POD = "10.65.0.2"
WRITES = ("classify_add_del_table", "classify_add_del_session", "output_acl_set_interface", "acl_add_replace",
          "acl_del", "acl_interface_set_acl_list")


def hosts(first: int, last: int) -> list[str]:
    return [f"10.66.0.{i}" for i in range(first, last + 1)]


def messages(members: list[str], two: bool) -> list[Any]:
    """Set s allowed on tcp/80 (alone: sessions on the source alone); with `two`, set t also on
    tcp/80 and tcp/443, so P_s is a part of the drop region (sessions with the port)."""
    rules = [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s"])]
    if two:
        rules.append(b.rule("allow", protocol="tcp", dst_ports=[80, 443], src_ip_set_ids=["t"]))
    return [
        b.config({}),
        b.ipset("s", members, kind="net"),
        b.ipset("t", ["10.67.0.1"], kind="ip"),
        b.policy("web", namespace="ns", inbound=rules),
        b.workload("ns/web0", "cali0", ipv4=[f"{POD}/32"], tiers=[b.tier("default", ingress=["web"], namespace="ns")]),
    ]


def hosts_of(members: list[str]) -> frozenset[int]:
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


def converge(target: Target, driver: VppDriver, probe: Probe, state: DataplaneState, new: DataplaneState,
             what: str) -> bool:
    old_hosts = probe.now()
    new_hosts = hosts_of(sorted(new.ipsets["s"].members))
    probe.watching(target)
    try:
        ok = driver.apply(diff_states(state, new), new).ok
    finally:
        target.emulator.faults.clear()
    check_writes(probe, old_hosts, new_hosts, what)
    return ok


SEQUENCES = {
    "prefix members": [["10.66.0.0/30", "10.66.0.4/30"], ["10.66.0.0/29"], hosts(0, 7), ["10.66.0.0/30", *hosts(4, 7)],
                       ["10.66.0.0/31", "10.66.0.2/31", "10.66.0.5/32"], ["10.66.0.0/25"], hosts(0, 127)],
    "overlapping members": [["10.66.0.0/30", "10.66.0.1", "10.66.0.2"], ["10.66.0.1", "10.66.0.2"],
                            ["10.66.0.0/29", "10.66.0.0/30", "10.66.0.0/31", "10.66.0.1"], ["10.66.0.0/30"],
                            ["10.66.0.0/28", *hosts(0, 15)], hosts(0, 15), ["10.66.0.0/28"]],
    "group boundary": [["10.66.0.127", "10.66.0.128"], hosts(120, 135), hosts(96, 159), [*hosts(0, 127), "10.66.0.255"],
                       hosts(128, 255), ["10.66.0.0", "10.66.0.255"]],
    "merge up and split a /25": [[h for h in hosts(0, 127) if h != "10.66.0.64"], hosts(0, 127),
                                 [h for h in hosts(0, 127) if h != "10.66.0.127"], hosts(0, 127),
                                 [h for h in hosts(0, 127) if h not in ("10.66.0.0", "10.66.0.65")], hosts(0, 255)],
    "to empty and back": [hosts(0, 31), ["10.66.0.3"], [], hosts(0, 63), [], ["10.66.0.0/30"], []],
    "ipv4-mapped members": [["::ffff:10.66.0.5", *hosts(0, 3)], ["::ffff:10.66.0.0/126", "10.66.0.4"],
                            [*hosts(0, 7), "::ffff:10.66.0.8"]],
}


@pytest.mark.parametrize("two", [False, True], ids=["source-only", "with-ports"])
@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_edge_member_changes_admit_members_only_at_every_write(sim_target: Target, name: str, two: bool) -> None:
    interface = sim_target.pod("ns/web0")
    driver = make_driver(sim_target, classifier_min_members=1)
    steps = SEQUENCES[name]
    try:
        state = state_of(messages(["10.66.0.200"], two))
        assert driver.resync(state).ok
        assert driver.status()["gated_lists"] == 1, "the list is gated, or this tests no chain"
        probe = Probe(sim_target.emulator, interface)
        assert probe.now() == hosts_of(["10.66.0.200"])
        for i, members in enumerate(steps):
            new = state_of(messages(members, two))
            assert converge(sim_target, driver, probe, state, new, f"step {i} to {members}")
            assert probe.now() == hosts_of(members), f"step {i} to {members}"
            state = new
    finally:
        driver.close()


REFUSALS = [("classify_add_del_session", 1), ("classify_add_del_session", 2), ("classify_add_del_table", 1),
            ("classify_add_del_session:delete", 1)]
CHANGES = {
    "merge": ([h for h in hosts(0, 127) if h != "10.66.0.64"], hosts(0, 127)),
    "split": (hosts(0, 127), [h for h in hosts(0, 127) if h not in ("10.66.0.64", "10.66.0.3")]),
    "prefix to hosts": (["10.66.0.0/29", "10.66.0.9"], [*hosts(0, 5), "10.66.0.9", "10.66.0.12"]),
    "one in, one out": (["10.66.0.0", "10.66.0.1"], ["10.66.0.0", "10.66.0.2"]),
}
def refusal_cases() -> list[Any]:
    out = []
    for refuse in REFUSALS:
        for change in sorted(CHANGES):
            for two in (False, True):
                shape = "with-ports" if two else "source-only"
                name = f"{refuse[0]}#{refuse[1]}-{change}-{shape}"
                out.append(pytest.param(refuse, change, two, id=name))
    return out


@pytest.mark.parametrize(("refuse", "change", "two"), refusal_cases())
def test_a_refused_write_mid_change_then_the_next_convergence(sim_target: Target, refuse: tuple[str, int],
                                                                change: str, two: bool) -> None:
    """VPP refuses one write of a member change (the pass fails); every write of it and of the next
    convergence admits members of one state only, and the next convergence ends at the new members."""
    before, after = CHANGES[change]
    interface = sim_target.pod("ns/web0")
    driver = make_driver(sim_target, classifier_min_members=1)
    try:
        state = state_of(messages(before, two))
        assert driver.resync(state).ok
        probe = Probe(sim_target.emulator, interface)
        assert probe.now() == hosts_of(before)
        new = state_of(messages(after, two))
        probe.refuse = refuse
        converge(sim_target, driver, probe, state, new, "the refused change")
        assert probe.refused == 1, f"the change sent no {refuse[0]} #{refuse[1]}: nothing was refused"
        probe.refuse = None
        # the next convergence: the agent resyncs what it holds against the same wanted state
        old_hosts, new_hosts = probe.now(), hosts_of(after)
        probe.watching(sim_target)
        try:
            assert driver.resync(new).ok
        finally:
            sim_target.emulator.faults.clear()
        check_writes(probe, old_hosts, new_hosts, "the next convergence")
        assert probe.now() == new_hosts
    finally:
        driver.close()


@pytest.mark.parametrize("two", [False, True], ids=["source-only", "with-ports"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_new_driver_adopts_chains_holding_blocks(sim_target: Target, change: str, two: bool) -> None:
    """The agent restarts between two member states: the new driver's first resync adopts the chain
    (its blocks as VPP holds them) and moves it to the new members, write by write."""
    before, after = CHANGES[change]
    interface = sim_target.pod("ns/web0")
    first = make_driver(sim_target, classifier_min_members=1)
    try:
        assert first.resync(state_of(messages(before, two))).ok
    finally:
        first.close()
    probe = Probe(sim_target.emulator, interface)
    old_hosts = probe.now()
    assert old_hosts == hosts_of(before)
    second = make_driver(sim_target, classifier_min_members=1)
    try:
        probe.watching(sim_target)
        try:
            assert second.resync(state_of(messages(after, two))).ok
        finally:
            sim_target.emulator.faults.clear()
        check_writes(probe, old_hosts, hosts_of(after), "the new driver's resync")
        assert probe.now() == hosts_of(after)
        # and a member change after the adoption, by diff
        state = state_of(messages(after, two))
        new = state_of(messages(before, two))
        assert converge(sim_target, second, probe, state, new, "after the adoption")
        assert probe.now() == hosts_of(before)
    finally:
        second.close()


# -- a deny of part of a block ahead of the set's allow (P_s cut below a block) -------------------------

DENIED = {"10.66.0.4/31": frozenset(range(BASE + 4, BASE + 6)), "10.66.0.130/32": frozenset({BASE + 130}),
          "10.66.0.64/27": frozenset(range(BASE + 64, BASE + 96))}


def denied_messages(members: list[str], deny: list[str], two: bool) -> list[Any]:
    rules = [b.rule("deny", protocol="tcp", dst_ports=[80], src_net=deny),
             b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s"])]
    if two:
        rules.append(b.rule("allow", protocol="tcp", dst_ports=[80, 443], src_ip_set_ids=["t"]))
    return [
        b.config({}),
        b.ipset("s", members, kind="net"),
        b.ipset("t", ["10.67.0.1"], kind="ip"),
        b.policy("web", namespace="ns", inbound=rules),
        b.workload("ns/web0", "cali0", ipv4=[f"{POD}/32"], tiers=[b.tier("default", ingress=["web"], namespace="ns")]),
    ]


@pytest.mark.parametrize("two", [False, True], ids=["source-only", "with-ports"])
@pytest.mark.parametrize("deny", [["10.66.0.4/31"], ["10.66.0.4/31", "10.66.0.130/32", "10.66.0.64/27"]],
                         ids=["one", "three"])
def test_blocks_cut_by_an_earlier_deny_admit_only_the_allowed_members(sim_target: Target, deny: list[str],
                                                                       two: bool) -> None:
    denied = frozenset().union(*(DENIED[d] for d in deny))
    steps = [hosts(0, 7), hosts(0, 127), [h for h in hosts(0, 127) if h != "10.66.0.5"], hosts(0, 255),
             ["10.66.0.0/29"], ["10.66.0.0/25", "10.66.0.128/26"], hosts(4, 5), hosts(0, 3)]
    interface = sim_target.pod("ns/web0")
    driver = make_driver(sim_target, classifier_min_members=1)
    try:
        state = state_of(denied_messages(["10.66.0.200"], deny, two))
        assert driver.resync(state).ok
        assert driver.status()["gated_lists"] == 1, "the list is gated, or this tests no chain"
        probe = Probe(sim_target.emulator, interface)
        assert probe.now() == hosts_of(["10.66.0.200"])
        for i, members in enumerate(steps):
            new = state_of(denied_messages(members, deny, two))
            old_hosts, new_hosts = probe.now(), hosts_of(members) - denied
            probe.watching(sim_target)
            try:
                assert driver.apply(diff_states(state, new), new).ok
            finally:
                sim_target.emulator.faults.clear()
            check_writes(probe, old_hosts, new_hosts, f"step {i} to {members}")
            assert probe.now() == new_hosts, f"step {i} to {members}"
            state = new
    finally:
        driver.close()


@pytest.mark.parametrize("refuse", [("classify_add_del_session", 1), ("classify_add_del_table", 1)],
                         ids=["session#1", "table#1"])
@pytest.mark.parametrize("change", ["merge", "split"])
def test_a_refused_write_in_a_new_drivers_first_resync(sim_target: Target, refuse: tuple[str, int],
                                                        change: str) -> None:
    """The agent restarts between two member states and VPP refuses a write of the new driver's
    first resync; that resync and the next one admit members of one state only, ending at the new."""
    before, after = CHANGES[change]
    interface = sim_target.pod("ns/web0")
    first = make_driver(sim_target, classifier_min_members=1)
    try:
        assert first.resync(state_of(messages(before, True))).ok
    finally:
        first.close()
    probe = Probe(sim_target.emulator, interface)
    second = make_driver(sim_target, classifier_min_members=1)
    try:
        new = state_of(messages(after, True))
        for round_, refusing in enumerate((refuse, None)):
            old_hosts = probe.now()
            probe.refuse = refusing
            probe.watching(sim_target)
            try:
                second.resync(new)
            finally:
                sim_target.emulator.faults.clear()
            assert refusing is None or probe.refused == 1, "nothing was refused"
            check_writes(probe, old_hosts, hosts_of(after), f"resync {round_}")
        assert probe.now() == hosts_of(after)
    finally:
        second.close()


# -- two gated sets on the same port, sharing members --------------------------------------------------


def shared_messages(s: list[str], u: list[str]) -> list[Any]:
    rules = [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s"]),
             b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["u"])]
    return [
        b.config({}),
        b.ipset("s", s, kind="net"),
        b.ipset("u", u, kind="net"),
        b.policy("web", namespace="ns", inbound=rules),
        b.workload("ns/web0", "cali0", ipv4=[f"{POD}/32"], tiers=[b.tier("default", ingress=["web"], namespace="ns")]),
    ]


def test_members_shared_by_two_sets_stay_admitted_while_either_holds_them(sim_target: Target) -> None:
    steps = [(hosts(0, 7), hosts(4, 11)), (hosts(0, 3), hosts(4, 11)), (hosts(0, 3), ["10.66.0.0/29"]),
             (["10.66.0.0/28"], hosts(0, 15)), (hosts(0, 15), []), ([], hosts(0, 15)), (hosts(0, 127), hosts(0, 127)),
             ([h for h in hosts(0, 127) if h != "10.66.0.9"], hosts(0, 127)), ([], [])]
    interface = sim_target.pod("ns/web0")
    driver = make_driver(sim_target, classifier_min_members=1)
    try:
        state = state_of(shared_messages(["10.66.0.200"], ["10.66.0.201"]))
        assert driver.resync(state).ok
        assert driver.status()["gated_lists"] == 1, "the list is gated, or this tests no chain"
        probe = Probe(sim_target.emulator, interface)
        assert probe.now() == hosts_of(["10.66.0.200", "10.66.0.201"])
        for i, (s, u) in enumerate(steps):
            new = state_of(shared_messages(s, u))
            old_hosts, new_hosts = probe.now(), hosts_of([*s, *u])
            probe.watching(sim_target)
            try:
                assert driver.apply(diff_states(state, new), new).ok
            finally:
                sim_target.emulator.faults.clear()
            check_writes(probe, old_hosts, new_hosts, f"step {i} to s={s} u={u}")
            assert probe.now() == new_hosts, f"step {i}"
            state = new
    finally:
        driver.close()


# -- IPv6 blocks, as integers (the same arithmetic at 128 bits) ---------------------------------------

V6_BASE = int(ipaddress.ip_address("fd00:66::"))


@pytest.mark.parametrize("levels", [1, 2, 4, 8])
def test_ipv6_blocks_hold_exactly_the_members_through_changes(levels: int) -> None:
    rng = random.Random(600 + levels)
    lengths = ladder(6, levels)
    kept = Aggregated(6, lengths)
    held: set[int] = set()
    for _ in range(200):
        added = {V6_BASE + rng.randrange(512) for _ in range(rng.randrange(0, 10))}
        if rng.random() < 0.2:  # a run across a group boundary (groups are /121 at 8 levels)
            start = rng.randrange(512)
            added |= {V6_BASE + (start + i) % 512 for i in range(rng.randrange(1, 200))}
        removed = set(rng.sample(sorted(held), min(len(held), rng.randrange(0, 10)))) - added
        kept.update(sorted(added), sorted(removed))
        held = (held - removed) | added
        found = kept.all_blocks()
        covered = [a for address, length in found for a in range(address, address + (1 << (128 - length)))]
        assert sorted(covered) == sorted(held), "no non-member, no member missing, no address twice"
        assert set(found) == set(blocks(6, held, lengths))
        assert all(length in lengths and address % (1 << (128 - length)) == 0 for address, length in found)

