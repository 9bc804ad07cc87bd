"""P_i member by member (classifier/memberwise.py): the remembered answer per rules-apart-from-
the-source against the direct computation, for the bases of real gates (the differential
test's random cases with every P_i worked out per member) and for members of every length."""

from __future__ import annotations

import ipaddress
import random

import pytest

from tests.vpp.test_differential import gated_case, multi_gated_case
from vppagent.drivers.vpp.classifier import gate
from vppagent.drivers.vpp.classifier.memberwise import directly, member_entries
from vppagent.drivers.vpp.classifier.regions import Basis, Unfit
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import CompileError
from vppagent.policy.model import Direction, IPNetwork


def bases(seed: int) -> list[tuple[int, Basis, list[IPNetwork]]]:
    """(family, basis, members) of each gated set of one random case."""
    rng = random.Random(seed)
    case = multi_gated_case(rng) if seed % 2 else gated_case(rng)
    catalog = Catalog(case.state)
    try:
        gated = gate.gated_lists(catalog, case.state, catalog.workload(case.endpoint), Direction.INGRESS, 20_000, 1)
    except CompileError:
        return []
    if gated is None:
        return []
    return [(f, found, [ipaddress.ip_network(m, strict=False) for m in case.state.ipsets[s.set_id].members])
            for s in gated[1].sets for f, found in s.basis]


def others(rng: random.Random, family: int, members: list[IPNetwork]) -> list[IPNetwork]:
    """Members of other lengths and places: inside, around and beside the set's."""
    out = []
    for m in members:
        for length in (m.prefixlen, m.prefixlen - 2, m.prefixlen - 8, 24 if family == 4 else 120):
            out.append(ipaddress.ip_network((int(m.network_address), max(length, 0)), strict=False))
        out.append(ipaddress.ip_network((int(m.network_address) ^ rng.randrange(1, 256), m.max_prefixlen)))
    return out


def outcome(family: int, basis: Basis, nets: list[IPNetwork], fast: bool) -> list[object] | str:
    try:
        found = member_entries(family, basis, nets) if fast else directly(family, basis, nets)
    except Unfit as exc:
        return f"unfit: {exc}"
    return sorted(set(found))


def test_member_entries_remembered_are_the_direct_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "MEMBER_WISE", True)
    rng = random.Random(7)
    checked = 0
    for seed in range(200):
        for family, basis, members in bases(seed):
            for nets in ([m] for m in [*members, *others(rng, family, members)]):
                assert outcome(family, basis, nets, True) == outcome(family, basis, nets, False), (seed, nets)
                checked += 1
    assert checked >= 500, "bases of real gates were compared"


def test_a_member_that_holds_a_rule_source_is_worked_out_directly() -> None:
    """A /24 member over a /32 deny: the answer for the member as a whole does not hold (the
    fast way is for members no rule source is inside); the entries leave the /32 out."""
    from vppagent.policy.boxes import full_box

    tcp80 = full_box()._replace(proto_lo=6, proto_hi=6, b_lo=80, b_hi=80)
    host = int(ipaddress.ip_address("10.1.1.9"))
    basis: Basis = ((tcp80,), ((tcp80._replace(src=host, src_len=32), "deny"), (tcp80, "allow")), "deny")
    member = ipaddress.ip_network("10.1.1.0/24")
    found = member_entries(4, basis, [member])
    assert found == directly(4, basis, [member])
    assert found and all(e.src.prefixlen > 24 and ipaddress.ip_address(host) not in e.src for e in found)
