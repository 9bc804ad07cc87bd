"""L_U read off the marked analysis list (classifier/marked.universe_of) against L_U compiled
on its own (what the gate did before): the same verdict for every packet tried, those with a
marker as source port included, on the differential test's random gated cases."""

from __future__ import annotations

import dataclasses
import random

from tests.vpp.test_differential import gated_case, member_packets, multi_gated_case
from vppagent.drivers.vpp.classifier.aliases import alias_allow_sources, mark_sources
from vppagent.drivers.vpp.classifier.marked import _chosen, markable, universe_of
from vppagent.drivers.vpp.classifier.source import ANY, policy_names, rules, with_members
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import CompileError, compile_endpoint
from vppagent.policy.flat import CompiledList, first_match
from vppagent.policy.generate import random_packets
from vppagent.policy.model import Direction
from vppagent.policy.packet import Packet

INGRESS = Direction.INGRESS


def lists(seed: int) -> tuple[CompiledList, CompiledList, CompiledList, list[Packet]] | None:
    """(analysis list A, L_U read off A, L_U compiled, packets) for one random case, or None
    where the case gates nothing or cannot be compiled."""
    rng = random.Random(seed)
    case = multi_gated_case(rng) if seed % 2 else gated_case(rng)
    catalog = Catalog(case.state)
    ep = catalog.workload(case.endpoint)
    if not markable(catalog, ep, INGRESS):
        return None
    names = policy_names(ep, INGRESS)
    state, _ = alias_allow_sources(case.state, rules(catalog, ep, INGRESS), names)
    catalog = Catalog(state)
    chosen = _chosen(catalog, state, ep, INGRESS, 1, frozenset())
    if not chosen:
        return None
    markers = {s: k + 1 for k, s in enumerate(chosen)}
    try:
        analysis = compile_endpoint(mark_sources(with_members(state, dict.fromkeys(chosen, ANY)), names, markers),
                                    ep, INGRESS)
        compiled = compile_endpoint(with_members(state, dict.fromkeys(chosen, ANY)), ep, INGRESS)
    except CompileError:
        return None
    read = universe_of(analysis, frozenset(markers.values()))
    if read is None:
        return None
    packets = [*random_packets(rng, case, 150), *member_packets(rng, case, 60)]
    # the same packets from a marker source port: where a marked rule of A would match as is
    packets += [dataclasses.replace(p, src_port=rng.choice(list(markers.values())))
                for p in packets if p.proto in (6, 17)]
    return analysis, read, compiled, packets


def test_universe_read_off_the_marked_list_is_the_compiled_one() -> None:
    checked = unerased_wrong = 0
    for seed in range(320):
        found = lists(seed)
        if found is None:
            continue
        analysis, read, compiled, packets = found
        for pkt in packets:
            assert first_match(read, pkt).action == first_match(compiled, pkt).action, (seed, str(pkt))
        # A itself (markers kept) is not L_U: the packets reach the marked rules
        unerased_wrong += any(first_match(analysis, p).action != first_match(compiled, p).action for p in packets)
        checked += 1
    assert checked >= 50, "the random cases gated something"
    assert unerased_wrong >= 10, "the packets meet the rules with markers"
