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
from typing import Any

import pytest

from tests.vpp.gated_web import (
    BASE,
    Probe,
    applied,
    gated,
    hosts_of,
    messages,
    programmed_by_an_earlier_agent,
    watched,
    web_messages,
)
from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.classifier.aggregate import Aggregated, blocks, ladder
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.lab import builders as b
from vppagent.state.model import DataplaneState


def hosts(first: int, last: int) -> list[str]:
    return [f"10.66.0.{i}" for i in range(first, last + 1)]


def converge(target: Target, driver: VppDriver, probe: Probe, state: DataplaneState, new: DataplaneState,
             what: str, hosts_now: frozenset[int] | None = None) -> bool:
    """An apply from `state` to `new`, watched write by write (gated_web.py); `hosts_now`: the
    addresses the new state admits (default: set s's members)."""
    wanted = hosts_of(sorted(new.ipsets["s"].members)) if hosts_now is None else hosts_now
    return applied(target, driver, probe, state, new, wanted, what)


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
    with gated(sim_target, messages(["10.66.0.200"], two)) as (driver, probe, state):
        assert probe.now() == hosts_of(["10.66.0.200"])
        for i, members in enumerate(SEQUENCES[name]):
            new = state_of(messages(members, two))
            assert converge(sim_target, driver, probe, state, new, f"step {i} to {members}")
            assert probe.now() == hosts_of(members), f"step {i} to {members}"
            state = new


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
    with gated(sim_target, messages(before, two)) as (driver, probe, state):
        assert probe.now() == hosts_of(before)
        new = state_of(messages(after, two))
        probe.refuse = refuse
        converge(sim_target, driver, probe, state, new, "the refused change")
        assert probe.refused == 1, f"the change sent no {refuse[0]} #{refuse[1]}: nothing was refused"
        probe.refuse = None
        # the next convergence: the agent resyncs what it holds against the same wanted state
        assert watched(sim_target, probe, hosts_of(after), "the next convergence", lambda: driver.resync(new).ok)
        assert probe.now() == hosts_of(after)


@pytest.mark.parametrize("two", [False, True], ids=["source-only", "with-ports"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_new_driver_adopts_chains_holding_blocks(sim_target: Target, change: str, two: bool) -> None:
    """The agent restarts between two member states: the new driver's first resync adopts the chain
    (its blocks as VPP holds them) and moves it to the new members, write by write."""
    before, after = CHANGES[change]
    interface = sim_target.pod("ns/web0")
    programmed_by_an_earlier_agent(sim_target, messages(before, two))
    probe = Probe(sim_target.emulator, interface)
    assert probe.now() == hosts_of(before)
    second = make_driver(sim_target, classifier_min_members=1)
    try:
        assert watched(sim_target, probe, hosts_of(after), "the new driver's resync",
                       lambda: second.resync(state_of(messages(after, two))).ok)
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
    return web_messages(rules, {"s": (members, "net"), "t": (["10.67.0.1"], "ip")})


@pytest.mark.parametrize("two", [False, True], ids=["source-only", "with-ports"])
@pytest.mark.parametrize("deny", [["10.66.0.4/31"], ["10.66.0.4/31", "10.66.0.130/32", "10.66.0.64/27"]],
                         ids=["one", "three"])
def test_blocks_cut_by_an_earlier_deny_admit_only_the_allowed_members(sim_target: Target, deny: list[str],
                                                                       two: bool) -> None:
    denied = frozenset().union(*(DENIED[d] for d in deny))
    steps = [hosts(0, 7), hosts(0, 127), [h for h in hosts(0, 127) if h != "10.66.0.5"], hosts(0, 255),
             ["10.66.0.0/29"], ["10.66.0.0/25", "10.66.0.128/26"], hosts(4, 5), hosts(0, 3)]
    with gated(sim_target, denied_messages(["10.66.0.200"], deny, two)) as (driver, probe, state):
        assert probe.now() == hosts_of(["10.66.0.200"])
        for i, members in enumerate(steps):
            new = state_of(denied_messages(members, deny, two))
            new_hosts = hosts_of(members) - denied
            assert converge(sim_target, driver, probe, state, new, f"step {i} to {members}", new_hosts)
            assert probe.now() == new_hosts, f"step {i} to {members}"
            state = new


@pytest.mark.parametrize("refuse", [("classify_add_del_session", 1), ("classify_add_del_table", 1)],
                         ids=["session#1", "table#1"])
@pytest.mark.parametrize("change", ["merge", "split"])
def test_a_refused_write_in_a_new_drivers_first_resync(sim_target: Target, refuse: tuple[str, int],
                                                        change: str) -> None:
    """The agent restarts between two member states and VPP refuses a write of the new driver's
    first resync; that resync and the next one admit members of one state only, ending at the new."""
    before, after = CHANGES[change]
    interface = sim_target.pod("ns/web0")
    programmed_by_an_earlier_agent(sim_target, messages(before, True))
    probe = Probe(sim_target.emulator, interface)
    second = make_driver(sim_target, classifier_min_members=1)
    try:
        new = state_of(messages(after, True))
        for round_, refusing in enumerate((refuse, None)):
            probe.refuse = refusing
            watched(sim_target, probe, hosts_of(after), f"resync {round_}", lambda: second.resync(new))
            assert refusing is None or probe.refused == 1, "nothing was refused"
        assert probe.now() == hosts_of(after)
    finally:
        second.close()


# -- two gated sets on the same port, sharing members --------------------------------------------------


def shared_messages(s: list[str], u: list[str]) -> list[Any]:
    rules = [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s"]),
             b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["u"])]
    return web_messages(rules, {"s": (s, "net"), "u": (u, "net")})


def test_members_shared_by_two_sets_stay_admitted_while_either_holds_them(sim_target: Target) -> None:
    steps = [(hosts(0, 7), hosts(4, 11)), (hosts(0, 3), hosts(4, 11)), (hosts(0, 3), ["10.66.0.0/29"]),
             (["10.66.0.0/28"], hosts(0, 15)), (hosts(0, 15), []), ([], hosts(0, 15)), (hosts(0, 127), hosts(0, 127)),
             ([h for h in hosts(0, 127) if h != "10.66.0.9"], hosts(0, 127)), ([], [])]
    with gated(sim_target, shared_messages(["10.66.0.200"], ["10.66.0.201"])) as (driver, probe, state):
        assert probe.now() == hosts_of(["10.66.0.200", "10.66.0.201"])
        for i, (s, u) in enumerate(steps):
            new = state_of(shared_messages(s, u))
            new_hosts = hosts_of([*s, *u])
            assert converge(sim_target, driver, probe, state, new, f"step {i} to s={s} u={u}", new_hosts)
            assert probe.now() == new_hosts, f"step {i}"
            state = new


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

