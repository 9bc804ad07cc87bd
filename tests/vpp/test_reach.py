"""Each pod's ACLs hold its list restricted to what can reach it (policy/reach.py, acl/lists.py).

Four pods share one policy: ingress allows TCP to the named port "web" (Felix's set of every
pod's (address, port) with that port), egress allows port 80 from a set of other pods' addresses.
a and b are in the named-port set, c and d are not. Ingress: a's ACL keeps only a's entry, b's
only b's, and c and d (nothing of the set reaches them) share one ACL. A readdressed pod gets its
list restricted anew, without a recompile. Egress is restricted with RESTRICT_EGRESS (the source
guard drops every other source).
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.vpp.helpers import Target, first_packet_allowed, make_driver, state_of, wkey
from vppagent.drivers.vpp.acl import lists
from vppagent.drivers.vpp.acl.lists import ListCompiler
from vppagent.drivers.vpp.api.types import DENY_ALL, AclContent, RouteTarget
from vppagent.drivers.vpp.desired import build_desired
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.lab import builders as b
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.model import Direction
from vppagent.policy.packet import Packet
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState, Kind

# Not adjacent: the compiler would merge the entries of neighbouring addresses into one prefix.
PODS = {"ns/a": "10.65.0.2", "ns/b": "10.65.0.5", "ns/c": "10.65.0.8", "ns/d": "10.65.0.11"}
IFX = {pod: i + 1 for i, pod in enumerate(PODS)}
OTHERS = ["10.66.0.7", "10.66.0.8", "10.66.3.0/24"]


def _state(addresses: dict[str, str] = PODS, web: tuple[str, ...] = ("ns/a", "ns/b"),
           extra_web: tuple[str, ...] = ()) -> DataplaneState:
    members = [f"{a},tcp:8080" for a in (*(addresses[p] for p in web), *extra_web, "10.66.0.9", "10.66.0.10")]
    messages = [
        b.config({}),
        b.ipset("n:web", members, kind="ip_and_port"),
        b.ipset("s:others", OTHERS),
        b.policy("web", namespace="ns",
                 inbound=[b.rule("allow", protocol="tcp", dst_named_port_ip_set_ids=["n:web"]),
                          b.rule("allow", protocol="tcp", dst_ports=[443], src_ip_set_ids=["s:others"])],
                 outbound=[b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:others"]),
                           b.rule("allow", protocol="udp", dst_ports=[53])]),
    ]
    for i, (pod, address) in enumerate(addresses.items()):
        messages.append(b.workload(pod, f"cali{i}", ipv4=[f"{address}/32"],
                                   tiers=[b.tier("default", ingress=["web"], egress=["web"], namespace="ns")]))
    return state_of(messages)


def _programmed() -> Programmed:
    return Programmed(interfaces={ifx: InterfaceInfo(ifx, f"tap{ifx}", workload_tag(wkey(pod)), "virtio")
                                  for pod, ifx in IFX.items()})


def _web_destinations(content: AclContent | None) -> list[str]:
    assert content is not None
    return [str(r.dst) for r in content.rules if r.proto == 6 and r.dport == (8080, 8080)]


def test_ingress_lists_keep_only_what_reaches_each_pod_and_equal_ones_share() -> None:
    compiler = ListCompiler(20_000)
    wanted = build_desired(_state(), _programmed(), compiler).wanted
    ingress = {pod: wanted[ifx][1] for pod, ifx in IFX.items()}
    assert _web_destinations(ingress["ns/a"]) == ["10.65.0.2/32"]
    assert _web_destinations(ingress["ns/b"]) == ["10.65.0.5/32"]
    assert _web_destinations(ingress["ns/c"]) == []
    assert ingress["ns/c"] is ingress["ns/d"], "equal restrictions are one content (one ACL)"
    # The digests drawn from the shared list's rule texts are the ones VPP's dump gives back.
    assert all(content == AclContent.of(content.rules) for content in ingress.values() if content is not None)
    assert compiler.compiles == 2, "one compile per direction: the four pods share the list"
    # Unrestricted, the list has the entries of every pod with the named port (four).
    state = _state()
    unrestricted = compile_endpoint(state, wkey("ns/a"), "ingress")
    assert len([r for r in unrestricted.rules if r.dstport_or_icmpcode.first == 8080]) == 4


@pytest.mark.parametrize("restrict_egress", [False, True])
def test_egress_is_restricted_as_the_switch_says(monkeypatch: pytest.MonkeyPatch,
                                                         restrict_egress: bool) -> None:
    monkeypatch.setattr(lists, "RESTRICT_EGRESS", restrict_egress)
    wanted = build_desired(_state(), _programmed(), ListCompiler(20_000)).wanted
    egress = {pod: wanted[ifx][0] for pod, ifx in IFX.items()}
    assert all(content is egress["ns/a"] for content in egress.values()), "no pod is in s:others: one list"
    assert egress["ns/a"] is not None
    sources = {str(r.src) for r in egress["ns/a"].rules if r.dport == (80, 80)}
    assert sources == (set() if restrict_egress else {"10.66.0.7/32", "10.66.0.8/32", "10.66.3.0/24"})


def test_a_readdressed_pod_gets_its_list_restricted_anew_without_a_recompile() -> None:
    spare = "10.65.0.14"  # in the named-port set from the start, nobody's address yet
    compiler = ListCompiler(20_000)
    old = _state(extra_web=(spare,))
    before = build_desired(old, _programmed(), compiler).wanted
    compiles = compiler.compiles
    new = _state({**PODS, "ns/c": spare}, extra_web=(spare,))
    assert diff_states(old, new).kinds() == {Kind.WORKLOAD_ENDPOINT}, "only c's address changed"
    compiler.invalidate(diff_states(old, new), new)
    wanted = build_desired(new, _programmed(), compiler).wanted
    assert compiler.compiles == compiles, "the list is not compiled again, only restricted"
    assert _web_destinations(before[IFX["ns/c"]][1]) == []
    assert _web_destinations(wanted[IFX["ns/c"]][1]) == [f"{spare}/32"]
    assert wanted[IFX["ns/d"]] == before[IFX["ns/d"]]


def test_pods_that_swap_addresses_get_each_others_restrictions_and_the_cache_keeps_only_current_ones() -> None:
    compiler = ListCompiler(20_000)
    old = _state()
    build_desired(old, _programmed(), compiler)
    # a and c swap (the named-port set stays the same: no recompile), d moves to a new address.
    swapped = _state({**PODS, "ns/a": PODS["ns/c"], "ns/c": PODS["ns/a"], "ns/d": "10.65.0.12"},
                     web=("ns/c", "ns/b"))
    compiler.invalidate(diff_states(old, swapped), swapped)
    wanted = build_desired(swapped, _programmed(), compiler).wanted
    assert _web_destinations(wanted[IFX["ns/a"]][1]) == []
    assert _web_destinations(wanted[IFX["ns/c"]][1]) == [f"{PODS['ns/a']}/32"]
    assert _web_destinations(wanted[IFX["ns/b"]][1]) == [f"{PODS['ns/b']}/32"]
    held = {len(cached.by_domain) for cached in compiler._cache.values()}
    assert held == {len(PODS)}, "one restriction per current domain and list: d's old one is gone"


def test_a_readdressed_pod_whose_list_fails_keeps_its_guard_and_routes_with_its_pinned_lists() -> None:
    """Its pinned lists are restricted to its old address: its guard and routes must not move to
    the new one (they would send the lists packets whose rules the restriction dropped)."""
    compiler = ListCompiler(20_000)
    old = _state()
    c, moved = IFX["ns/c"], "10.65.0.14"
    programmed = _programmed()
    programmed.routes = {ipaddress.ip_network(f"{a}/32"): RouteTarget(sw_if_index=IFX[p]) for p, a in PODS.items()}
    before = build_desired(old, programmed, compiler)
    assert c in before.guards and str(before.guards[c].ipv4_nets[0]) == f"{PODS['ns/c']}/32"
    broken = _state({**PODS, "ns/c": moved})
    broken.policies[next(iter(broken.policies))].inbound_rules[0].dst_named_port_ip_set_ids.append("n:missing")
    compiler.invalidate(diff_states(old, broken), broken)
    after = build_desired(broken, programmed, compiler)
    assert c in after.pinned, "its list does not compile: pinned"
    assert after.wanted[c] == (DENY_ALL, DENY_ALL), "it has no list of ours to keep: closed"
    assert c not in after.guards, "its guard is not prepared for the new address"
    routes_c = {str(net) for net, target in after.routes.items() if target.sw_if_index == c}
    assert routes_c == {f"{PODS['ns/c']}/32"}, "its routes stay as programmed"


def test_the_acls_in_vpp_hold_the_restricted_lists(sim_target: Target) -> None:
    """Through the driver into the emulator: contents, sharing, verdicts, a readdressed pod."""
    interfaces = {pod: sim_target.pod(pod) for pod in PODS}
    driver = make_driver(sim_target)
    try:
        state = _state()
        assert driver.resync(state).ok
        out = {pod: sim_target.bindings()[ifx][1][0] for pod, ifx in interfaces.items()}
        acls = sim_target.our_acls()
        web = {pod: sorted(str(r.dst_prefix) for r in acls[index].r if int(r.dstport_or_icmpcode_first) == 8080)
               for pod, index in out.items()}
        assert web == {"ns/a": ["10.65.0.2/32"], "ns/b": ["10.65.0.5/32"], "ns/c": [], "ns/d": []}
        assert out["ns/c"] == out["ns/d"] and len({out["ns/a"], out["ns/b"], out["ns/c"]}) == 3

        def agrees(state: DataplaneState, pod: str, address: str) -> None:
            for src in ("10.66.0.9", "10.66.0.7", PODS["ns/b"]):
                for port in (8080, 80):
                    pkt = Packet.parse(f"tcp {src}:40000 > {address}:{port}")
                    expected = verdict(state, wkey(pod), "ingress", pkt).allowed
                    assert first_packet_allowed(sim_target.emulator, interfaces[pod], "ingress", pkt) == expected, \
                        f"{pod}: {pkt}"

        for pod, address in PODS.items():
            agrees(state, pod, address)
        assert first_packet_allowed(sim_target.emulator, interfaces["ns/a"], "ingress",
                                    Packet.parse(f"tcp 10.66.0.9:40000 > {PODS['ns/a']}:8080"))

        # d moves to an address in the named-port set: its list is restricted anew, c keeps its ACL.
        moved = {**PODS, "ns/d": "10.65.0.12"}
        new = _state(moved, web=("ns/a", "ns/b", "ns/d"))
        assert driver.apply(diff_states(state, new), new).ok
        bound = sim_target.bindings()
        assert bound[interfaces["ns/c"]][1][0] == out["ns/c"]
        d_acl = sim_target.our_acls()[bound[interfaces["ns/d"]][1][0]]
        assert sorted(str(r.dst_prefix) for r in d_acl.r if int(r.dstport_or_icmpcode_first) == 8080) == \
            ["10.65.0.12/32"]
        agrees(new, "ns/d", "10.65.0.12")
        assert driver.resync(new).writes == 0, "what the driver believes it wrote is what VPP holds"
    finally:
        driver.close()


def test_egress_in_vpp_is_the_policy_for_own_sources_and_drops_the_rest(sim_target: Target) -> None:
    """Restricted egress ACL and source guard together: a pod's own source gets the evaluator's
    verdict; a spoofed one (another pod's address, a member of the set its rule allows from) is
    dropped, though the unrestricted list (and the evaluator) would allow it."""
    assert lists.RESTRICT_EGRESS, "this checks the restricted egress lists the driver writes"
    interfaces = {pod: sim_target.pod(pod) for pod in PODS}
    driver = make_driver(sim_target)
    try:
        state = _state()
        assert driver.resync(state).ok
        index = sim_target.bindings()[interfaces["ns/a"]][0][0]
        assert not [r for r in sim_target.our_acls()[index].r if int(r.dstport_or_icmpcode_first) == 80], \
            "the allow-from-s:others rules are gone from a's egress ACL"
        checked = 0
        for src in (PODS["ns/a"], PODS["ns/b"], "10.66.0.7", "10.66.3.9"):
            for proto, port in (("tcp", 80), ("udp", 53), ("tcp", 443)):
                pkt = Packet.parse(f"{proto} {src}:40000 > 10.70.0.1:{port}")
                expected = verdict(state, wkey("ns/a"), "egress", pkt).allowed and src == PODS["ns/a"]
                assert first_packet_allowed(sim_target.emulator, interfaces["ns/a"], "egress", pkt) == expected, \
                    str(pkt)
                checked += expected
        assert checked == 1, "one own-source packet is allowed (udp/53); the spoofed tcp/80 ones are not"
    finally:
        driver.close()


def test_a_new_pod_is_bound_its_restricted_list() -> None:
    """CNI Add binds the endpoint's list before any convergence: restricted as well."""
    compiler = ListCompiler(20_000)
    egress, ingress = lists.lists_for_new_pod(_state(), compiler, wkey("ns/b"))
    assert ingress is not None and egress is not None
    assert _web_destinations(ingress) == ["10.65.0.5/32"]
    # With s:others in the classifier, CNI Add binds the exact (ungated) list: restricted too.
    gated = ListCompiler(20_000, classifier_min_members=1)
    state = _state()
    ep = gated.endpoint(wkey("ns/b"), state.workload_endpoints[wkey("ns/b")]).ep
    assert gated.program(Catalog(state), ep, Direction.INGRESS)[1] is not None, "the list is gated"
    _, ingress = lists.lists_for_new_pod(state, gated, wkey("ns/b"))
    assert ingress is not None
    assert _web_destinations(ingress) == ["10.65.0.5/32"]
    assert {str(r.src) for r in ingress.rules if r.dport == (443, 443)} == {"10.66.0.7/32", "10.66.0.8/32",
                                                                             "10.66.3.0/24"}
