"""What the gate's analysis compiles (classifier/gate.py, marked.py): markers fixed by set name,
so that two lists gating the same policy's sets share its marked rules' fragments; and a list
the analysis leaves ungated because no member is admitted anywhere L_0 denies is served by the
analysis's own compile (L_U = L), not compiled a second time."""

from __future__ import annotations

import zlib

from tests.vpp.helpers import state_of, wkey
from tests.vpp.test_classifier import PODS
from tests.vpp.test_classifier_multiset import G1, G2
from vppagent.drivers.vpp.classifier.gate import gated_lists, list_and_gate
from vppagent.drivers.vpp.classifier.marked import markers_for
from vppagent.lab import builders as b
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.model import Direction
from vppagent.policy.packet import Packet

G3 = [f"10.68.{i // 250}.{i % 250 + 1}" for i in range(700)]  # heavier than g1 and g2: gated first


def _messages(inbound: list, second_tiers: bool = False) -> list:  # type: ignore[type-arg]
    web = [b.tier("default", ingress=["web"], namespace="ns")]
    both = [b.tier("default", ingress=["extra", "web"], namespace="ns")]
    return [
        b.config({}),
        b.ipset("g1", G1, kind="ip"),
        b.ipset("g2", G2[:600], kind="ip"),
        b.ipset("g3", G3, kind="ip"),
        b.policy("web", namespace="ns", inbound=inbound),
        b.policy("extra", namespace="ns", inbound=[b.rule("allow", protocol="tcp", dst_ports=[443],
                                                          src_ip_set_ids=["g3"])]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        *[b.workload(p, f"cali{i}", ipv4=[f"{ip}/32"],
                     tiers=(both if second_tiers and p == "ns/web1" else web) if p.startswith("ns/web") else [],
                     profiles=["open"]) for i, (p, ip) in enumerate(PODS.items())],
    ]


def _packets() -> list[Packet]:
    sources = [G1[0], G1[-1], G2[3], G3[5], "10.66.0.1", "10.65.9.9", "192.0.2.1"]
    return [Packet.parse(f"{proto} {src}:40000 > 10.65.0.2:{port}")
            for src in sources for proto in ("tcp", "udp") for port in (22, 53, 80, 443)]


def test_markers_are_fixed_by_set_name_and_distinct_in_a_list() -> None:
    one, other = markers_for(["g1", "g2"]), markers_for(["g2", "x", "g1"])
    assert one["g1"] == other["g1"] and one["g2"] == other["g2"], "the same set, the same marker in any list"
    assert all(1 <= port <= 65535 for port in (*one.values(), *other.values()))
    # two names whose fixed ports clash: the second takes the next free port
    seen: dict[int, str] = {}
    name = 0
    while (port := zlib.crc32(f"s{name}".encode()) % 65535 + 1) not in seen:
        seen[port] = f"s{name}"
        name += 1
    clash = [seen[port], f"s{name}"]
    markers = markers_for(clash)
    assert markers[clash[0]] == port and markers[clash[1]] != port
    assert len(set(markers_for([*clash, *seen.values()]).values())) == len(seen) + 1


def test_lists_gating_the_same_policy_share_its_marked_fragments() -> None:
    inbound = [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["g1"]),
               b.rule("allow", protocol="tcp", dst_ports=[22], src_ip_set_ids=["g2"])]
    state = state_of(_messages(inbound, second_tiers=True))
    catalog = Catalog(state)
    cache = CompileCache()
    first = gated_lists(catalog, state, catalog.workload(wkey("ns/web0")), Direction.INGRESS, 100_000, 500, cache)
    computed = cache.stats.rules_computed
    second = gated_lists(catalog, state, catalog.workload(wkey("ns/web1")), Direction.INGRESS, 100_000, 500, cache)
    assert first is not None and second is not None, "both lists gate g1 and g2 (what this test is about)"
    assert set(second[1].set_ids) == {"g1", "g2", "g3"}
    # ns/web1's list has one more policy, whose set is the heaviest (the first chosen): only its
    # rule's fragments (one per family) are new; web's marked rules are the same as in ns/web0's
    # (with markers numbered by place in the list they would all be new)
    assert cache.stats.rules_computed - computed == 2, cache.stats
    assert cache.stats.lists_compiled == 2


def test_a_list_with_no_member_admitted_is_served_by_the_analysis_compile() -> None:
    # An earlier deny takes all of g1's and g2's ports: the sets qualify, the analysis compiles,
    # and no member is admitted anywhere L_0 denies, so L_U is L.
    inbound = [b.rule("deny", protocol="tcp", dst_ports=[22, 80]),
               b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["g1"]),
               b.rule("allow", protocol="tcp", dst_ports=[22], src_ip_set_ids=["g2"])]
    state = state_of(_messages(inbound))
    catalog = Catalog(state)
    ep = catalog.workload(wkey("ns/web0"))
    assert gated_lists(catalog, state, ep, Direction.INGRESS, 100_000, 500) is None
    cache = CompileCache()
    compiled, gate = list_and_gate(catalog, ep, Direction.INGRESS, 100_000, 500, cache)
    assert gate is None
    assert cache.stats.lists_compiled == 1, "the analysis's compile, not a second one"
    plain = compile_endpoint(Catalog(state), ep, Direction.INGRESS, rule_limit=100_000)
    for pkt in _packets():
        expected = verdict(catalog, wkey("ns/web0"), "ingress", pkt).action
        assert first_match(compiled, pkt).action == expected == first_match(plain, pkt).action, pkt


def test_list_and_gate_without_a_gate_is_the_ordinary_compile() -> None:
    inbound = [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["g1"])]
    state = state_of(_messages(inbound))
    catalog = Catalog(state)
    ep = catalog.workload(wkey("ns/web0"))
    plain = compile_endpoint(catalog, ep, Direction.INGRESS, rule_limit=100_000)
    for threshold in (0, 10_000):  # the classifier off; no set large enough (and none pays)
        compiled, gate = list_and_gate(catalog, ep, Direction.INGRESS, 100_000, threshold)
        assert gate is None and compiled.fingerprint() == plain.fingerprint()
    _, gate = list_and_gate(catalog, ep, Direction.INGRESS, 100_000, 500)
    assert gate is not None and gate.set_ids == ("g1",)
