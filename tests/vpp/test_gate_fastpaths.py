"""The gate's fast paths against the slow ways they replace (docs/vpp-driver.md, "Large IP
sets", Measured):

- trails.Trails.minus: `subtract_all([box], cuts)` resumed from another list of cuts for the same
  box, against subtract_all itself (the same boxes in the same order, None at the limit), over
  random sequences of cut lists sharing prefixes;
- regions.Slice.allowed (spliced from the parent's parts without a marker, own parts resumed by
  trails): against allowed_by on the slice's meeting(), as View.allowed does it, for random
  marked lists over a small universe (rules overlap often), with a small BOX_LIMIT so that
  Unfit comes up too;
- memberwise.check_members (members grouped by source prefix per length): against
  member_entries member by member (Unfit for some member, or for none), for the bases and views
  of real gates (the differential test's random cases, every P_i worked out per member) with
  their members and others inside, around and beside them.
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vpp.test_differential import gated_case, multi_gated_case
from tests.vpp.test_gate_memberwise import others
from vppagent.drivers.vpp.classifier import gate, memberwise, regions
from vppagent.drivers.vpp.classifier.regions import Ruled, Slice, Unfit, View, allowed_by
from vppagent.drivers.vpp.classifier.trails import Trails
from vppagent.policy.boxes import FULL_L4, Box, subtract_all
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import CompileError
from vppagent.policy.model import Direction, IPNetwork

SOURCES = [(0, 0), (10 << 24, 8), (10 << 24 | 64 << 16, 10), (10 << 24 | 64 << 16, 24), (10 << 24 | 64 << 16 | 1, 32),
           (10 << 24 | 64 << 16 | 2, 31), (10 << 24 | 64 << 16 | 256, 24), (10 << 24 | 64 << 16 | 257, 32),
           (128 << 24, 1), (10 << 24 | 128 << 16, 9)]
DESTINATIONS = [(0, 0), (10 << 24 | 80 << 16, 16), (10 << 24 | 80 << 16 | 5, 32)]
PORTS = [FULL_L4, (80, 80), (443, 443), (0, 1023), (80, 443), (8080, 8080)]
MARKERS = (1111, 2222, 3333)


@st.composite
def boxes_(draw: st.DrawFn, marked: bool = False) -> Box:
    src, src_len = draw(st.sampled_from(SOURCES))
    dst, dst_len = draw(st.sampled_from(DESTINATIONS))
    proto = draw(st.sampled_from(((6, 6), (17, 17), (1, 255))))
    sport = (draw(st.sampled_from(MARKERS)),) * 2 if marked and proto != (1, 255) else FULL_L4
    return Box(src, src_len, dst, dst_len, *proto, *sport, *draw(st.sampled_from(PORTS)))


@st.composite
def cut_lists_(draw: st.DrawFn) -> list[tuple[Box, ...]]:
    """Lists of cuts that share prefixes with each other (as the sets of one list do)."""
    pool = draw(st.lists(boxes_(), min_size=1, max_size=14))
    return [tuple(pool[:draw(st.integers(0, len(pool)))]) + tuple(draw(st.lists(st.sampled_from(pool), max_size=3)))
            for _ in range(draw(st.integers(1, 6)))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box=boxes_(), cut_lists=cut_lists_(), limit=st.sampled_from((3, 8, 512)))
def test_trails_give_what_subtract_all_gives(box: Box, cut_lists: list[tuple[Box, ...]], limit: int) -> None:
    trails = Trails(32, limit)
    for cuts in cut_lists:
        assert trails.minus(box, cuts) == subtract_all([box], list(cuts), 32, limit), cuts


@st.composite
def marked_lists_(draw: st.DrawFn) -> list[Ruled]:
    """A marked analysis list: rules without a marker (allow or deny), and allow rules with one."""
    out: list[Ruled] = []
    for _ in range(draw(st.integers(1, 24))):
        if draw(st.integers(0, 2)) == 0:
            out.append((draw(boxes_(marked=True)), "allow"))
        else:
            out.append((draw(boxes_()), draw(st.sampled_from(("allow", "deny", "deny")))))
    return out


def _outcome(view: View, within: Box, fast: bool) -> list[Box] | str:
    try:
        if fast:
            return view.allowed(4, within)
        return allowed_by(view.meeting(4, within), view.default, 4, within, clipped=True)
    except Unfit as exc:
        return f"unfit: {exc}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=marked_lists_(), withins=st.lists(boxes_(), min_size=1, max_size=4),
       default=st.sampled_from(("deny", "deny", "allow")), limit=st.sampled_from((4, 12, 512)))
def test_spliced_admit_regions_are_allowed_by_on_the_slice(rules: list[Ruled], withins: list[Box], default: str,
                                                           limit: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regions, "BOX_LIMIT", limit)
        parent = View({4: rules, 6: []}, default)
        slices = [Slice.at(parent, m, frozenset(MARKERS)) for m in (*MARKERS, None)]
        for within in withins:
            for view in slices:  # (the slices of one list share the parent's memos: asked in turn)
                fresh = Slice.at(View({4: rules, 6: []}, default), view.marker, frozenset(MARKERS))
                assert _outcome(view, within, True) == _outcome(fresh, within, False), (view.marker, within)


def _unfit_for_some(family: int, basis: regions.Basis, nets: list[IPNetwork]) -> bool:
    try:
        memberwise.member_entries(family, basis, nets)
    except Unfit:
        return True
    return False


def test_members_checked_by_prefix_are_checked_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "MEMBER_WISE", True)
    seen: list[tuple[int, regions.Basis, list[IPNetwork], View]] = []
    check = memberwise.check_members

    def recording(family: int, basis: regions.Basis, nets: list[IPNetwork], view: View) -> None:
        seen.append((family, basis, list(nets), view))
        check(family, basis, nets, view)

    monkeypatch.setattr(gate, "check_members", recording)
    rng = random.Random(11)
    compared = unfit = 0
    for seed in range(160):
        case = multi_gated_case(rng) if seed % 2 else gated_case(rng)
        catalog = Catalog(case.state)
        seen.clear()
        try:
            gate.gated_lists(catalog, case.state, catalog.workload(case.endpoint), Direction.INGRESS, 20_000, 1)
        except CompileError:
            continue
        for family, basis, members, view in list(seen):
            variants = [members, others(rng, family, members), members + others(rng, family, members)[:5]]
            variants += [[m] for m in members[:3]]
            variants.append([ipaddress.ip_network((int(m.network_address) & ~0xFF, 32)) for m in members])
            for nets in variants:
                try:
                    check(family, basis, nets, view)
                    found = False
                except Unfit:
                    found = True
                assert found == _unfit_for_some(family, basis, nets), (seed, nets)
                compared += 1
                unfit += found
    assert compared >= 300, "bases of real gates were compared"
    assert unfit, "some members were unfit (both ways tried)"
