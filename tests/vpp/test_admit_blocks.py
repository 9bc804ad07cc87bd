"""Admit sessions per block of members (classifier/aggregate.py, admits.py), on random member sets
and changes: the blocks hold exactly the host members; the blocks kept through any sequence of
adds and removes are those of the members from scratch; and on the emulator, before every write
of a member change and after the last, the gated port admits only members of the old state or
only members of the new one (never a mix), always every member of both, and at the end exactly
the new members."""

from __future__ import annotations

import ipaddress
import random

import pytest

from tests.vpp.gated_web import BASE, SPACE, applied, gated, hosts_of, messages
from tests.vpp.helpers import Target, state_of
from vppagent.drivers.vpp.classifier.admits import AdmitSessions, Admitter, inside, set_sessions
from vppagent.drivers.vpp.classifier.aggregate import Aggregated, blocks, ladder
from vppagent.drivers.vpp.classifier.gate import Gate, GatedSet
from vppagent.drivers.vpp.classifier.layout import match_bytes, member_mask
from vppagent.drivers.vpp.classifier.regions import Unfit
from vppagent.drivers.vpp.classifier.source import admitted
from vppagent.lab import builders as b


def addresses(found: list[tuple[int, int]]) -> list[int]:
    return [a for address, length in found for a in range(address, address + (1 << (32 - length)))]


def random_hosts(rng: random.Random) -> set[int]:
    """Runs and scattered addresses: some of every block length."""
    out: set[int] = set()
    for _ in range(rng.randrange(0, 6)):
        start = rng.randrange(SPACE)
        out |= {BASE + (start + i) % SPACE for i in range(rng.randrange(1, 100))}
    out |= {BASE + rng.randrange(SPACE) for _ in range(rng.randrange(0, 20))}
    return out


@pytest.mark.parametrize("levels", [1, 2, 4, 8])
def test_blocks_hold_exactly_the_members(levels: int) -> None:
    rng = random.Random(levels)
    lengths = ladder(4, levels)
    for _ in range(200):
        hosts = random_hosts(rng)
        found = blocks(4, hosts, lengths)
        held = addresses(found)
        assert sorted(held) == sorted(hosts), "no non-member, no member missing, no address twice"
        assert all(length in lengths and address % (1 << (32 - length)) == 0 for address, length in found)
        # the coarsest block: no two blocks of one length make a full block of the next coarser length
        assert len(found) <= len(hosts)
        if levels == 8:  # every length from /25: as many as the collapse has prefixes, up to /25's
            nets = ipaddress.collapse_addresses(ipaddress.ip_address(a) for a in hosts)
            assert len(found) == sum(1 << max(0, 25 - n.prefixlen) for n in nets)


@pytest.mark.parametrize("levels", [2, 8])
def test_blocks_kept_through_changes_are_the_blocks_from_scratch(levels: int) -> None:
    rng = random.Random(100 + levels)
    lengths = ladder(4, levels)
    kept = Aggregated(4, lengths)
    held: set[int] = set()
    current: set[tuple[int, int]] = set()
    for _ in range(300):
        added = {BASE + rng.randrange(SPACE) for _ in range(rng.randrange(0, 12))}
        removed = set(rng.sample(sorted(held), min(len(held), rng.randrange(0, 12))))
        if rng.random() < 0.1:  # a whole run at once
            start = rng.randrange(SPACE)
            added |= {BASE + (start + i) % SPACE for i in range(64)}
        came, went = kept.update(sorted(added), sorted(removed))
        held = (held - removed) | added
        assert went <= current and not came & (current - went)
        current = (current - went) | came
        assert current == set(kept.all_blocks()) == set(blocks(4, held, lengths))


# -- on the emulator: every write of a member change ------------------------------------------------


def drawn(rng: random.Random) -> list[str]:
    members = [str(ipaddress.ip_address(a)) for a in random_hosts(rng)]
    if rng.random() < 0.3:  # a member that is a prefix itself: admitted as it is
        members.append(f"10.66.0.{rng.randrange(0, 256, 8)}/29")
    return members or ["10.66.0.1"]


@pytest.mark.parametrize("two", [False, True], ids=["source-only", "with-ports"])
def test_every_write_of_a_member_change_admits_members_only(sim_target: Target, two: bool) -> None:
    rng = random.Random(7 + two)
    members = drawn(rng)
    with gated(sim_target, messages(members, two)) as (driver, probe, state):
        assert probe.now() == hosts_of(members)
        for _ in range(12):
            if rng.random() < 0.5:  # a few members come and go
                kept = [m for m in members if rng.random() > 0.15]
                members = sorted(set(kept) | {f"10.66.0.{rng.randrange(256)}" for _ in range(rng.randrange(1, 8))})
            else:  # redrawn
                members = drawn(rng)
            new = state_of(messages(members, two))
            assert applied(sim_target, driver, probe, state, new, hosts_of(members), "a member change")
            assert probe.now() == hosts_of(members)
            state = new


def test_a_block_splits_before_it_goes_and_merges_after_it_comes() -> None:
    """The order of a chain's admit writes (chains.py `_narrow`, `_widen`) for a split and a merge,
    read from admits.inside: the parts of a split block are inside the block; the blocks a merge
    replaces are inside the new one."""
    def session(text: str) -> tuple[bytes, bytes]:
        net = ipaddress.ip_network(text)
        return member_mask(4, net.prefixlen), match_bytes(4, src=net)

    block = session("10.66.0.0/30")
    parts = {session("10.66.0.0/31"), session("10.66.0.2/32")}
    assert inside(parts, {block}) == parts
    assert inside({block}, parts) == set(), "a block is inside no part"
    assert inside({session("10.66.0.4/31")}, {block}) == set()
    assert inside(parts | {session("10.66.1.0/32")}, {block}) == parts


def test_admitted_from_the_last_content_is_admitted_from_scratch() -> None:
    """source.admitted works a set's new content out from its last one (by set id): the same
    count and lengths as from nothing, through random changes with prefix members among them."""
    rng = random.Random(3)
    lengths = ladder(4, 8)
    members: set[str] = set()
    for round_ in range(100):
        members -= set(rng.sample(sorted(members), min(len(members), rng.randrange(0, 10))))
        members |= {f"10.66.0.{rng.randrange(256)}/32" for _ in range(rng.randrange(0, 15))}
        if rng.random() < 0.2:
            members.add(f"10.66.{rng.randrange(1, 4)}.0/{rng.choice((24, 28, 30))}")
        content = frozenset(members)
        assert admitted(content, 4, lengths, "s") == admitted(content, 4, lengths, f"fresh{round_}")
        hosts = {int(ipaddress.ip_network(m).network_address) for m in members if m.endswith("/32")}
        own = [m for m in members if not m.endswith("/32")]
        found = blocks(4, hosts, lengths)
        assert admitted(content, 4, lengths, "s")[0] == len(found) + len(own)


def test_a_failed_block_leaves_no_half_remembered_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block whose sessions fail to be worked out (an error raised to the caller) does not leave
    the set's blocks half updated: the next ask works the set out again, whole."""
    gate = Gate((GatedSet("s", (), everywhere=(4,)),), ())
    before = state_of([b.ipset("s", ["10.66.0.1", "10.66.0.9"], kind="ip")])
    after = state_of([b.ipset("s", ["10.66.0.1", "10.66.0.9", *(f"10.66.0.{i}" for i in range(16, 32))], kind="ip")])
    admits = AdmitSessions()
    assert admits.wanted(before, gate, 4) == set_sessions(gate.sets[0], 4, ["10.66.0.1", "10.66.0.9"])
    real = Admitter.sessions
    failed = [True]

    def once(self: Admitter, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> set[tuple[bytes, bytes]]:
        if failed[0] and net.prefixlen < 32:
            failed[0] = False
            raise RuntimeError("failed once")
        return real(self, net)

    monkeypatch.setattr(Admitter, "sessions", once)
    with pytest.raises(RuntimeError):
        admits.wanted(after, gate, 4)
    held = sorted(after.ipsets["s"].members)
    assert admits.wanted(after, gate, 4) == set_sessions(gate.sets[0], 4, held)
    assert len(admits.wanted(after, gate, 4)) == 3, ".1, .9 and the block .16/28"


def test_members_a_gate_cannot_hold_are_not_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain still moving to or from a gate sees the set's next members, which the gate was not
    checked for: where a block's sessions cannot be worked out (Unfit) its members are admitted one
    by one, and a member whose own cannot be is not admitted at all (below the gate: fail closed),
    instead of the whole convergence failing with the error (found by
    test_listmax_reaching.py's two endpoints of one spec, seed 9569)."""
    gate = Gate((GatedSet("s", (), everywhere=(4,)),), ())
    after = state_of([b.ipset("s", ["10.66.0.1", "10.66.0.9", *(f"10.66.0.{i}" for i in range(16, 32))], kind="ip")])
    real = Admitter.sessions

    def unfit(self: Admitter, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> set[tuple[bytes, bytes]]:
        if net.prefixlen < 32 or str(net.network_address) == "10.66.0.20":
            raise Unfit("not TCP/UDP to service ports")
        return real(self, net)

    monkeypatch.setattr(Admitter, "sessions", unfit)
    wanted = AdmitSessions().wanted(after, gate, 4)
    monkeypatch.setattr(Admitter, "sessions", real)
    admitted_hosts = [m for m in sorted(after.ipsets["s"].members) if m != "10.66.0.20"]
    assert wanted == {x for m in admitted_hosts for x in set_sessions(gate.sets[0], 4, [m])}
    assert len(wanted) == 17, ".1, .9 and the block's members but .20, one by one"
