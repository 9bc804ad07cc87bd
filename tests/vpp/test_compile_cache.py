"""The VPP driver's desired lists across state versions (desired.py, acl/lists.py, policy/cache.py):
an apply recompiles only the lists its changes touch, draws every other fragment from the cache,
gives what a fresh compiler gives, and the caches keep only what the current endpoints use."""

from __future__ import annotations

from vppagent.drivers.vpp.acl.lists import ListCompiler
from vppagent.drivers.vpp.desired import Desired, build_desired
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState, WorkloadKey

PODS = {"ns/a": 1, "ns/b": 2, "ns/c": 3}  # a and b: policy web; c: policy db


def _state(web_port: int = 80, *extra: felix.ToDataplane) -> DataplaneState:
    state = DataplaneState()
    messages = [
        b.config({}),
        b.ipset("s:clients", [f"10.66.0.{i}" for i in range(1, 40, 3)]),
        b.ipset("s:admins", ["10.67.0.1", "10.67.0.9"]),
        b.policy("web", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[web_port], src_ip_set_ids=["s:clients"]),
            b.rule("allow", protocol="tcp", dst_ports=[22], src_ip_set_ids=["s:admins"])]),
        b.policy("db", namespace="ns", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[5432], src_ip_set_ids=["s:admins"])]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
    ]
    for i, pod in enumerate(PODS):
        policy = "db" if pod == "ns/c" else "web"
        messages.append(b.workload(pod, f"cali{i}", ipv4=[f"10.65.0.{i + 2}/32"], profiles=["open"],
                                   tiers=[b.tier("default", ingress=[policy], namespace="ns")]))
    for m in (*messages, *extra):
        state.apply(m)
    return state


def _programmed(pods: dict[str, int] = PODS) -> Programmed:
    return Programmed(interfaces={ifx: InterfaceInfo(ifx, f"tap{ifx}", workload_tag(WorkloadKey("k8s", pod, "eth0")),
                                                     "virtio") for pod, ifx in pods.items()})


def _apply(compiler: ListCompiler, old: DataplaneState, new: DataplaneState) -> Desired:
    compiler.invalidate(diff_states(old, new), new)
    return build_desired(new, _programmed(), compiler)


def _fresh(state: DataplaneState, **kwargs: int) -> Desired:
    return build_desired(state, _programmed(), ListCompiler(20_000, **kwargs))


def test_a_policy_change_recompiles_its_lists_once_and_reuses_every_other_fragment() -> None:
    compiler = ListCompiler(20_000)
    old = _state()
    build_desired(old, _programmed(), compiler)
    stats = compiler.fragments.stats
    compiles, rules = compiler.compiles, stats.rules_computed
    new = _state(8080)
    desired = _apply(compiler, old, new)
    assert compiler.compiles - compiles == 1, "a and b share the list that holds web: one compile"
    assert stats.rules_computed - rules == 2, "only web's changed rule (IPv4, IPv6); the s:admins rule reused"
    assert desired.wanted == _fresh(new).wanted


def test_an_ip_set_member_change_recompiles_only_the_lists_using_it() -> None:
    compiler = ListCompiler(20_000)
    old = _state()
    build_desired(old, _programmed(), compiler)
    compiles = compiler.compiles
    new = _state(80, b.ipset_delta("s:clients", added=["10.66.1.1"]))
    desired = _apply(compiler, old, new)
    assert compiler.compiles - compiles == 1, "c's list (db) does not use s:clients"
    assert desired.wanted == _fresh(new).wanted
    assert desired.wanted[PODS["ns/a"]] != build_desired(old, _programmed(), ListCompiler(20_000)).wanted[PODS["ns/a"]]


def test_the_caches_keep_only_what_the_current_endpoints_use() -> None:
    compiler = ListCompiler(20_000)
    old = _state()
    build_desired(old, _programmed(), compiler)
    new = _state(80, b.workload_remove("ns/a"), b.workload_remove("ns/b"))
    _apply(compiler, old, new)
    alone = ListCompiler(20_000)
    build_desired(new, _programmed(), alone)
    assert compiler.fragments.size() == alone.fragments.size(), "web's fragments are gone with its endpoints"
    assert compiler.fragments.size().rule_boxes > 0


def test_gated_lists_use_the_cache_and_match_a_fresh_compile() -> None:
    compiler = ListCompiler(20_000, classifier_min_members=5)
    old = _state()
    first = build_desired(old, _programmed(), compiler)
    assert first.gates, "the s:clients list is gated (what this test is about)"
    new = _state(80, b.ipset_delta("s:admins", added=["10.67.0.20"]))
    desired = _apply(compiler, old, new)
    fresh = _fresh(new, classifier_min_members=5)
    assert desired.wanted == fresh.wanted and desired.gates == fresh.gates
    assert compiler.fragments.stats.rule_hits > 0


def test_endpoints_gone_from_the_state_are_forgotten_at_the_end_of_a_pass() -> None:
    compiler = ListCompiler(20_000)
    old = _state()
    key = WorkloadKey("k8s", "ns/a", "eth0")
    build_desired(old, _programmed(), compiler)
    known = compiler.endpoint(key, old.workload_endpoints[key])
    assert compiler.endpoint(key, old.workload_endpoints[key]) is known, "kept while asked for"
    new = _state(80, b.workload_remove("ns/a"))
    _apply(compiler, old, new)  # (this test asked for it since the last pass: still kept here)
    build_desired(new, _programmed(), compiler)  # a whole pass in which nobody asked for it
    assert compiler.endpoint(key, old.workload_endpoints[key]) is not known, "forgotten after a pass without it"
